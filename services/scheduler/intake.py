"""Turning requests into events: submissions, cancels, retries, chat messages
and the children named in a respond result.

Every function here is pure: it reads the projection, takes ``now`` and the
next free id as arguments, and returns the effects to perform plus a reply.
Ids are allocated from ``state.max_id``; the shell only calls these when its
projection has caught up with everything it published, and every ``created``
is guarded by ``Nats-Expected-Last-Subject-Sequence: 0``.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from promises.continuation import session_to_resume
from promises.gestures import runs_them
from promises.plan import PlanError, validate_plan
from promises.projection import Projection
from promises.states import State
from schemas.commands import (
    CommandReply,
    NewPromise,
    Schedule,
    ScheduleChange,
    ScheduleVerb,
    Submit,
    UnreadableResult,
    read_respond_result,
)
from schemas.events import (
    BudgetAdjusted,
    Cancelled,
    Created,
    InputEdited,
    InstructionsAdded,
    MessageDeleted,
    MessageEdited,
    MessageReceived,
    MessagesSkipped,
    RequestDeleted,
    RetryScheduled,
    Spawned,
    UpdatesGap,
)
from schemas.subjects import msg_id_for_event, msg_id_for_gap, msg_id_for_message, msg_id_for_skipped
from valor import budget, spend
from valor.config import DEFAULT, Config, TaskType

from . import approval, schedules
from .effects import Effect, Publish, ids_taken


def created_msg_id(request_id: str, index: int) -> str:
    return f"req:{request_id}:{index}"


def build_created(
    task: NewPromise,
    promise_id: int,
    depends_on: list[int],
    now: float,
    config: Config,
    *,
    request_id: str,
    index: int,
    chat_id: int | None = None,
    message_id: int | None = None,
    parent_id: int | None = None,
    retry_of: int | None = None,
    resume_session: str | None = None,
    awaits_approval: str | None = None,
    approve_by: float | None = None,
    estimates: dict[str, budget.Estimate] | None = None,
) -> Created:
    t = config.types.get(task.type, TaskType())
    not_before = task.not_before
    if not_before is None and task.delay:
        not_before = now + task.delay
    retries = t.retries if task.retries is None else task.retries
    guess = (estimates or {}).get(task.type)
    return Created(
        at=now,
        id=promise_id,
        title=task.title or task.name or task.type,
        task=task.type,
        input=task.input,
        depends_on=sorted(set(depends_on)),
        priority=task.priority,
        queue=task.queue or t.queue,
        concurrency_key=task.key or _key_from_template(t, task.type, chat_id, config),
        concurrency_limit=task.key_limit if task.key else t.concurrency_limit,
        max_attempts=retries + 1,
        backoff=t.backoff if task.backoff is None else task.backoff,
        backoff_factor=t.backoff_factor,
        backoff_max=t.backoff_max,
        jitter=t.jitter,
        timeout=task.timeout if task.timeout is not None else t.timeout,
        not_before=not_before,
        chat_id=chat_id,
        message_id=message_id,
        parent_id=parent_id,
        name=task.name,
        request_id=request_id,
        request_index=index,
        retry_of=retry_of,
        continues=task.continues,
        resume_session=resume_session,
        awaits_approval=awaits_approval,
        approve_by=approve_by,
        max_cost=task.max_cost if task.max_cost is not None else t.max_cost,
        estimate_usd=guess.usd if guess is not None else None,
        estimate_runs=guess.runs if guess is not None else 0,
    )


def _key_from_template(t: TaskType, type_name: str, chat_id: int | None, config: Config) -> str | None:
    """E.g. ``workspace:{workspace}``: one code task at a time per project directory."""
    if not t.concurrency_key:
        return None
    return t.concurrency_key.format(workspace=config.workspace_for(chat_id), chat_id=chat_id, type=type_name)


def create_plan(
    state: Projection,
    tasks: list[NewPromise],
    now: float,
    config: Config,
    request_id: str,
    next_id: int | None = None,
    **origin,
) -> tuple[list[Publish], dict[str, int]]:
    """Validate and allocate; raises PlanError.  Idempotent per request id."""
    done = state.by_request.get(request_id, {})

    def state_of(pid: int) -> str | None:
        p = state.promises.get(pid)
        return p.state if p else None

    order = validate_plan(tasks, state_of, lambda t: t in config.types)
    sessions = {i: session_to_resume(state.promises.get(t.continues), t.continues, origin.get("chat_id"), t.type,
                                     config)
                for i, t in enumerate(tasks) if t.continues is not None and i not in done}
    names = {t.name: i for i, t in enumerate(tasks) if t.name is not None}
    ids: dict[int, int] = {}
    next_id = next_id or state.max_id + 1
    effects: list[Publish] = []
    for i in order:
        if i in done:  # created before a crash; the command was redelivered
            ids[i] = done[i]
            continue
        ids[i], next_id = next_id, next_id + 1
        task = tasks[i]
        deps = list(task.depends_on) + [ids[names[n]] for n in task.after]
        event = build_created(task, ids[i], deps, now, config, request_id=request_id, index=i,
                              resume_session=sessions.get(i), **origin)
        effects.append(Publish(event, created_msg_id(request_id, i), new_subject=True))
    return effects, {(tasks[i].name or str(i)): ids[i] for i in range(len(tasks))}


def submit(state: Projection, cmd: Submit, now: float, config: Config = DEFAULT, next_id: int | None = None):
    try:
        effects, ids = create_plan(state, cmd.tasks, now, config, cmd.request_id, next_id)
    except PlanError as exc:
        return [], CommandReply(ok=False, error=str(exc))
    return effects, CommandReply(ok=True, ids=ids)


def cancel(state: Projection, promise_id: int, now: float, reason: str = "", by: str = "cli"):
    p = state.promises.get(promise_id)
    if p is None:
        return [], CommandReply(ok=False, error=f"no promise #{promise_id}")
    if p.terminal:
        return [], CommandReply(ok=False, error=f"#{promise_id} already {p.state}")
    event = Cancelled(at=now, id=promise_id, reason=reason or f"cancelled by {by}", by=by)
    return [Publish(event, msg_id_for_event(promise_id, "cancelled"))], CommandReply(ok=True, ids={"0": promise_id})


def instruct(state: Projection, promise_id: int, text: str, now: float, request_id: str, by: str = "",
             message_id: int | None = None):
    """Add instructions to an open promise: its later attempts get them, a running one hears them."""
    p = state.promises.get(promise_id)
    if p is None:
        return [], CommandReply(ok=False, error=f"no promise #{promise_id}")
    if p.terminal:
        return [], CommandReply(ok=False, error=f"#{promise_id} already {p.state}")
    event = InstructionsAdded(at=now, id=promise_id, text=text, request_id=request_id, by=by, message_id=message_id)
    msg_id = msg_id_for_event(promise_id, "instructions_added", request_id)
    return [Publish(event, msg_id)], CommandReply(ok=True, ids={"0": promise_id})


def retry(state: Projection, promise_id: int, now: float, request_id: str, next_id: int | None = None):
    """Retry now if waiting to retry; a failed or cancelled promise is re-run as a new promise.

    The first terminal event of a promise stands forever, so re-running one
    means a new promise that records what it retries (``retry_of``).
    """
    p = state.promises.get(promise_id)
    if p is None:
        return [], CommandReply(ok=False, error=f"no promise #{promise_id}")
    if p.status == State.RETRYING:
        event = RetryScheduled(at=now, id=promise_id, next_attempt=p.attempt + 1, not_before=now)
        msg_id = msg_id_for_event(promise_id, "retry_scheduled", p.attempt + 1, request_id)
        return [Publish(event, msg_id)], CommandReply(ok=True, ids={"0": promise_id})
    if p.status not in (State.FAILED, State.CANCELLED):
        return [], CommandReply(ok=False, error=f"#{promise_id} is {p.state}; only failed or cancelled promises can be retried")
    s = p.spec
    done = state.by_request.get(request_id, {})
    if 0 in done:
        return [], CommandReply(ok=True, ids={"0": done[0]})
    blocked = [d for d in s.depends_on if state.promises[d].status != State.SUCCEEDED]
    if blocked:
        return [], CommandReply(ok=False, error=f"#{promise_id} depends on #{blocked[0]}, which is {state.promises[blocked[0]].state}")
    new_id = next_id or state.max_id + 1
    event = msgspec.structs.replace(
        s, at=now, id=new_id, request_id=request_id, request_index=0, retry_of=promise_id, not_before=None
    )
    return [Publish(event, created_msg_id(request_id, 0), new_subject=True)], CommandReply(ok=True, ids={"0": new_id})


def respond_for_message(state: Projection, msg: MessageReceived, now: float, config: Config = DEFAULT,
                        next_id: int | None = None):
    """Exactly one respond promise per message: None when it already exists.

    A "run them" reply to catch-up's summary (decision 54) also makes each message the
    summary kept a request, as if it had just arrived: its own respond promise, answering it.
    """
    if (msg.chat_id, msg.message_id) in state.by_message:
        return []
    first = next_id or state.max_id + 1
    out = [_respond(msg, first, now, config)]
    if (summary := summary_replied(state, msg)) is not None:
        for old in msgspec.convert(summary.spec.input, MessagesSkipped).messages:
            # Run once, however often asked; by request, not by message: the newest skipped one
            # is also the message the summary itself answers.
            if msg_id_for_message(old.chat_id, old.message_id) not in state.by_request:
                out.append(_respond(old, first + len(out), now, config))
    return out


def _respond(msg: MessageReceived, promise_id: int, now: float, config: Config) -> Publish:
    request_id = msg_id_for_message(msg.chat_id, msg.message_id)
    task = NewPromise(title=message_title(msg), type="respond", input=msgspec.to_builtins(msg))
    event = build_created(task, promise_id, [], now, config, request_id=request_id, index=0,
                          chat_id=msg.chat_id, message_id=msg.message_id)
    return Publish(event, created_msg_id(request_id, 0), new_subject=True)


def summary_replied(state: Projection, msg: MessageReceived):
    """The skipped-messages summary whose reply ``msg`` answers with "run them", else None."""
    if msg.reply_to is None or not runs_them(msg.text):
        return None
    return next((p for p in state.promises.values() if p.spec.chat_id == msg.chat_id and msg.reply_to in p.sent
                 and is_skipped_summary(p)), None)


SKIPPED_TITLE = "messages skipped while away"


def summary_for_skipped(state: Projection, fact: MessagesSkipped, now: float, config: Config = DEFAULT,
                        next_id: int | None = None):
    """One respond promise per skipped range, whose reply tells the chat (decision 54); none when it exists.

    It replies to the newest skipped message: a notice needs a message to answer, and
    that one was never a request (it was too old), so no other promise claims it.
    """
    request_id = msg_id_for_skipped(fact.chat_id, fact.first_id, fact.last_id)
    if request_id in state.by_request or (fact.chat_id, fact.last_id) in state.by_message:
        return []
    task = NewPromise(title=SKIPPED_TITLE, type="respond", input=msgspec.to_builtins(fact))
    event = build_created(task, next_id or state.max_id + 1, [], now, config, request_id=request_id, index=0,
                          chat_id=fact.chat_id, message_id=fact.last_id)
    return [Publish(event, created_msg_id(request_id, 0), new_subject=True)]


GAP_TITLE = "updates lost while away"
NO_MESSAGE = 0  # a notice that answers no message: it stands alone, nothing reacts on it


def notice_for_gap(state: Projection, fact: UpdatesGap, now: float, config: Config = DEFAULT,
                   next_id: int | None = None):
    """A bot's gap Telegram would not fill becomes one respond promise, told in the chat once.

    It answers no message (message id 0): the lost ones cannot be named, and the last
    one received belongs to its own request.
    """
    request_id = msg_id_for_gap(fact.chat_id, fact.until)
    if request_id in state.by_request:
        return []
    task = NewPromise(title=GAP_TITLE, type="respond", input=msgspec.to_builtins(fact))
    event = build_created(task, next_id or state.max_id + 1, [], now, config, request_id=request_id, index=0,
                          chat_id=fact.chat_id, message_id=NO_MESSAGE)
    return [Publish(event, created_msg_id(request_id, 0), new_subject=True)]


def is_skipped_summary(p) -> bool:
    return ":skipped:" in (p.spec.request_id or "")


def edit_for_message(state: Projection, edit: MessageEdited, now: float):
    """An edit of a chat message: it replaces the input of the message's respond promise if that was
    never dispatched, else it is recorded as too late (the notifier says how to run the new text).

    None for a message without a promise (it was never for Valor, or is older than the log).
    """
    promise_id = state.by_message.get((edit.chat_id, edit.message_id))
    p = state.promises.get(promise_id) if promise_id is not None else None
    if p is None or is_skipped_summary(p):
        return []  # no promise, or the summary replying to a skipped message: not that message's request
    unsent = p.attempt == 0 and p.status in (State.WAITING, State.QUEUED, State.AWAITING)
    event = InputEdited(at=now, id=p.id, message_id=edit.message_id, edited_at=edit.edited_at, applied=unsent,
                        input=msgspec.to_builtins(edit.message) if unsent else None,
                        title=message_title(edit.message) if unsent else "", text=edit.message.text)
    return [Publish(event, msg_id_for_event(p.id, "input_edited", int(edit.edited_at)))]


def deletion(state: Projection, deleted: MessageDeleted, now: float):
    """Deleted messages: a request never dispatched is cancelled, naming the deletion; a later one is only
    recorded (the work is not undone).  A deletion without a chat (``chat_id`` 0) names ids that are unique
    across a user account's private chats and basic groups, so those are searched."""
    ids = set(deleted.message_ids)
    if deleted.chat_id:
        found = [state.by_message.get((deleted.chat_id, m)) for m in sorted(ids)]
    else:  # rare (deletions), so a scan; channels and supergroups always name their chat
        found = [pid for (chat, m), pid in state.by_message.items() if m in ids and chat > -1_000_000_000_000]
    effects: list[Publish] = []
    for pid in sorted(p for p in found if p is not None):
        p = state.promises[pid]
        # A summary replies to a skipped message; it is not that message's request.  (Every promise
        # by_message names answers a message: the None is only the type's.)
        if is_skipped_summary(p) or p.spec.message_id is None:
            continue
        unsent = p.attempt == 0 and p.status in (State.WAITING, State.QUEUED, State.AWAITING)
        effects.append(Publish(RequestDeleted(at=now, id=pid, message_id=p.spec.message_id, cancelled=unsent),
                               msg_id_for_event(pid, "request_deleted")))
        if unsent:
            effects += cancel(state, pid, now, "its message was deleted before it started", by="chat")[0]
    return effects


TITLE_CHARS = 60


def message_title(msg: MessageReceived) -> str:
    """A respond promise is titled by the start of the message it answers (a file's name when there is no text)."""
    text = " ".join(msg.text.split()) or " ".join(a.name for a in msg.attachments)
    if not text:
        return f"message {msg.message_id}"
    return text if len(text) <= TITLE_CHARS else text[: TITLE_CHARS - 1] + "…"


def spawn_children(state: Projection, parent_id: int, now: float, config: Config = DEFAULT,
                   next_id: int | None = None) -> list[Effect]:
    """Create the promises a respond result names, apply its commands, then record ``spawned``."""
    parent = state.promises[parent_id]
    spawned_id = msg_id_for_event(parent_id, "spawned")
    try:
        result = read_respond_result(parent.result)
    except UnreadableResult as exc:
        return [Publish(Spawned(at=now, id=parent_id, error=f"unreadable respond result: {exc}"), spawned_id)]
    effects: list[Effect] = []
    children: dict[str, int] = {}
    if result.promises:
        s = parent.spec
        guesses = plan_estimates(state, result.promises, config)
        total = sum(g.usd for t in result.promises if (g := guesses.get(t.type)) is not None) if guesses else None
        over = _over_budget(state, config, s, now, total)
        try:
            created, children = create_plan(state, result.promises, now, config, f"spawn:{parent_id}", next_id,
                                            chat_id=s.chat_id, message_id=s.message_id, parent_id=parent_id,
                                            estimates=guesses,
                                            **approval.hold(result.promises, config.approval, now, over))
        except PlanError as exc:
            return [Publish(Spawned(at=now, id=parent_id, error=str(exc)), spawned_id)]
        effects += created
    made: list[int] = []
    refused: list[str] = []
    for i, asked in enumerate(result.schedules):
        more, reply = _schedule_from_chat(state, parent, asked, i, now, config,
                                          (next_id or state.max_id + 1) + ids_taken(effects))
        effects += more
        made += [reply.ids["0"]] if reply.ok else []
        refused += [] if reply.ok else [f"schedule not created: {reply.error}"]
    for i, command in enumerate(result.commands):
        more: Sequence[Effect]
        if command.verb == "cancel":
            more, _ = cancel(state, command.id, now, command.reason, by=f"respond #{parent_id}")
        elif command.verb == "retry":
            fresh = (next_id or state.max_id + 1) + ids_taken(effects)
            more, _ = retry(state, command.id, now, f"respond:{parent_id}:{i}", fresh)
        elif command.verb == "instruct" and command.text.strip():
            more, _ = instruct(state, command.id, command.text, now, f"respond:{parent_id}:{i}",
                               by=f"respond #{parent_id}", message_id=parent.spec.message_id)
        elif command.verb == "budget":
            more = adjust_budget(parent, command.text, now, config, i)
        elif command.verb in ("approve", "reject"):
            answer = approval.approve if command.verb == "approve" else approval.reject
            more, _ = answer(state, command.id, now, f"respond #{parent_id}", command.reason, parent.spec.chat_id)
        elif command.verb in SCHEDULE_VERBS:
            # Only the chat's own schedules: a schedule of another chat (or none) is "no schedule #N".
            change = ScheduleChange(request_id=f"respond:{parent_id}:{i}", by=f"respond #{parent_id}", id=command.id,
                                    verb=SCHEDULE_VERBS[command.verb], chat_id=parent.spec.chat_id)
            more, _ = schedules.change(state, change, now)
        else:
            more = []
        effects += more
    spawned = Spawned(at=now, id=parent_id, children=children, schedules=made, error="; ".join(refused) or None)
    return effects + [Publish(spawned, spawned_id)]


SCHEDULE_VERBS: dict[str, ScheduleVerb] = {"pause": "pause", "resume": "resume", "unschedule": "delete"}


def _schedule_from_chat(state: Projection, parent, asked, index: int, now: float, config: Config, next_id: int):
    """A schedule a respond result asks for: the chat's, each run replying to the message that asked.

    Its request id comes from the respond promise and the position, so a redelivered result creates it once.
    A chat cannot have ``respond`` run on a schedule (the agent's own type), like a chat cannot ask for it.
    """
    if asked.task.type == "respond":
        return [], CommandReply(ok=False, error="a chat cannot schedule respond")
    s = parent.spec
    cmd = Schedule(request_id=f"spawn:{parent.id}:schedule:{index}", by=f"respond #{parent.id}", task=asked.task,
                   cron=asked.cron, every=asked.every, tz=asked.tz, missed=asked.missed, overlap=asked.overlap,
                   chat_id=s.chat_id, message_id=s.message_id)
    return schedules.create(state, cmd, now, config, next_id)


def plan_estimates(state: Projection, tasks: list[NewPromise], config: Config) -> dict[str, budget.Estimate]:
    """What each spending type of the plan cost lately (decision 49); types that never spend are not looked up."""
    spending = {t.type for t in tasks if (tt := config.types.get(t.type)) is not None and tt.handler == "claude"}
    return budget.estimates(state.promises.values(), spending) if spending else {}


def _over_budget(state: Projection, config: Config, spec: Created, now: float, estimate: float | None):
    """``budget.check`` for the request, over the chat's and the sender's charges of this month (none of an
    earlier period counts) and changes to their budgets, read from the projection's indexes (decision 79)."""
    user = spend.sender_of(spec.input)
    if not budget.budgets(config, spec.chat_id, user):
        return None
    charges = spend.charges_of(state, spec.chat_id, user, spend.month_start(now), now)
    return budget.check(config, spec.chat_id, user, charges, budget.adjustments_of(state, spec.chat_id, user),
                        now, estimate)


def adjust_budget(parent, text: str, now: float, config: Config, index: int) -> list[Publish]:
    """``/budget +5 today`` from an owner: ``budget_adjusted`` on the respond promise's subject.

    The sender is the message's, checked here against ``[budgets] owners``: what the
    agent answered is not trusted to say who may spend.
    """
    sender = spend.sender_of(parent.spec.input)
    if sender is None or sender not in config.budgets.owners or parent.spec.chat_id is None:
        return []
    try:
        change = budget.parse_change(text)
    except budget.BadBudget:
        return []
    if change is None:
        return []
    target = parent.spec.chat_id if change.target is None else change.target
    name = (parent.spec.input or {}).get("sender_name", "") if isinstance(parent.spec.input, dict) else ""
    by = f"{name} ({sender})" if name else str(sender)
    out = []
    for period in change.periods:
        request_id = f"budget:{parent.id}:{index}:{period}"
        event = BudgetAdjusted(at=now, id=parent.id, scope=change.scope, target=target, period=period,
                               add=change.add, reset=change.reset, by=by, request_id=request_id)
        out.append(Publish(event, msg_id_for_event(parent.id, "budget_adjusted", index, period)))
    return out
