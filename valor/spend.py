"""What work cost: prices for an estimate, and totals folded from the log.  Pure.

Spend is recorded once, on each attempt's end event (``succeeded``,
``attempt_failed``, ``attempt_stopped``) as ``Evidence.cost_usd`` and
``Evidence.tokens``; every total here is a sum over those facts, so totals
read after a restart equal the totals before it (decision 47).

Claude Code's own figure (``total_cost_usd`` of its ``result`` lines) is the
cost whenever it has one.  Tokens streamed since its last ``result`` (an
attempt killed mid-turn), and the LLM agent's Messages API calls, are priced
here at list prices by model family: an estimate, marked
``Evidence.cost_estimated``.
"""

from __future__ import annotations

import bisect
import datetime
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from promises.projection import Projection, origin_of, sender_of  # sender_of: for spend.sender_of callers
from promises.story import usd  # the one way money is written, here for spend.usd callers
from schemas.events import Evidence, TokenUsage

# USD per million tokens: input, output, cache read, cache write (5-minute).  Matched by substring of the
# model name, first match wins; an unknown model is priced as Sonnet.
PRICES: tuple[tuple[str, tuple[float, float, float, float]], ...] = (
    ("opus-4-1", (15.0, 75.0, 1.5, 18.75)),
    ("opus-4-0", (15.0, 75.0, 1.5, 18.75)),
    ("opus-4-2", (15.0, 75.0, 1.5, 18.75)),
    ("opus", (5.0, 25.0, 0.5, 6.25)),
    ("haiku-3", (0.25, 1.25, 0.03, 0.3)),
    ("haiku", (1.0, 5.0, 0.1, 1.25)),
    ("sonnet", (3.0, 15.0, 0.3, 3.75)),
)
DEFAULT_PRICE = (3.0, 15.0, 0.3, 3.75)


def price(model: str | None) -> tuple[float, float, float, float]:
    name = (model or "").lower()
    for part, per_mtok in PRICES:
        if part in name:
            return per_mtok
    return DEFAULT_PRICE


def estimate(model: str | None, tokens: TokenUsage) -> float:
    """List price of ``tokens`` on ``model``, in USD."""
    p_in, p_out, p_read, p_write = price(model)
    return (tokens.input * p_in + tokens.output * p_out + tokens.cache_read * p_read
            + tokens.cache_creation * p_write) / 1_000_000


def add_tokens(a: TokenUsage | None, b: TokenUsage | None) -> TokenUsage | None:
    if a is None or b is None:
        return a if b is None else b
    return TokenUsage(input=a.input + b.input, output=a.output + b.output, cache_read=a.cache_read + b.cache_read,
                      cache_creation=a.cache_creation + b.cache_creation)


def tokens_of(usage: Any) -> TokenUsage | None:
    """A Messages API ``usage`` (a dict, or the SDK's object) as TokenUsage."""
    if usage is None:
        return None
    get = usage.get if isinstance(usage, dict) else (lambda k: getattr(usage, k, None))

    def n(key: str) -> int:
        value = get(key)
        return value if isinstance(value, int) and not isinstance(value, bool) else 0

    return TokenUsage(input=n("input_tokens"), output=n("output_tokens"), cache_read=n("cache_read_input_tokens"),
                      cache_creation=n("cache_creation_input_tokens"))


def with_call(evidence: Evidence | None, model: str | None, usage: Any) -> Evidence:
    """``evidence`` with one more Messages API call of ``model`` counted (the LLM agent's own spend)."""
    used = tokens_of(usage) or TokenUsage()
    before = evidence or Evidence()
    return Evidence(tokens=add_tokens(before.tokens, used), cost_usd=(before.cost_usd or 0.0) + estimate(model, used),
                    cost_estimated=True, turns=(before.turns or 0) + 1)


# -- totals ---------------------------------------------------------------------------------------------


@dataclass
class Total:
    usd: float = 0.0
    input: int = 0
    output: int = 0
    cache_read: int = 0
    cache_creation: int = 0
    attempts: int = 0

    def add(self, usd: float | None, t: TokenUsage | None) -> None:
        self.usd += usd or 0.0
        if t is not None:
            self.input += t.input
            self.output += t.output
            self.cache_read += t.cache_read
            self.cache_creation += t.cache_creation
        self.attempts += 1

    def as_dict(self) -> dict[str, Any]:
        return {"usd": round(self.usd, 6), "input": self.input, "output": self.output,
                "cache_read": self.cache_read, "cache_creation": self.cache_creation, "attempts": self.attempts}


@dataclass(frozen=True)
class Charge:
    """One attempt's recorded spend, with what it is counted under."""

    promise_id: int
    attempt: int
    at: float
    task: str
    chat_id: int | None
    user_id: int | None
    plan: int | None  # the respond promise that made it (its own id for a respond promise)
    usd: float | None
    tokens: TokenUsage | None = None


@dataclass
class Totals:
    all: Total = field(default_factory=Total)
    by_day: dict[str, Total] = field(default_factory=dict)
    by_type: dict[str, Total] = field(default_factory=dict)
    by_chat: dict[int | None, Total] = field(default_factory=dict)
    by_user: dict[int | None, Total] = field(default_factory=dict)
    by_plan: dict[int | None, Total] = field(default_factory=dict)
    by_promise: dict[int, Total] = field(default_factory=dict)

    def add(self, c: Charge, day: str) -> None:
        self.all.add(c.usd, c.tokens)
        for table, key in ((self.by_day, day), (self.by_type, c.task), (self.by_chat, c.chat_id),
                           (self.by_user, c.user_id), (self.by_plan, c.plan), (self.by_promise, c.promise_id)):
            table.setdefault(key, Total()).add(c.usd, c.tokens)

    def top(self, n: int = 5) -> list[tuple[int, Total]]:
        return sorted(self.by_promise.items(), key=lambda kv: (-kv[1].usd, kv[0]))[:n]

    def as_dict(self, top: int = 10) -> dict[str, Any]:
        def table(t: dict) -> dict[str, Any]:
            return {str(k): v.as_dict() for k, v in sorted(t.items(), key=lambda kv: str(kv[0]))}

        return {"total": self.all.as_dict(), "by_day": table(self.by_day), "by_type": table(self.by_type),
                "by_chat": table(self.by_chat), "by_user": table(self.by_user), "by_plan": table(self.by_plan),
                "top": [{"id": pid, **t.as_dict()} for pid, t in self.top(top)]}


def day_of(at: float, tz: datetime.tzinfo = datetime.UTC) -> str:
    return datetime.datetime.fromtimestamp(at, tz).date().isoformat()


def totals(charges: Iterable[Charge], since: float | None = None, until: float | None = None,
           chat_id: int | None = None, user_id: int | None = None,
           tz: datetime.tzinfo = datetime.UTC) -> Totals:
    """Sum the charges at or after ``since`` and before ``until``, of one chat or user if given."""
    out = Totals()
    for c in charges:
        if (since is not None and c.at < since) or (until is not None and c.at >= until):
            continue
        if (chat_id is not None and c.chat_id != chat_id) or (user_id is not None and c.user_id != user_id):
            continue
        out.add(c, day_of(c.at, tz))
    return out


def day_start(at: float, tz: datetime.tzinfo = datetime.UTC) -> float:
    d = datetime.datetime.fromtimestamp(at, tz)
    return d.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()


def month_start(at: float, tz: datetime.tzinfo = datetime.UTC) -> float:
    d = datetime.datetime.fromtimestamp(at, tz)
    return d.replace(day=1, hour=0, minute=0, second=0, microsecond=0).timestamp()


def charges(promises: Iterable[Any]) -> list[Charge]:
    """Every attempt's spend in a projection's promises (``Promise.spent``), with its chat, user and plan."""
    by_id = {p.id: p for p in promises}
    return [_charge(p, s, by_id) for p in by_id.values() for s in p.spent]


def _charge(p: Any, s: Any, by_id: dict[int, Any]) -> Charge:
    """One ``Spent`` of ``p`` counted under the chat, user and plan of its origin (``origin_of``) in ``by_id``."""
    spec = p.spec
    origin = by_id.get(o) if (o := origin_of(spec)) is not None else None
    return Charge(promise_id=p.id, attempt=s.attempt, at=s.at, task=spec.task, chat_id=spec.chat_id,
                  user_id=sender_of(origin.spec.input) if origin is not None else None,
                  plan=origin.id if origin is not None else None, usd=s.cost_usd, tokens=s.tokens)


def charges_of(state: Projection, chat_id: int | None, user_id: int | None, since: float,
               until: float) -> list[Charge]:
    """The charges ``charges`` gives the chat or the user with ``since <= at <= until``, from the
    projection's indexes (decision 79): what the chat and the user spent then, not a walk of every promise."""
    found: set[tuple[float, int, int]] = set()
    for table, key in ((state.spend_by_chat, chat_id), (state.spend_by_user, user_id)):
        if key is not None and (entries := table.get(key)) is not None:  # sorted by time: bisected
            found.update(entries[bisect.bisect_left(entries, (since,)):bisect.bisect_right(entries, (until, math.inf))])
    promises = state.promises
    return [_charge(promises[pid], promises[pid].spent[i], promises) for _, pid, i in sorted(found, key=lambda e: e[1:])]


def report(charges: list[Charge], now: float, tz: datetime.tzinfo = datetime.UTC, top: int = 5,
           since: float | None = None, **scope: Any) -> str:
    """Today, this month (or since ``since``), by type, and the costliest promises, in words."""
    today = totals(charges, since=day_start(now, tz), tz=tz, **scope)
    period = totals(charges, since=month_start(now, tz) if since is None else since, tz=tz, **scope)
    return report_text(today.all, period.all, {k: v.usd for k, v in period.by_type.items()},
                       [(pid, t.usd) for pid, t in period.top(top)], month=since is None)


def report_text(today: Total, period: Total, by_type: dict[str, float], top: list[tuple[int, float]],
                month: bool = True) -> str:
    """``report``'s words from its sums (a chat's are summed where the log is, decision 75)."""
    def line(label: str, t: Total) -> str:
        tokens = t.input + t.output + t.cache_read + t.cache_creation
        return f"{label}: {usd(t.usd)} ({t.attempts} attempt{'s' if t.attempts != 1 else ''}, {tokens:,} tokens)"

    out = [line("Today", today), line("This month" if month else "Since then", period)]
    if by_type:
        out.append("By type: " + ", ".join(f"{k} {usd(v)}" for k, v in sorted(by_type.items(), key=lambda kv: -kv[1])))
    if costly := [(pid, spent) for pid, spent in top if spent > 0]:
        out.append("Top: " + ", ".join(f"#{pid} {usd(spent)}" for pid, spent in costly))
    return "\n".join(out)
