"""The scheduler's budget check when a chat's plan is created, on a long history (decision 79).  Pure.

    python -m bench.budget_check [--promises N]

The projection is folded from ``bench.chat_spend``'s history: ``N`` promises,
a third of them respond promises of many senders in many chats, each with two
steps, every attempt recording its cost, and an owner's budget change now and then.  Both ways answer one request of one chat and
sender with a chat and a user budget set: the walk of every promise the check
made before (``spend.charges`` and ``budget.adjustments`` of them all) and
``intake._over_budget`` on the projection's indexes.  They must give the same
answer; the figures are CPU time of this thread (a shared machine blurs wall
time), and the fold's and the snapshot restore's, which keep the indexes.
"""

from __future__ import annotations

import argparse
import gc
import time
from collections.abc import Callable

from promises.projection import Projection
from schemas.events import Created
from services.scheduler import snapshot
from services.scheduler.intake import _over_budget
from valor import budget, spend
from valor.config import Config, parse

from .chat_spend import CHAT, NOW, USER, history  # the same history as the served read's bench

CONFIG = parse("[budgets]\nchat_daily = 5.0\nchat_monthly = 50.0\nuser_daily = 2.0\nuser_monthly = 20.0\n")


def scanned(state: Projection, config: Config, spec: Created, now: float, estimate: float | None) -> str | None:
    """The check as it was: every charge and every change, walked from every promise."""
    user = spend.sender_of(spec.input)
    charges = spend.charges(state.promises.values()) if budget.budgets(config, spec.chat_id, user) else []
    return budget.check(config, spec.chat_id, user, charges, budget.adjustments(state.promises.values()), now,
                        estimate)


def cpu_ms(run: Callable[[], object], rounds: int) -> tuple[float, float]:
    """p50 and max of ``run``'s CPU time in ms (this thread's)."""
    run()  # warm
    took = []
    for _ in range(rounds):
        c = time.thread_time()
        run()
        took.append((time.thread_time() - c) * 1000)
    took.sort()
    return took[len(took) // 2], took[-1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--promises", type=int, default=300_000)
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    events = history(args.promises)
    c = time.thread_time()
    state = Projection()
    for seq, e in enumerate(events, 1):
        state.apply(e, seq)
    folded = time.thread_time() - c
    data = snapshot.encode(state, "bench", taken_at=NOW)
    c = time.thread_time()
    _, restored = snapshot.restore(data)
    restoring = time.thread_time() - c
    gc.freeze()  # as the scheduler does after loading its snapshot: the cyclic GC's walks are not the check's
    print(f"{len(events):,} events, {len(state.promises):,} promises: folded in {folded:.2f} s CPU, "
          f"restored from a snapshot in {restoring:.2f} s CPU")
    spec = Created(id=state.max_id + 1, title="m", task="respond", chat_id=CHAT, input={"sender_id": USER})
    for estimate in (None, 0.5, 40.0):
        want = scanned(state, CONFIG, spec, NOW, estimate)
        assert _over_budget(state, CONFIG, spec, NOW, estimate) == want, "the same answer either way"
        assert _over_budget(restored, CONFIG, spec, NOW, estimate) == want, "and after a restore"
    print(f"the check's answer at an estimate of $40: {want!r}")
    before = cpu_ms(lambda: scanned(state, CONFIG, spec, NOW, 0.5), max(3, args.rounds // 40))
    after = cpu_ms(lambda: _over_budget(state, CONFIG, spec, NOW, 0.5), args.rounds)
    print(f"budget check, ms CPU p50/max: every promise walked {before[0]:.1f}/{before[1]:.1f}, "
          f"indexed {after[0]:.3f}/{after[1]:.3f}")


if __name__ == "__main__":
    main()
