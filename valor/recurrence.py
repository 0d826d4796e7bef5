"""When a schedule fires: the next-fire maths and the grammar of "every ...".

Pure functions of plain values.  A recurrence is either a fixed interval
(``every`` seconds from an anchor instant: no wall clock, no DST) or a cron
expression read on the wall clock of a time zone (croniter for the fields,
zoneinfo for the zone).  Wall-clock rules at DST changes (decision 51):

- a wall-clock time that happens twice (clocks go back) fires once, at its first occurrence;
- a wall-clock time that does not exist (clocks go forward) fires at the first instant after the gap;
- two matches that land on the same instant fire once.

So a daily 02:30 job runs exactly once on both change days.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

# Missed-tick and overlap policies (a schedule's own, recorded with it).
MISSED = ("skip", "catch_up_one")
OVERLAP = ("skip", "queue", "run")


class RecurrenceError(ValueError):
    """A recurrence that cannot be read; the message says what to write instead."""


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise RecurrenceError(f"unknown time zone {name!r} (e.g. UTC, Europe/Berlin)") from exc


def check_cron(expr: str) -> str:
    from croniter import croniter  # here, not at the top: every `valor` command imports this module

    expr = " ".join(expr.split())
    if len(expr.split()) != 5 or not croniter.is_valid(expr):
        raise RecurrenceError(f"not a cron expression: {expr!r} (five fields: minute hour day month weekday)")
    return expr


def next_fire(after: float, *, cron: str | None = None, every: float | None = None, anchor: float = 0.0,
              tz: str = "UTC") -> float:
    """The first tick strictly after ``after`` (POSIX seconds)."""
    if every is not None:
        if every <= 0:
            raise RecurrenceError("an interval must be positive")
        if after < anchor:
            return anchor
        k = int((after - anchor) // every) + 1
        return anchor + k * every
    if cron is None:
        raise RecurrenceError("a recurrence needs a cron expression or an interval")
    from croniter import croniter

    tzinfo = zone(tz)
    wall = datetime.fromtimestamp(after, tzinfo).replace(tzinfo=None)
    it = croniter(check_cron(cron), wall)
    for _ in range(10_000):  # a valid expression matches within years; this only bounds a bug
        instant = _instant(it.get_next(datetime), tzinfo)
        if instant > after:
            return instant
    raise RecurrenceError(f"{cron!r} never fires")


def ticks(after: float, until: float, limit: int, **recurrence) -> Iterator[float]:
    """Ticks in (after, until], at most ``limit`` of them."""
    t = after
    for _ in range(limit):
        t = next_fire(t, **recurrence)
        if t > until:
            return
        yield t


def count_ticks(after: float, until: float, **recurrence) -> int:
    """How many ticks fall in (after, until]; intervals by arithmetic, cron by walking (capped)."""
    every = recurrence.get("every")
    if every is not None:
        first = next_fire(after, **recurrence)
        return 0 if first > until else int((until - first) // every) + 1
    return sum(1 for _ in ticks(after, until, 100_000, **recurrence))


def gap_below(floor: float, after: float, **recurrence) -> float | None:
    """A gap between consecutive ticks shorter than ``floor`` seconds, or None.  A cron is walked over the
    eight days after ``after`` (a week of weekdays and hours), stopping at the first short gap."""
    every = recurrence.get("every")
    if every is not None:
        return every if every < floor else None
    previous = None
    for t in ticks(after, after + 8 * 86400, 20_000, **recurrence):
        if previous is not None and t - previous < floor:
            return t - previous
        previous = t
    return None


def _instant(wall: datetime, tzinfo: ZoneInfo) -> float:
    """The instant a wall-clock time names: its first occurrence, or the end of the gap it falls in."""
    first = wall.replace(tzinfo=tzinfo, fold=0)
    t = first.timestamp()
    if datetime.fromtimestamp(t, tzinfo).replace(tzinfo=None) == wall:
        return t
    # In a gap: the two readings straddle the change; find the first second after it.
    lo, hi = sorted((wall.replace(tzinfo=tzinfo, fold=1).timestamp(), t))
    offset = datetime.fromtimestamp(lo, tzinfo).utcoffset()
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if datetime.fromtimestamp(mid, tzinfo).utcoffset() == offset:
            lo = mid
        else:
            hi = mid
    return float(hi)


# --- the grammar of "every ..." ------------------------------------------------

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_INTERVAL = re.compile(r"^(\d+)([smhdw])$")
_CLOCK = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")
_OPEN_QUOTES, _CLOSE_QUOTES = "\"'“‘", "\"'”’"  # a phone's keyboard may curl them
_WEEKDAYS = {"mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6, "sun": 0}


def parse_every(words: list[str]) -> tuple[dict, list[str]]:
    """Read ``30m``, ``1d 09:00``, ``1w mon 09:00``, ``weekdays 09:00``, ``cron m h dom mon dow`` or
    ``"m h dom mon dow"`` from the front of ``words``: the recurrence (``cron`` or ``every``) and the words left."""
    if not words:
        raise RecurrenceError("say how often: 30m, 2h, 1d 09:00, 1w mon 09:00, weekdays 09:00")
    head, rest = words[0].lower(), words[1:]
    if head[:1] in _OPEN_QUOTES:
        return _quoted_cron(words)
    if head == "cron":
        fields = rest[:5]
        if len(fields) < 5:
            raise RecurrenceError('cron takes five fields: "cron 0 9 * * 1-5"')
        return {"cron": check_cron(" ".join(fields).strip("\"'"))}, rest[5:]
    if head == "weekdays":
        hour, minute, rest = _clock(rest, "weekdays")
        return {"cron": f"{minute} {hour} * * 1-5"}, rest
    m = _INTERVAL.match(head)
    if not m:
        raise RecurrenceError(f"not an interval: {words[0]!r} (e.g. 30m, 2h, 1d 09:00, weekdays 09:00, "
                              f'or cron in quotes: "0 9 * * 1-5")')
    n, unit = int(m.group(1)), m.group(2)
    if n <= 0:
        raise RecurrenceError("an interval must be positive")
    if unit == "w" and rest and rest[0].lower()[:3] in _WEEKDAYS:
        if n != 1:
            raise RecurrenceError('only "1w <day> HH:MM" has a day; use cron for more')
        day = _WEEKDAYS[rest[0].lower()[:3]]
        hour, minute, rest = _clock(rest[1:], "1w <day>")
        return {"cron": f"{minute} {hour} * * {day}"}, rest
    if unit == "d" and rest and _CLOCK.match(rest[0]):
        if n != 1:
            raise RecurrenceError('only "1d HH:MM" has a time of day; use cron for more (cron 0 9 */2 * *)')
        hour, minute, rest = _clock(rest, "1d")
        return {"cron": f"{minute} {hour} * * *"}, rest
    return {"every": float(n * _UNITS[unit])}, rest


def _quoted_cron(words: list[str]) -> tuple[dict, list[str]]:
    """``"0 9 * * 1-5" rest``: the words up to the closing quote are the cron fields."""
    for n, word in enumerate(words):
        if word[-1:] in _CLOSE_QUOTES and (n > 0 or len(word) > 1):
            return {"cron": check_cron(" ".join(words[: n + 1])[1:-1])}, words[n + 1:]
    raise RecurrenceError('a quoted cron expression needs its closing quote: "0 9 * * 1-5"')


def wall(t: float, tz: str = "UTC") -> str:
    """An instant as the zone's wall clock: ``2025-03-31 09:00 CEST``."""
    return datetime.fromtimestamp(t, zone(tz)).strftime("%Y-%m-%d %H:%M %Z")


def _clock(words: list[str], what: str) -> tuple[int, int, list[str]]:
    m = _CLOCK.match(words[0]) if words else None
    if not m:
        raise RecurrenceError(f"{what} needs a time of day, e.g. 09:00")
    return int(m.group(1)), int(m.group(2)), words[1:]


def describe(*, cron: str | None = None, every: float | None = None, tz: str = "UTC") -> str:
    if every is not None:
        return f"every {span(every)}"
    return f"cron {cron} ({tz})"


def span(seconds: float) -> str:
    """Seconds in the grammar's largest whole unit: ``30m``, ``1d``, ``90s``."""
    for unit, size in (("w", _UNITS["w"]), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def latest_tick(after: float, until: float, **recurrence) -> tuple[float, int] | None:
    """The last tick in (after, until] and how many there are, or None when there is none."""
    n = count_ticks(after, until, **recurrence)
    if n == 0:
        return None
    every = recurrence.get("every")
    if every is not None:
        return next_fire(after, **recurrence) + (n - 1) * every, n
    return list(ticks(after, until, 100_000, **recurrence))[-1], n


def tick_key(t: float) -> str:
    """A tick's time as it appears in ids: whole seconds when it is one."""
    return str(int(t)) if float(t).is_integer() else repr(float(t))
