"""Budgets per chat and per user, and estimates from the history (decision 49).  Pure.

A budget is USD per day or per month (UTC) for a chat or for the user who
asks.  What is left is a fold of the log: the budget, plus what owners added
this period (``budget_adjusted`` events), less what was spent since the
period began or since its last reset.  ``over_budget`` is the one decision:
given what is left of each budget that applies and the plan's estimate, why
the plan must wait, or None.  The scheduler asks it when a chat's plan is
created (every request passes there) and holds the plan for approval with
the reason, which says how much is left.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Reversible, Sequence
from dataclasses import dataclass
from typing import Any

from promises.projection import Projection
from promises.story import usd, when
from schemas.events import BudgetAdjusted, BudgetPeriod, BudgetScope
from valor.config import Config
from valor.spend import Charge, day_start, month_start

PERIODS: tuple[BudgetPeriod, ...] = ("day", "month")
PERIOD_WORDS: dict[str, BudgetPeriod] = {"today": "day", "day": "day", "daily": "day", "month": "month", "monthly": "month"}
ESTIMATE_RUNS = 20  # an estimate is the mean of at most this many of the type's latest ended promises


@dataclass(frozen=True)
class Budget:
    scope: str  # chat | user
    target: int  # the chat id or the user id
    period: str  # day | month
    usd: float


@dataclass(frozen=True)
class Standing:
    """One budget, what was added to it and what was spent this period."""

    budget: Budget
    added: float = 0.0
    spent: float = 0.0

    @property
    def left(self) -> float:
        return self.budget.usd + self.added - self.spent


def budgets(config: Config, chat_id: int | None, user_id: int | None) -> list[Budget]:
    """The budgets a request of this chat and user falls under (a chat's own override the defaults)."""
    b = config.budgets
    chat = config.chats.get(str(chat_id)) if chat_id is not None else None
    out = []
    if chat_id is not None:
        for period, own, default in (("day", chat and chat.daily_budget, b.chat_daily),
                                     ("month", chat and chat.monthly_budget, b.chat_monthly)):
            amount = own if own is not None else default
            if amount is not None:
                out.append(Budget("chat", chat_id, period, amount))
    if user_id is not None:
        for period, amount in (("day", b.user_daily), ("month", b.user_monthly)):
            if amount is not None:
                out.append(Budget("user", user_id, period, amount))
    return out


def period_start(period: str, now: float) -> float:
    return day_start(now) if period == "day" else month_start(now)


def standing(budget: Budget, charges: Iterable[Charge], adjustments: Iterable[BudgetAdjusted],
             now: float) -> Standing:
    """What is left of ``budget`` at ``now``: its period's raises and spend, counted from its last reset."""
    since = period_start(budget.period, now)
    mine = sorted((a for a in adjustments if (a.scope, a.target, a.period) == (budget.scope, budget.target,
                                                                              budget.period)
                   and since <= a.at <= now), key=lambda a: a.at)
    for a in mine:
        if a.reset:
            since = a.at
    # Sums exactly rounded (fsum), so they do not depend on the order the charges and changes come in:
    # the projection's indexes give them in another order than a walk of every promise (decision 79).
    added = math.fsum(a.add for a in mine if a.at >= since and not a.reset)
    key = "chat_id" if budget.scope == "chat" else "user_id"
    spent = math.fsum(c.usd or 0.0 for c in charges if getattr(c, key) == budget.target and since <= c.at <= now)
    return Standing(budget, added, spent)


def words(b: Budget) -> str:
    whose = "this chat's" if b.scope == "chat" else "your"
    return f"{whose} {'daily' if b.period == 'day' else 'monthly'} budget of {usd(b.usd)}"


def over_budget(standings: Sequence[Standing], estimate: float | None = None) -> str | None:
    """Why a plan must wait: the budget with least left once nothing is left, or less than the estimate."""
    short = [s for s in standings if s.left <= 0 or (estimate is not None and estimate > s.left)]
    if not short:
        return None
    s = min(short, key=lambda s: (s.left, PERIODS.index(s.budget.period)))
    left = max(0.0, s.left)
    why = f"over budget: {usd(left)} left {when(s.budget.period)} ({words(s.budget)})"
    if estimate is not None and s.left > 0:
        why += f", the plan is estimated at {usd(estimate)}"
    return why


def check(config: Config, chat_id: int | None, user_id: int | None, charges: Iterable[Charge],
          adjustments: Sequence[BudgetAdjusted], now: float, estimate: float | None = None) -> str | None:
    """``over_budget`` for a request of this chat and user, from the log's charges and adjustments."""
    applying = budgets(config, chat_id, user_id)
    if not applying:
        return None
    charges = list(charges)
    return over_budget([standing(b, charges, adjustments, now) for b in applying], estimate)


NO_BUDGET = "No budget is set for this chat or for you ([budgets] in valor.toml)."


def report(config: Config, chat_id: int, user_id: int | None, charges: Iterable[Charge],
           adjustments: Sequence[BudgetAdjusted], now: float, missing: str = NO_BUDGET) -> str:
    """``/budget``: each budget that applies (the chat's, and the user's own when ``charges`` hold
    theirs from every chat), spent and left; ``missing`` when none does."""
    charges = list(charges)
    return report_text([standing(b, charges, adjustments, now) for b in budgets(config, chat_id, user_id)], missing)


def report_text(standings: Sequence[Standing], missing: str = NO_BUDGET) -> str:
    """``report``'s words from the budgets' standings (a chat's are summed where the log is, decision 75)."""
    if not standings:
        return missing
    lines = []
    for s in standings:
        b = s.budget
        added = f" + {usd(s.added)} added" if s.added else ""
        lines.append(f"{words(b).capitalize()}{added}: {usd(s.spent)} spent, {usd(max(0.0, s.left))} left "
                     f"{when(b.period)}")
    return "\n".join(lines)


# -- what owners say: /budget +5 today, /budget reset, /budget +20 month user 123 -------------------------


class BadBudget(ValueError):
    pass


@dataclass(frozen=True)
class Change:
    periods: tuple[BudgetPeriod, ...]
    add: float = 0.0
    reset: bool = False
    scope: BudgetScope = "chat"
    target: int | None = None  # None: this chat


USAGE = ("Usage: /budget (what is left), /budget +5 [today|month] (raise it), /budget reset [today|month] "
         "(count afresh), … user ID (a user's budget instead of this chat's)")


def parse_change(text: str) -> Change | None:
    """``+5 today`` -> Change(("day",), add=5); ``reset`` -> both periods; empty text -> None (a report)."""
    words_ = text.lower().split()
    if not words_:
        return None
    scope: BudgetScope = "chat"
    target: int | None = None
    if "user" in words_:
        i = words_.index("user")
        if i + 1 >= len(words_) or not words_[i + 1].lstrip("-").isdigit():
            raise BadBudget(f"'user' needs a user id. {USAGE}")
        scope, target = "user", int(words_[i + 1])
        del words_[i:i + 2]
    periods: tuple[BudgetPeriod, ...] = tuple(PERIOD_WORDS[w] for w in words_ if w in PERIOD_WORDS)
    rest = [w for w in words_ if w not in PERIOD_WORDS]
    if len(periods) > 1 or len(rest) != 1:
        raise BadBudget(USAGE)
    if rest[0] == "reset":
        return Change(periods or PERIODS, reset=True, scope=scope, target=target)
    amount = rest[0].lstrip("+").lstrip("$")
    try:
        add = float(amount)
    except ValueError:
        raise BadBudget(f"'{rest[0]}' is not an amount. {USAGE}") from None
    if not rest[0].startswith("+") or add <= 0 or add != add or add == float("inf"):
        raise BadBudget(f"Raise a budget with a positive amount, e.g. +5. {USAGE}")
    return Change(periods or ("day",), add=add, scope=scope, target=target)


def adjustments(promises: Iterable[Any]) -> list[BudgetAdjusted]:
    """Every ``budget_adjusted`` the projection's promises carry."""
    return [a for p in promises for a in p.budget]


def adjustments_of(state: Projection, chat_id: int | None, user_id: int | None) -> list[BudgetAdjusted]:
    """The changes ``adjustments`` holds to the chat's budgets and the user's, from the projection's
    index of who carries them (decision 79), not a walk of every promise."""
    out = []
    for scope, target in (("chat", chat_id), ("user", user_id)):
        if target is not None:
            out += [a for pid in sorted(state.budget_changes.get((scope, target), ()))
                    for a in state.promises[pid].budget if (a.scope, a.target) == (scope, target)]
    return out


# -- estimates -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Estimate:
    usd: float
    runs: int
    task: str

    def text(self) -> str:
        return f"{usd(self.usd)} (estimate from the last {self.runs} {self.task} run{'s' if self.runs != 1 else ''})"


def estimates(promises: Reversible[Any], types: Iterable[str], runs: int = ESTIMATE_RUNS) -> dict[str, Estimate]:
    """Per type, the mean spend of its latest ``runs`` ended promises that recorded any (newest first)."""
    wanted = set(types)
    seen: dict[str, list[float]] = {t: [] for t in wanted}
    for p in reversed(promises):
        if not wanted:
            break
        task = p.spec.task
        if task in wanted and p.terminal and p.spent:
            seen[task].append(p.cost_usd)
            if len(seen[task]) >= runs:
                wanted.discard(task)
    return {t: Estimate(sum(c) / len(c), len(c), t) for t, c in seen.items() if c}


def plan_estimate(specs: Sequence[Any]) -> str:
    """The line a plan's reply shows: its total and where each figure comes from; '' without any."""
    known = [s for s in specs if s.estimate_usd is not None]
    if not known:
        return ""
    total = sum(s.estimate_usd for s in known)
    by_type = {s.task: Estimate(s.estimate_usd, s.estimate_runs, s.task) for s in known}
    sources = "; ".join(e.text() for e in by_type.values())
    unknown = len(specs) - len(known)
    more = f", and {unknown} step{'s' if unknown != 1 else ''} with no history" if unknown else ""
    if len(specs) == 1:
        return f"💲 About {sources}."
    return f"💲 About {usd(total)} in all: {sources}{more}."
