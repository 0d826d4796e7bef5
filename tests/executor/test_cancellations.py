from services.executor.cancellations import CLOCK_MARGIN, Cancellations


def test_work_queued_while_listening_needs_no_log_read():
    heard = Cancellations(listening_since=100.0)
    assert heard.cover(100.0 + CLOCK_MARGIN + 0.1)
    assert not heard.cover(100.0)  # queued around or before we started listening: ask the log
    assert not heard.cover(50.0)


def test_heard_cancellations_are_remembered_and_bounded(monkeypatch):
    monkeypatch.setattr("services.executor.cancellations.REMEMBERED", 3)
    heard = Cancellations(0.0)
    for pid in (1, 2, 3, 3, 4):
        heard.heard(pid)
    assert 1 not in heard and {2, 3, 4} == {p for p in (1, 2, 3, 4) if p in heard}
