"""The reads bench's pure parts: its like-for-like layout and the table that marks the targets."""

from bench.reads import CHAT, CHAT_PROMISES, READS, RUNNING, chain, table
from schemas.events import Created, Succeeded


def test_a_small_and_a_large_log_hold_the_same_running_promises_and_the_same_timed_chat():
    for promises in (250, 20_000):
        events = [e for pid in range(1, promises + 1) for e in chain(pid, promises, now=1.0)]
        created = {e.id: e for e in events if isinstance(e, Created)}
        ended = {e.id for e in events if isinstance(e, Succeeded)}
        running = set(created) - ended
        assert len(created) == promises and len(running) == RUNNING and max(created) in running
        assert all(created[pid].chat_id == CHAT for pid in running)
        assert sum(1 for e in created.values() if e.chat_id == CHAT) == CHAT_PROMISES
        assert len(events) == 4 * promises - RUNNING


def test_the_table_marks_a_read_over_50_ms_or_twice_the_small_log_as_not_met():
    def figures(events: int, ms: float) -> dict:
        reads = {f"{r}_{q}_ms": ms for r in (*READS, "chat_usage", "old_chat_status") for q in ("p50", "p99")}
        return {"log_events": events, "fill_s": 1.0, "fill_events_per_s": events, "schedulers_ready_s": 0.0,
                "running_answered": RUNNING, "chat_answered": 30, "old_chat_promises": 0, **reads}

    assert table(figures(975, 10.0), figures(999_975, 15.0), "t").count(" met ") == len(READS)
    assert table(figures(975, 10.0), figures(999_975, 25.0), "t").count("NOT met") == len(READS)
    assert table(figures(975, 40.0), figures(999_975, 55.0), "t").count("NOT met") == len(READS)
