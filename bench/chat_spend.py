"""``/usage`` and ``/budget``'s served read at a long history beside a short one (decision 78).  Pure.

    python -m bench.chat_spend [--promises N]

The projection is folded from written events: ``N`` promises, a third of them
respond promises of ``USERS`` senders in ``CHATS`` chats, each with two steps,
every attempt recording its cost, over the last ``DAYS`` days.  The short
history holds only what the read is about: the asked chat's promises and the
sender's (their requests and their steps, in any chat).  Both answer the same
``ChatQuery`` (spend, the sender, a chat and a user budget) with the same
figures; the ratio is what the rest of the history costs the read.
"""

from __future__ import annotations

import argparse
import gc
import time

from promises.projection import Projection
from schemas.events import BudgetAdjusted, Created, Dispatched, Evidence, Started, Succeeded
from valor.budget import Budget
from valor.readmodel import ChatQuery, ReadIndex, answer

USERS = 2000
CHATS = 500
DAYS = 60
STEPS = 2  # each request's plan
NOW = 1_790_000_000.0
CHAT, USER = 3, 7  # the asked chat and sender: one chat and one user among many, as in life


def history(promises: int) -> list:
    """The events of ``promises`` promises: requests of every user in every chat, and their plans' steps."""
    events: list = []
    requests = promises // (1 + STEPS)
    pid = 0
    for n in range(requests):
        at = NOW - DAYS * 86400 * (1 - n / requests)
        user, chat = 1 + n % USERS, 1 + (n * 7) % CHATS
        pid += 1
        request = pid
        events += _run(Created(at=at, id=request, title="m", task="respond", chat_id=chat,
                               input={"sender_id": user}), 0.02)
        for _ in range(STEPS):
            pid += 1
            events += _run(Created(at=at, id=pid, title="step", task="code", chat_id=chat, parent_id=request), 0.4)
        if n % 97 == 0:  # an owner raising a user's budget now and then
            events.append(BudgetAdjusted(at=at, id=request, scope="user", target=user, period="month", add=1.0,
                                         request_id=f"budget:{request}:0:month"))
    return events


def _run(created: Created, usd: float) -> list:
    at, pid = created.at, created.id
    return [created, Dispatched(at=at, id=pid, attempt=1), Started(at=at, id=pid, attempt=1),
            Succeeded(at=at + 1, id=pid, attempt=1, evidence=Evidence(cost_usd=usd))]


def about_the_read(events: list) -> list:
    """Only the asked chat's events and the sender's (their requests, their steps and budget changes)."""
    theirs: set[int] = set()
    for e in events:
        if isinstance(e, Created) and (e.chat_id == CHAT or (e.input or {}).get("sender_id") == USER
                                       or e.parent_id in theirs):
            theirs.add(e.id)
    return [e for e in events if e.id in theirs]


def fold(events: list) -> ReadIndex:
    state = Projection()
    for seq, e in enumerate(events, 1):
        state.apply(e, seq)
    return ReadIndex(state)


def timed(index: ReadIndex, query: ChatQuery, rounds: int) -> dict[str, float]:
    """p50 and p99 of the answer's wall time and of its CPU time (the share a loaded machine does not blur)."""
    answer(index, query)  # warm
    wall, cpu = [], []
    for _ in range(rounds):
        t, c = time.perf_counter(), time.thread_time()
        answer(index, query)
        wall.append((time.perf_counter() - t) * 1000)
        cpu.append((time.thread_time() - c) * 1000)
    return {f"{what}_{q}": _quantile(took, q) for what, took in (("wall", wall), ("cpu", cpu)) for q in (50, 99)}


def _quantile(took: list[float], q: int) -> float:
    ordered = sorted(took)
    return ordered[min(len(ordered) - 1, len(ordered) * q // 100)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--promises", type=int, default=300_000)
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    events = history(args.promises)
    t = time.perf_counter()
    long, short = fold(events), fold(about_the_read(events))
    gc.freeze()  # as the scheduler does after loading its snapshot: the cyclic GC's walks are not the read's
    print(f"{len(events):,} events, {len(long.state.promises):,} promises (short history: "
          f"{len(short.state.promises):,}); folded and indexed in {time.perf_counter() - t:.1f} s")
    budgets = [Budget("chat", CHAT, "month", 50.0), Budget("user", USER, "month", 20.0)]
    asked = ChatQuery(chat_id=CHAT, spend=True, user_id=USER, now=NOW, budgets=budgets)
    chat_only = ChatQuery(chat_id=CHAT, spend=True, now=NOW, budgets=budgets[:1])
    assert answer(long, asked).spend == answer(short, asked).spend, "the same figures at both ends"
    for name, query in (("with user_id", asked), ("without user_id", chat_only)):
        a, b = timed(long, query, args.rounds), timed(short, query, args.rounds)
        print(f"{name}: ms p50/p99   long wall {a['wall_50']:.2f}/{a['wall_99']:.2f} cpu {a['cpu_50']:.2f}/"
              f"{a['cpu_99']:.2f}   short wall {b['wall_50']:.2f}/{b['wall_99']:.2f} cpu {b['cpu_50']:.2f}/"
              f"{b['cpu_99']:.2f}   long/short cpu p99 {a['cpu_99'] / b['cpu_99']:.1f}x")

if __name__ == "__main__":
    main()
