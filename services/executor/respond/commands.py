"""The command agent: slash commands in, a reply plus promises and commands out.

Pure: ``answer(msg, view, config)`` sees the message, what the chat's log
holds (``ChatView``) and the configured task types.  It is the agent when no
language model is configured, and always the one for messages starting with
``/``.  Plans are validated with the scheduler's own ``validate_plan``, so a
plan refused here would have been refused there, and a refused plan promises
nothing.

``/continue [id] text`` resumes an ended Claude Code task's session with a
new instruction (without an id: the task whose message this replies to, else
the chat's most recent ended one).  A plain reply to Valor's message about a
promise is a gesture on that promise (``steer.py``), answered before either
agent is asked, because which promise is meant is already recorded.

Task text: ``/do [!N] [type] text``: the first word is the type only when it
names a configured type (``/do search flaky tests`` is a ``search``), otherwise
the type is ``code``.  ``!1`` (first) to ``!9`` (last) sets the priority (5
without one): right after ``/do`` or the type, after ``/later`` or its delay,
and at the end of a ``/plan`` line.  The text becomes the task's ``input`` (a JSON object text
is passed as the object, e.g. ``{"seconds": 5}`` for ``sleep``) and its
shortened first line the ``title``.  Files sent with the command are added to
the input of every task it creates (``attached.into``).  ``$0.50`` (next to
``!N``) caps what one attempt of the task may spend (decision 47); ``/usage``
says what this chat spent.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass

import msgspec

from promises import story
from promises.continuation import CannotContinue, is_claude, session_to_resume
from promises.plan import PlanError, validate_plan
from promises.projection import Promise, Schedule
from promises.states import State
from promises.story import explain, short
from schemas.commands import NewPromise, NewSchedule, RespondCommand, RespondResult
from schemas.events import MessageReceived
from valor import budget, recurrence, render, spend
from valor.config import Config

from . import approval, attached
from .show import show_step
from .view import ChatView

DEFAULT_TYPE = "code"
AGENT_ONLY = frozenset({"respond"})  # types a chat cannot ask for directly
NEEDS_LOG = frozenset({"status", "list", "cancel", "retry", "why", "continue", "approve", "reject", "usage",
                       "budget", "schedules", "pause", "resume", "unschedule"})
COST_WORD = re.compile(r"\$\S*")
LIST_LIMIT = 15
# A priority word: "!" and what follows up to a space, a bracket or another "!" ("!2", and "!0" or
# "!high" to refuse); "hey!" or "!!" are text.
PRIORITY = r"(?<![^\s:])![^\s\[\]!]+"
PRIORITY_WORD = re.compile(PRIORITY)
# What may end a plan line, in any order: its dependencies and its priority.
PLAN_TAIL = re.compile(r"\[\s*after\b(?P<after>[^\]]*)\]|(?P<priority>" + PRIORITY + ")")
PLAN_LINE = re.compile(
    r"^(?P<name>[A-Za-z0-9_.-]+)\s*:\s*(?P<type>[A-Za-z0-9_-]+)\s*:\s*(?P<text>.*?)"
    r"(?P<tail>(?:\s*(?:\[\s*after\b[^\]]*\]|" + PRIORITY + r"))*)\s*$"
)
PLAN_FORMAT = "name: type: text [after a, b]"
DEFAULT_PRIORITY = NewPromise().priority
DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True)
class Parsed:
    verb: str  # "" for plain text
    rest: str  # everything after the verb, other lines included


def parse(text: str) -> Parsed:
    """``/Plan@valor_bot a: b: c`` -> ("plan", "a: b: c"); plain text -> ("", text)."""
    text = text.strip()
    if not text.startswith("/"):
        return Parsed("", text)
    head, _, rest = text.partition("\n")
    word, _, first = head.partition(" ")
    verb = word[1:].split("@", 1)[0].lower()
    rest = "\n".join(part for part in (first.strip(), rest) if part)
    return Parsed(verb, rest.strip())


def is_command(text: str) -> bool:
    return text.lstrip().startswith("/")


def needs_log(text: str) -> bool:
    return parse(text).verb in NEEDS_LOG


def needs_user(text: str) -> bool:
    """``/usage`` and ``/budget`` show the sender's own spend and budgets, across chats."""
    return parse(text).verb in ("usage", "budget")


def task_types(config: Config) -> list[str]:
    return sorted(t for t in config.types if t not in AGENT_ONLY)


def answer(msg: MessageReceived, view: ChatView | None, config: Config) -> RespondResult:
    parsed = parse(msg.text)
    if not parsed.verb:
        if msg.reply_to is not None and view is not None and (shown := show_step(msg, view)) is not None:
            return shown  # "show 2" replying to a plan's message
        if msg.attachments and not parsed.rest:  # files alone (one not saved is told by the responder)
            return RespondResult(reply=attached.received_reply(msg))
        return approval.cannot_edit(msg, view) or RespondResult(
            reply=attached.received_reply(msg) or plain_text_reply(config))
    handler = _VERBS.get(parsed.verb)
    if handler is None:
        return RespondResult(reply=f"I don't know /{parsed.verb}. Send /help for the commands.")
    if parsed.verb in NEEDS_LOG and view is None:
        view = ChatView(msg.chat_id)
    result = handler(parsed.rest, msg, view, config)
    if result.promises and msg.attachments:  # the files sent with a command are that command's
        result = msgspec.structs.replace(result, promises=[attached.into(t, msg) for t in result.promises])
    return result


# --- replies without promises ---------------------------------------------------


def plain_text_reply(config: Config) -> str:
    return ("No language model is configured, so I follow commands only. "
            "Send /do <what to do> to promise a task, /list to see this chat's promises, or /help for more.")


def help_text(config: Config) -> str:
    return "\n".join([
        "/do [!N] [$cap] [type] text: promise one task (type defaults to code); $0.50 caps what it may spend",
        "/usage: what this chat spent today and this month, by type, the costliest promises, and what you spent",
        "/budget: what is left of this chat's budgets and yours; owners: /budget +5 [today|month], /budget reset",
        f"/plan, then one line per task: {PLAN_FORMAT} [!N]",
        "/later 30m [!N] [type] text: a task that starts later (s, m, h, d)",
        f"/every {EVERY_FORMS} [!N] [$cap] [type] text: a task on a schedule, each run answering here; "
        "tz=Europe/Berlin, missed=catch_up_one, overlap=queue|run after the when",
        "/schedules: this chat's schedules · /pause id · /resume id · /unschedule id",
        f"!N: the priority, !1 runs first, !9 last ({DEFAULT_PRIORITY} without one)",
        "/continue [id] text: go on with an ended Claude Code task in its session "
        "(or just reply to its result message)",
        "/status [id]: one promise, or what is open in this chat",
        "/list: this chat's promises",
        "/cancel id [reason] · /retry id",
        "/why id: what happened to a promise (or reply \"show N\" to a plan's message for step N)",
        "Reply to my message about a task: stop (or cancel, ❌) cancels it, retry retries it, why? explains it; "
        "anything else adds instructions (before it starts, into a running Claude Code session, "
        "or continuing it once it ended)",
        "A plan that waits for approval: answer go (or 👍) to run it, no to cancel it; "
        "/approve [id] · /reject [id] [reason] say the same",
        "Types: " + ", ".join(task_types(config)),
    ])


def _help(rest, msg, view, config) -> RespondResult:
    return RespondResult(reply=help_text(config))


# --- promising work ---------------------------------------------------------------


def new_task(text: str, type_: str, name: str | None = None, after: list[str] | None = None,
             delay: float | None = None, priority: int | None = None) -> NewPromise:
    """A task from chat text: a JSON object text is the input as is, any other text the input string."""
    value: object = text
    if text.startswith("{"):
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            value = parsed
    title = short(text.splitlines()[0], 80) if text and value is text else (name or type_)
    return NewPromise(name=name, type=type_, title=title, input=value, after=after or [], delay=delay,
                      priority=DEFAULT_PRIORITY if priority is None else priority)


class BadPriority(ValueError):
    pass


def parse_priority(word: str) -> int | None:
    """``!2`` -> 2; None when the word is no priority word; BadPriority for ``!0``, ``!10``, ``!high``."""
    if not PRIORITY_WORD.fullmatch(word):
        return None
    value = word[1:]
    if not (value.isdigit() and 1 <= int(value) <= 9):
        raise BadPriority(f"'{word}' is not a priority: use !1 (runs first) to !9 (last); "
                          f"without one a task gets {DEFAULT_PRIORITY}")
    return int(value)


def take_priority(text: str, found: int | None = None) -> tuple[int | None, str]:
    """A leading priority word off ``text`` (unless one was ``found`` already); raises BadPriority."""
    if found is not None:
        return found, text
    word, rest = _word(text)
    priority = parse_priority(word)
    return (None, text) if priority is None else (priority, rest)


def parse_cost(word: str) -> float | None:
    """``$0.50`` -> 0.5; None when the word is no cost word; BadPriority for ``$0``, ``$x``."""
    if not COST_WORD.fullmatch(word):
        return None
    try:
        value = float(word[1:])
    except ValueError:
        value = 0.0
    if not value > 0 or value != value or value == float("inf"):
        raise BadPriority(f"'{word}' is not a cost cap: use an amount in USD such as $0.50")
    return value


def take_flags(text: str, priority: int | None = None, cost: float | None = None) -> tuple[int | None, float | None, str]:
    """Leading ``!N`` and ``$X`` words off ``text``, in either order; raises BadPriority."""
    while True:
        word, rest = _word(text)
        if priority is None and (found := parse_priority(word)) is not None:
            priority, text = found, rest
        elif cost is None and (capped := parse_cost(word)) is not None:
            cost, text = capped, rest
        else:
            return priority, cost, text


def with_priority(task: NewPromise) -> str:
    return f" (priority {task.priority})" if task.priority != DEFAULT_PRIORITY else ""


def _word(text: str) -> tuple[str, str]:
    """The first word and the rest, split on any whitespace (a newline too)."""
    parts = text.split(None, 1)
    return (parts[0], parts[1].strip()) if len(parts) == 2 else (text.strip(), "")


def split_type(text: str, config: Config) -> tuple[str, str]:
    """The first word is the type only when it names one."""
    first, rest = _word(text)
    if first in task_types(config):
        return first, rest
    return DEFAULT_TYPE, text


def _do(rest, msg, view, config) -> RespondResult:
    usage = ("Usage: /do [!N] [$cap] [type] text, e.g. /do fix the failing login test, /do !1 fix it first, "
             "or /do $0.50 fix it for at most 50 cents")
    try:
        priority, cost, rest = take_flags(rest)
        type_, text = split_type(rest, config)
        priority, cost, text = take_flags(text, priority, cost)
    except BadPriority as exc:
        return RespondResult(reply=f"{exc}. {usage}")
    if not rest:
        return RespondResult(reply=usage)
    if not text:
        return RespondResult(reply=f"What should the {type_} task do? Usage: /do [!N] [$cap] [type] text")
    task = new_task(text, type_, name=type_, priority=priority)  # a name, so ``spawned`` reads "code": 12
    if cost is not None:
        task = msgspec.structs.replace(task, max_cost=cost)
    capped = f" (at most {spend.usd(cost)})" if cost is not None else ""
    return _promise([task], config,
                    f"Promised {article(type_)} {type_} task{with_priority(task)}{capped}: {task.title}")


def _usage(rest, msg, view, config) -> RespondResult:
    if view is None:
        return RespondResult(reply="I cannot read this chat's log right now.")
    if (s := view.spend(msg.at or time.time(), budgets_of(msg, config))) is None:
        return RespondResult(reply="I cannot read this chat's spend right now.")
    out = [spend.report_text(s.today, s.month, s.by_type, s.top)]
    if msg.sender_id and (chats := s.user_chats):
        out.append(f"Yours, in {chats} chat{'s' if chats != 1 else ''}: {spend.usd(s.user_today)} today, "
                   f"{spend.usd(s.user_month)} this month")
    if budgets := budget.report_text(s.standings, missing=""):
        out.append(budgets)
    return RespondResult(reply="\n".join(out))


def budgets_of(msg: MessageReceived, config: Config) -> list[budget.Budget]:
    """The budgets ``/usage`` and ``/budget`` report: the chat's and the sender's."""
    return budget.budgets(config, msg.chat_id, msg.sender_id or None)


def _budget(rest, msg, view, config) -> RespondResult:
    """``/budget`` reports this chat's budgets and the sender's; an owner's ``+5 today`` or ``reset`` is applied by the scheduler."""
    try:
        change = budget.parse_change(rest)
    except budget.BadBudget as exc:
        return RespondResult(reply=str(exc))
    if change is None:
        if view is None or (s := view.spend(msg.at or time.time(), budgets_of(msg, config))) is None:
            return RespondResult(reply="I cannot read this chat's log right now.")
        return RespondResult(reply=budget.report_text(s.standings))
    if msg.sender_id not in config.budgets.owners:
        return RespondResult(reply="Only an owner ([budgets] owners in valor.toml) can change a budget.")
    whose = "This chat's" if change.target is None else f"User {change.target}'s"
    periods = " and ".join("daily" if p == "day" else "monthly" for p in change.periods)
    did = "reset: its spend counts afresh from now" if change.reset else f"raised by {spend.usd(change.add)}"
    return RespondResult(reply=f"{whose} {periods} budget {did}.",
                         commands=[RespondCommand(verb="budget", id=0, text=rest)])


def article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def parse_duration(text: str) -> float | None:
    """``30s``, ``10m``, ``2h``, ``1d``, ``1h30m`` -> seconds; None when it is not one."""
    text = text.strip().lower()
    if not text or DURATION.sub("", text):
        return None
    return sum(float(n) * UNITS[u] for n, u in DURATION.findall(text))


def _later(rest, msg, view, config) -> RespondResult:
    usage = "Usage: /later <delay> [!N] [type] text, e.g. /later 30m run the nightly checks (s, m, h, d)"
    try:
        priority, rest = take_priority(rest)
        when, text = _word(rest)
        priority, text = take_priority(text, priority)
    except BadPriority as exc:
        return RespondResult(reply=f"{exc}. {usage}")
    delay = parse_duration(when)
    if delay is None:
        return RespondResult(reply=f"'{when}' is not a delay. {usage}" if when else usage)
    if delay <= 0:
        return RespondResult(reply=f"The delay must be more than zero. {usage}")
    type_, text = split_type(text.strip(), config)
    if not text:
        return RespondResult(reply=usage)
    task = new_task(text, type_, name=type_, delay=delay, priority=priority)
    return _promise([task], config, f"Promised {article(type_)} {type_} task{with_priority(task)} "
                                    f"to start in {when.lower()}: {task.title}")


def parse_plan(text: str) -> list[NewPromise]:
    """One task per line; raises PlanError naming the first line that does not read."""
    tasks = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip().lstrip("-*•").strip()
        if not line:
            continue
        m = PLAN_LINE.match(line)
        if m is None:
            raise PlanError(f"line {n} ('{short(line, 40)}') is not '{PLAN_FORMAT}'")
        after: list[str] = []
        priorities: list[str] = []
        for part in PLAN_TAIL.finditer(m["tail"]):
            if part["priority"]:
                priorities.append(part["priority"])
                continue
            names = [a for a in re.split(r"[,\s]+", part["after"]) if a]
            if not names:
                raise PlanError(f"line {n}: [after] names no task")
            after += names
        if len(priorities) > 1:
            raise PlanError(f"line {n} has {len(priorities)} priorities ({', '.join(priorities)}); give one")
        try:
            priority = parse_priority(priorities[0]) if priorities else None
        except BadPriority as exc:
            raise PlanError(f"line {n}: {exc}") from None
        # A step is titled by its name, in the chat, `valor list` and the web page; its text is its input.
        tasks.append(msgspec.structs.replace(
            new_task(m["text"], m["type"], name=m["name"], after=after, priority=priority), title=m["name"]))
    if not tasks:
        raise PlanError(f"the plan has no tasks; write one per line after /plan: {PLAN_FORMAT}")
    return tasks


def _plan(rest, msg, view, config) -> RespondResult:
    try:
        tasks = parse_plan(rest)
    except PlanError as exc:
        return RespondResult(reply=refused(exc, config))
    steps = "; ".join(step(t) for t in tasks)
    return _promise(tasks, config, f"Planned {len(tasks)} task{'s' if len(tasks) != 1 else ''}: {steps}")


def step(task: NewPromise) -> str:
    """``write (after setup, priority 2)``: a planned task as a reply names it."""
    notes = [f"after {', '.join(task.after)}"] if task.after else []
    if task.priority != DEFAULT_PRIORITY:
        notes.append(f"priority {task.priority}")
    return (task.name or task.type) + (f" ({', '.join(notes)})" if notes else "")


def check_plan(tasks: list[NewPromise], config: Config, view: ChatView | None = None) -> None:
    """The scheduler's own validation, with this config's types; raises PlanError."""
    def state_of(pid: int) -> str | None:
        p = view.get(pid) if view else None
        return p.state if p else None

    types = set(task_types(config))
    validate_plan(tasks, state_of, lambda t: t in types)


def refused(exc: PlanError, config: Config) -> str:
    text = f"Plan not accepted, nothing was created: {exc}."
    if "unknown type" in str(exc):
        text += " Types: " + ", ".join(task_types(config)) + "."
    return text


def _promise(tasks: list[NewPromise], config: Config, reply: str) -> RespondResult:
    try:
        check_plan(tasks, config)
    except PlanError as exc:
        return RespondResult(reply=refused(exc, config))
    return RespondResult(reply=reply, promises=tasks)


# --- reading and steering the chat's promises ----------------------------------------


def parse_id(text: str) -> int | None:
    """``#12`` or ``12``."""
    text = text.strip().removeprefix("#")
    return int(text) if text.isdigit() and int(text) > 0 else None


def _target(rest: str, verb: str, view: ChatView, usage_tail: str = "") -> tuple[Promise | None, str, str]:
    """(promise, rest of the text, error reply)."""
    word, tail = _word(rest)
    pid = parse_id(word)
    if pid is None:
        return None, "", f"Usage: /{verb} id{usage_tail}, e.g. /{verb} #12"
    p = view.get(pid)
    if p is None:
        return None, "", f"There is no promise #{pid} in this chat."
    return p, tail.strip(), ""


def label(p: Promise) -> str:
    return story.label(p, 50)


def status_line(p: Promise) -> str:
    return f"{label(p)}: {story.state_words(p, result_width=120)}"


def _status(rest, msg, view, config) -> RespondResult:
    if rest:
        p, _, error = _target(rest, "status", view)
        return RespondResult(reply=error or status_line(p))
    work = view.work()
    open_ = [p for p in work if not p.terminal]
    # A long chat's view holds its newest promises (decision 75); the totals count them all.
    opened = max(len(open_), view.open_total)
    if not opened:
        done = max(len(work), view.work_total)
        return RespondResult(reply="Nothing is open in this chat." + (f" {done} finished; /list shows them." if done else ""))
    lines = [f"{opened} open:"] + [status_line(p) for p in open_[-LIST_LIMIT:]]
    return RespondResult(reply="\n".join(lines))


def _list(rest, msg, view, config) -> RespondResult:
    work = view.work()
    if not work:
        return RespondResult(reply="This chat has no promises yet. Send /do <what to do> to make one.")
    shown = work[-LIST_LIMIT:]
    lines = [story.listed(p, 50) for p in shown]
    if (total := max(len(work), view.work_total)) > len(shown):
        lines.insert(0, f"The last {len(shown)} of {total}:")
    return RespondResult(reply="\n".join(lines))


def _cancel(rest, msg, view, config) -> RespondResult:
    p, reason, error = _target(rest, "cancel", view, " [reason]")
    return RespondResult(reply=error) if error else cancel_one(p, reason, msg, view)


def cancel_one(p: Promise, reason: str, msg: MessageReceived, view: ChatView) -> RespondResult:
    if p.terminal:
        return RespondResult(reply=f"#{p.id} already {p.state}; there is nothing to cancel.")
    reason = reason or f"cancelled in chat by {msg.sender_name or 'the user'}"
    waiting = view.open_dependents(p.id)
    also = f" {', '.join(f'#{d}' for d in waiting)} will be cancelled with it." if waiting else ""
    return RespondResult(reply=f"Cancelling {label(p)}.{also}",
                         commands=[RespondCommand(verb="cancel", id=p.id, reason=reason)])


def _retry(rest, msg, view, config) -> RespondResult:
    p, _, error = _target(rest, "retry", view)
    return RespondResult(reply=error) if error else retry_one(p, view)


def retry_one(p: Promise, view: ChatView) -> RespondResult:
    if p.state not in (State.FAILED, State.CANCELLED, State.RETRYING):
        return RespondResult(reply=f"#{p.id} is {p.state}; only failed or cancelled promises can be retried.")
    if p.state != State.RETRYING:
        for dep in p.spec.depends_on:
            parent = view.get(dep)
            if parent is not None and parent.state != State.SUCCEEDED:
                return RespondResult(reply=f"#{p.id} depends on #{dep}, which is {parent.state}; retry #{dep} first.")
    how = "now" if p.state == State.RETRYING else "as a new promise"
    return RespondResult(reply=f"Retrying {label(p)} {how}.", commands=[RespondCommand(verb="retry", id=p.id)])


def continuation(target: Promise, text: str, msg: MessageReceived, config: Config) -> RespondResult:
    """A promise that resumes ``target``'s Claude Code session with ``text``, or the reply saying why not."""
    try:
        session_to_resume(target, target.id, msg.chat_id, None, config)
    except CannotContinue as exc:
        return RespondResult(reply=f"{str(exc)[:1].upper()}{str(exc)[1:]}.")
    task = msgspec.structs.replace(new_task(text, target.spec.task, name=f"continue-{target.id}"),
                                   continues=target.id)
    return _promise([task], config, f"Continuing #{target.id} in its {target.spec.task} session: {task.title}")


def latest_ended(view: ChatView, config: Config) -> Promise | None:
    """The chat's Claude Code task that ended last."""
    ended = [p for p in view.work() if p.terminal and is_claude(p, config)]
    return max(ended, key=lambda p: (p.finished_at or 0.0, p.id), default=None)


def _continue(rest, msg, view, config) -> RespondResult:
    usage = "Usage: /continue [id] text, e.g. /continue #12 now add a test for it"
    word, tail = _word(rest)
    pid = parse_id(word)
    if pid is not None:
        target, text = view.get(pid), tail
        if target is None:
            return RespondResult(reply=f"There is no promise #{pid} in this chat.")
    else:
        replied = view.about(msg.reply_to) if msg.reply_to is not None else None
        target = replied if replied is not None and is_claude(replied, config) else latest_ended(view, config)
        text = rest
        if target is None:
            return RespondResult(reply="This chat has no ended Claude Code task to continue; "
                                       "/do <what to do> starts one.")
    if not text:
        return RespondResult(reply=f"What should #{target.id} do next? {usage}")
    return continuation(target, text, msg, config)


def _why(rest, msg, view, config) -> RespondResult:
    p, _, error = _target(rest, "why", view)
    return RespondResult(reply=error or explain(view.events.get(p.id, [])))


# --- schedules (decision 51) -------------------------------------------------------------

EVERY_FORMS = '30m|2h|1d 09:00|1w mon 09:00|weekdays 09:00|"0 9 * * 1-5"'
EVERY_USAGE = (f"Usage: /every {EVERY_FORMS} [!N] [$cap] [type] text, e.g. /every 1d 09:00 run the test suite "
               "and tell me what broke")
# Words after the when that set how the schedule runs: the zone its times are read in, and its policies.
SCHEDULE_OPTIONS = {"tz": None, "missed": recurrence.MISSED, "overlap": recurrence.OVERLAP}


class BadSchedule(ValueError):
    pass


def parse_schedule(text: str, config: Config) -> NewSchedule:
    """``1d 09:00 tz=Europe/Berlin !2 $0.50 search flaky tests`` -> the schedule; raises BadSchedule."""
    if not text.strip():
        raise BadSchedule(EVERY_USAGE)
    words = text.split()
    try:
        rule, left = recurrence.parse_every(words)
    except recurrence.RecurrenceError as exc:
        raise BadSchedule(f"{exc}. {EVERY_USAGE}") from None
    for _ in range(len(words) - len(left)):  # the rest as written, its line breaks kept
        _, text = _word(text)
    options: dict[str, str] = {}
    while (word := _word(text)[0]).partition("=")[0].lower() in SCHEDULE_OPTIONS and "=" in word:
        key, _, value = word.partition("=")
        key, allowed = key.lower(), SCHEDULE_OPTIONS[key.lower()]
        if allowed is not None and value not in allowed:
            raise BadSchedule(f"{key} must be one of {', '.join(allowed)}, not {value!r}")
        options[key], text = value, _word(text)[1]
    tz = options.get("tz", "UTC")
    try:
        recurrence.zone(tz)  # an interval never reads it, but a zone named wrong is a mistake to tell
        recurrence.next_fire(0.0, anchor=0.0, tz=tz, **rule)  # the zone exists and the cron fires
        _often_enough(rule, tz, config)
        priority, cost, rest = take_flags(text)
        type_, body = split_type(rest, config)
        priority, cost, body = take_flags(body, priority, cost)
    except (recurrence.RecurrenceError, BadPriority) as exc:
        raise BadSchedule(f"{exc}. {EVERY_USAGE}") from None
    if not body:
        raise BadSchedule(f"What should each run do? {EVERY_USAGE}")
    task = new_task(body, type_, name=type_, priority=priority)
    if cost is not None:
        task = msgspec.structs.replace(task, max_cost=cost)
    return NewSchedule(task=task, tz=tz, missed=options.get("missed", "skip"),
                       overlap=options.get("overlap", "skip"), **rule)


def _often_enough(rule: dict, tz: str, config: Config) -> None:
    """A chat's schedule runs no closer than ``[schedules] min_interval``: one message must not be able to
    flood the log, the queues and the chat's budget.  The CLI is the operator's and may go lower."""
    floor = config.schedules.min_interval
    if floor > 0 and (gap := recurrence.gap_below(floor, 0.0, tz=tz, **rule)) is not None:
        raise recurrence.RecurrenceError(
            f"too often: {recurrence.span(gap)} between runs; a schedule from a chat runs at most every "
            f"{recurrence.span(floor)} (schedules.min_interval in valor.toml)")


def _every(rest, msg, view, config) -> RespondResult:
    try:
        asked = parse_schedule(rest, config)
    except BadSchedule as exc:
        return RespondResult(reply=str(exc))
    now = msg.at or time.time()
    first = recurrence.next_fire(now, cron=asked.cron, every=asked.every, anchor=float(int(now)), tz=asked.tz)
    t = asked.task
    capped = f", at most {spend.usd(t.max_cost)} a run" if t.max_cost is not None else ""
    return RespondResult(
        reply=(f"Scheduled {article(t.type)} {t.type} task{with_priority(t)}, {describe(asked)}{capped}: {t.title}. "
               f"First run {recurrence.wall(first, asked.tz)}; each run answers this message."),
        schedules=[asked])


def describe(s) -> str:
    """``every 30m`` or ``cron 0 9 * * * (UTC)``, of a schedule asked for or recorded."""
    return recurrence.describe(cron=s.cron, every=s.every, tz=s.tz)


def schedule_line(s: Schedule, view: ChatView) -> str:
    last = view.get(s.last_run) if s.last_run is not None else None
    return render.schedule_line(render.schedule_json(s), last.state if last is not None else None)


def _schedules(rest, msg, view, config) -> RespondResult:
    if not view.schedules:
        return RespondResult(reply="This chat has no schedules. " + EVERY_USAGE)
    return RespondResult(reply="\n".join(schedule_line(s, view) for s in view.schedules.values()))


def _change_schedule(verb: str):
    """``/pause N``, ``/resume N``, ``/unschedule N``: the scheduler checks again that N is this chat's."""
    def handler(rest, msg, view, config) -> RespondResult:
        sid = parse_id(rest)
        if sid is None:
            return RespondResult(reply=f"Usage: /{verb} id, e.g. /{verb} 12; /schedules lists this chat's.")
        s = view.schedules.get(sid)
        if s is None:
            return RespondResult(reply=f"There is no schedule #{sid} in this chat; /schedules lists them.")
        what = f"schedule #{sid} ({describe(s.spec)}: {short(s.spec.title, 50)})"
        if verb == "pause" and s.paused:
            return RespondResult(reply=f"{what[:1].upper()}{what[1:]} is already paused; /resume {sid} runs it again.")
        if verb == "resume" and not s.paused:
            return RespondResult(reply=f"{what[:1].upper()}{what[1:]} is not paused.")
        reply = {"pause": f"Pausing {what}: no runs until /resume {sid}.",
                 "resume": f"Resuming {what}: it runs from its next tick; the ones passed while paused are not "
                           "made up.",
                 "unschedule": f"Deleting {what}: no more runs; those made stay."}[verb]
        return RespondResult(reply=reply, commands=[RespondCommand(verb=verb, id=sid)])
    return handler


_VERBS = {
    "help": _help, "start": _help,
    "do": _do, "later": _later, "plan": _plan, "usage": _usage, "budget": _budget,
    "status": _status, "list": _list, "cancel": _cancel, "retry": _retry, "why": _why,
    "continue": _continue,
    "approve": approval.approve_command, "reject": approval.reject_command,
    "every": _every, "schedules": _schedules, "pause": _change_schedule("pause"),
    "resume": _change_schedule("resume"), "unschedule": _change_schedule("unschedule"),
}
