"""The LLM agent: Claude with tools that promise work and read the log.

One respond attempt is one conversation: the model may call tools until it
ends its turn (at most ``max_turns`` requests).  Tools act only on this turn's
``Turn``: ``create_plan`` and ``continue_promise`` add validated tasks,
``create_schedule`` a schedule (read with the chat's ``/every`` grammar),
``cancel_promise``, ``retry_promise``, ``approve_plan``, ``reject_plan`` and the schedule changes add commands,
``list_promises``, ``list_schedules`` and ``promise_history`` read the chat's ``ChatView``.  The respond result is exactly what the tools
produced; the reply is checked by ``reply.honest_reply`` so it cannot announce
work that no tool created, nor claim a result the chat's log does not record.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import anthropic
import msgspec

from promises.plan import PlanError
from promises.story import explain
from schemas.commands import NewPromise, NewSchedule, RespondCommand, RespondResult
from schemas.events import MessageReceived
from services.executor.context import AttemptContext, TaskFailed
from valor import spend
from valor.config import Config

from . import approval, attached, commands
from .reply import honest_reply
from .view import ChatView

MAX_TURNS = 8
HISTORY_JSON_LIMIT = 8000
TYPE_NOTES = {
    "code": "changes code in the chat's project with Claude Code",
    "search": "searches the project and the web and reports (read-only)",
    "analysis": "analyses and reports (read-only)",
    "code_review": "reviews code without changing it",
    "shell": "runs one allowlisted command; input {\"argv\": [...]}",
    "echo": "test: returns its input and its dependencies' results",
    "sleep": "test: waits; input {\"seconds\": n}",
    "noop": "test: does nothing",
    "fail": "test: fails; input {\"times\": n}",
}

SYSTEM = """You are Valor, an assistant in a chat. You do work by making promises: tasks that Valor runs \
in the background and reports on in this chat.

Rules:
- Work starts only through create_plan. Never say you will do, are doing or have started something unless \
create_plan accepted it in this turn. If you created nothing, do not announce work.
- Never say work is done, fixed, finished or passing unless you name the promise (#12) whose result \
list_promises or promise_history returned as succeeded; Valor marks any other such claim as unrecorded \
before sending it. Valor posts results to the chat itself when they are recorded.
- Refer to the tasks you plan by their plan names; Valor adds their ids (#12) to your reply.
- Questions about existing promises (status, what happened, why one failed) are answered from \
list_promises and promise_history, never from memory.
- To go on with an ended code, search, analysis or review task where it left off (it keeps its whole \
conversation), use continue_promise, not create_plan.
- A plan awaiting approval runs only once the user answers go (or no); never approve one unless the \
user's message says to run it. To change a waiting plan as the user asks ("skip step 2", "also run lint"), \
reject it with reject_plan and create the changed plan with create_plan: it is shown for approval again.
- Use `after` so a step starts only when the steps it needs succeeded; it receives their results. \
Independent steps have no `after` and run in parallel.
- Files the user sent are saved in the chat's workspace, where tasks run; their paths come with the \
messages. Put the path of every file a task needs into that task's input.
- Recurring work ("every morning at 9", "check the deploy every hour") is a schedule: create_schedule, \
not create_plan. Each run reports in this chat. list_schedules shows the chat's schedules; pause_schedule, \
resume_schedule and delete_schedule change one when the user asks.
- Keep replies short and plain.

Task types:
{types}"""


@dataclass
class Turn:
    """What the tools of one respond attempt produced, and what they can read."""

    msg: MessageReceived
    view: ChatView
    config: Config
    tasks: list[NewPromise] = field(default_factory=list)
    commands: list[RespondCommand] = field(default_factory=list)
    schedules: list[NewSchedule] = field(default_factory=list)

    def result(self, reply: str) -> RespondResult:
        # A schedule promises its runs: it backs a reply announcing them.
        promised = self.tasks + [s.task for s in self.schedules]
        return RespondResult(reply=honest_reply(reply, promised, self.commands, self.view.states()),
                             promises=list(self.tasks), commands=list(self.commands), schedules=list(self.schedules))


def tools(config: Config) -> list[dict[str, Any]]:
    pid = {"type": "integer", "description": "the promise id, e.g. 12 for #12"}
    sid = {"type": "integer", "description": "the schedule id, e.g. 7 for #7"}
    task = {
        "type": "object",
        "properties": {
            "name": {"type": "string", "description": "short name, unique in this turn: the step's title for the user, e.g. 'setup'"},
            "type": {"type": "string", "enum": commands.task_types(config)},
            "input": {"description": "what to do: full instructions for the task"},
            "after": {"type": "array", "items": {"type": "string"},
                      "description": "names of tasks (this turn) that must succeed first"},
            "depends_on": {"type": "array", "items": {"type": "integer"},
                           "description": "ids of existing promises that must succeed first"},
            "delay_seconds": {"type": "number", "description": "start no earlier than this many seconds from now"},
            "priority": {"type": "integer", "minimum": 1, "maximum": 9,
                         "description": f"1 runs first, 9 last; {commands.DEFAULT_PRIORITY} when left out. Only "
                                        "when the user asks for something to go first or to wait"},
        },
        "required": ["name", "type", "input"],
    }
    return [
        {"name": "create_plan",
         "description": "Promise work: one or more tasks Valor runs in the background, as a dependency graph. "
                        "Nothing is promised unless this succeeds.",
         "input_schema": {"type": "object", "properties": {"tasks": {"type": "array", "items": task}},
                          "required": ["tasks"]}},
        {"name": "cancel_promise", "description": "Cancel an open promise of this chat (and what waits on it).",
         "input_schema": {"type": "object", "properties": {"id": pid, "reason": {"type": "string"}},
                          "required": ["id"]}},
        {"name": "retry_promise", "description": "Run a failed or cancelled promise of this chat again.",
         "input_schema": {"type": "object", "properties": {"id": pid}, "required": ["id"]}},
        {"name": "continue_promise",
         "description": "Go on with an ended Claude Code task of this chat in its own session: a new promise of "
                        "the same type that sees the earlier conversation and gets this instruction.",
         "input_schema": {"type": "object",
                          "properties": {"id": pid, "instruction": {"type": "string",
                                                                    "description": "what to do next"}},
                          "required": ["id", "instruction"]}},
        {"name": "approve_plan", "description": "Let a plan of this chat that awaits approval run (any of its ids).",
         "input_schema": {"type": "object", "properties": {"id": pid}, "required": ["id"]}},
        {"name": "reject_plan",
         "description": "Cancel a plan of this chat that awaits approval, every step of it (any of its ids).",
         "input_schema": {"type": "object", "properties": {"id": pid, "reason": {"type": "string"}},
                          "required": ["id"]}},
        {"name": "create_schedule",
         "description": "Promise recurring work: every tick of the schedule creates one task of this type with "
                        "this input, and its result is posted in this chat.",
         "input_schema": {"type": "object", "properties": {
             "when": {"type": "string",
                      "description": 'how often: "30m", "2h", "1d 09:00", "1w mon 09:00", "weekdays 09:00", or a '
                                     'cron expression in quotes, "0 9 * * 1-5"'},
             "type": task["properties"]["type"],
             "input": {"description": "what each run does: full instructions"},
             "tz": {"type": "string", "description": "the time zone times of day are read in (default UTC)"},
             "overlap": {"type": "string", "enum": ["skip", "queue", "run"],
                         "description": "a tick while the last run is still going: skipped (default), queued, run"},
             "missed": {"type": "string", "enum": ["skip", "catch_up_one"],
                        "description": "ticks passed while Valor was down: skipped and told (default), or one run"},
             "priority": task["properties"]["priority"]},
             "required": ["when", "type", "input"]}},
        {"name": "list_schedules", "description": "This chat's schedules: when, next run, state, last run.",
         "input_schema": {"type": "object", "properties": {}}},
        {"name": "pause_schedule", "description": "Stop a schedule of this chat from running until resumed.",
         "input_schema": {"type": "object", "properties": {"id": sid}, "required": ["id"]}},
        {"name": "resume_schedule", "description": "Run a paused schedule again, from its next tick.",
         "input_schema": {"type": "object", "properties": {"id": sid}, "required": ["id"]}},
        {"name": "delete_schedule", "description": "Delete a schedule of this chat (its past runs stay).",
         "input_schema": {"type": "object", "properties": {"id": sid}, "required": ["id"]}},
        {"name": "list_promises", "description": "This chat's promises with their states.",
         "input_schema": {"type": "object", "properties": {}}},
        {"name": "promise_history",
         "description": "What happened to a promise, from its recorded events: attempts, errors, retries, "
                        "cancellation, result.",
         "input_schema": {"type": "object", "properties": {"id": pid}, "required": ["id"]}},
    ]


# --- the tools (pure over the turn) ------------------------------------------------


def run_tool(turn: Turn, name: str, args: Any) -> tuple[str, bool]:
    """(text for the model, is_error)."""
    if not isinstance(args, dict):
        return "the tool input must be an object", True
    tool = _TOOLS.get(name)
    if tool is None:
        return f"unknown tool '{name}'", True
    return tool(turn, args)


def _create_plan(turn: Turn, args: dict) -> tuple[str, bool]:
    raw = args.get("tasks")
    if not isinstance(raw, list) or not raw:
        return "'tasks' must be a non-empty list", True
    new: list[NewPromise] = []
    for i, t in enumerate(raw):
        if not isinstance(t, dict):
            return f"task {i + 1} is not an object", True
        # No title: a step is titled by its name wherever it is shown (decision 43).
        fields = {k: t[k] for k in ("name", "type", "input", "after", "depends_on", "priority") if k in t}
        if t.get("delay_seconds") is not None:
            fields["delay"] = t["delay_seconds"]
        try:
            new.append(msgspec.convert(fields, NewPromise))
        except msgspec.ValidationError as exc:
            return f"task {i + 1}: {exc}; nothing from this call was planned", True
        if not new[-1].name:
            return f"task {i + 1} needs a name; nothing from this call was planned", True
    try:
        commands.check_plan(turn.tasks + new, turn.config, turn.view)
    except PlanError as exc:
        text = f"plan refused: {exc}; nothing from this call was planned"
        if "unknown type" in str(exc):
            text += ". Types: " + ", ".join(commands.task_types(turn.config))
        return text, True
    turn.tasks += new
    steps = ", ".join(commands.step(t) for t in new)
    return (f"planned: {steps}. These are promised once your reply is sent; Valor adds their ids. "
            "Refer to them by name."), False


def _promise_id(args: dict) -> int | None:
    """The tool's ``id``: 12 or "#12"; None when it is not one."""
    pid = args.get("id")
    if isinstance(pid, str):
        pid = commands.parse_id(pid)
    return pid if isinstance(pid, int) and not isinstance(pid, bool) else None


def _steer(verb: str):
    def tool(turn: Turn, args: dict) -> tuple[str, bool]:
        pid = _promise_id(args)
        if pid is None:
            return "'id' must be a promise id such as 12", True
        reason = str(args.get("reason") or "") if verb in ("cancel", "reject") else ""
        msg = msgspec.structs.replace(turn.msg, text=f"/{verb} {pid} {reason}".strip())
        result = commands.answer(msg, turn.view, turn.config)
        if not result.commands:
            return result.reply, True
        if not any(c.verb == verb and c.id == pid for c in turn.commands):
            turn.commands += result.commands
        return result.reply, False
    return tool


def _continue_promise(turn: Turn, args: dict) -> tuple[str, bool]:
    pid = _promise_id(args)
    instruction = args.get("instruction")
    if pid is None:
        return "'id' must be a promise id such as 12", True
    if not isinstance(instruction, str) or not instruction.strip():
        return "'instruction' must say what to do next", True
    target = turn.view.get(pid)
    if target is None:
        return f"there is no promise #{pid} in this chat", True
    result = commands.continuation(target, instruction.strip(), turn.msg, turn.config)
    if not result.promises:
        return result.reply, True
    try:
        commands.check_plan(turn.tasks + result.promises, turn.config, turn.view)
    except PlanError as exc:
        return f"not continued: {exc}", True
    turn.tasks += result.promises
    return f"{result.reply} (promised once your reply is sent; Valor adds its id)", False


def _create_schedule(turn: Turn, args: dict) -> tuple[str, bool]:
    """Read like the chat's ``/every``: one grammar, one set of errors."""
    when, type_, value = args.get("when"), args.get("type"), args.get("input")
    if not isinstance(when, str) or not when.strip():
        return "'when' must say how often, e.g. \"1d 09:00\" or \"30m\"", True
    if type_ not in commands.task_types(turn.config):
        return f"unknown type {type_!r}; types: {', '.join(commands.task_types(turn.config))}", True
    if value is None or value == "":
        return "'input' must say what each run does", True
    options = " ".join(f"{k}={args[k]}" for k in ("tz", "missed", "overlap") if args.get(k))
    priority = f"!{args['priority']}" if args.get("priority") is not None else ""
    try:
        asked = commands.parse_schedule(f"{when} {options} {priority} {type_} each run", turn.config)
    except commands.BadSchedule as exc:
        return f"not scheduled: {str(exc).split(' Usage:')[0]}", True
    if (asked.task.type, asked.task.input) != (type_, "each run"):  # words the grammar did not read
        return f"not scheduled: 'when' must be only the recurrence, not {when!r}", True
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    task = commands.new_task(text, type_, name=type_, priority=asked.task.priority)
    turn.schedules.append(msgspec.structs.replace(asked, task=task))
    return (f"scheduled {commands.describe(asked)}: {task.title}. Created once your reply is sent; Valor adds its "
            "id. Each run's result is posted in this chat."), False


def _list_schedules(turn: Turn, args: dict) -> tuple[str, bool]:
    if not turn.view.schedules:
        return "this chat has no schedules", False
    return "\n".join(commands.schedule_line(s, turn.view) for s in turn.view.schedules.values()), False


def _list_promises(turn: Turn, args: dict) -> tuple[str, bool]:
    work = turn.view.work()[-30:]
    if not work:
        return "this chat has no promises", False
    return "\n".join(commands.status_line(p) for p in work), False


def _promise_history(turn: Turn, args: dict) -> tuple[str, bool]:
    pid = _promise_id(args)
    if pid is None or turn.view.get(pid) is None:
        return f"there is no promise #{args.get('id') if pid is None else pid} in this chat", True
    events = turn.view.events.get(pid, [])
    raw = json.dumps([msgspec.to_builtins(e) for e in events], ensure_ascii=False, separators=(",", ":"), default=str)
    if len(raw) > HISTORY_JSON_LIMIT:
        raw = raw[:HISTORY_JSON_LIMIT] + "…"
    return f"{explain(events)}\n\nRecorded events:\n{raw}", False


_TOOLS = {
    "create_plan": _create_plan,
    "cancel_promise": _steer("cancel"),
    "retry_promise": _steer("retry"),
    "approve_plan": _steer("approve"),
    "reject_plan": _steer("reject"),
    "continue_promise": _continue_promise,
    "create_schedule": _create_schedule,
    "list_schedules": _list_schedules,
    "pause_schedule": _steer("pause"),
    "resume_schedule": _steer("resume"),
    "delete_schedule": _steer("unschedule"),
    "list_promises": _list_promises,
    "promise_history": _promise_history,
}


# --- the conversation ------------------------------------------------------------------


def system_prompt(config: Config, view: ChatView) -> str:
    types = "\n".join(f"- {t}: {TYPE_NOTES.get(t, 'configured task type')}" for t in commands.task_types(config))
    out = [SYSTEM.format(types=types)]
    if view.messages:
        out.append("Recent messages in this chat, oldest first:\n" + "\n".join(
            f"[{m.message_id}] {m.sender_name or m.sender_id}: {_with_files(m.text, m)}" for m in view.messages))
    open_ = [p for p in view.work() if not p.terminal]
    if open_:
        out.append("Open promises in this chat:\n" + "\n".join(commands.status_line(p) for p in open_[-20:]))
    return "\n\n".join(out)


def _with_files(text: str, msg: MessageReceived) -> str:
    return " ".join(p for p in (text, attached.context(msg)) if p)


def user_content(msg: MessageReceived) -> str:
    text = _with_files(msg.text, msg)
    if msg.reply_to:
        text = f"(in reply to message {msg.reply_to}) {text}"
    if msg.caught_up:
        text = f"(sent while Valor was offline) {text}"
    return text


def _param(block: Any) -> dict[str, Any] | None:
    """A response content block as a request content block."""
    if block.type == "text":
        return {"type": "text", "text": block.text}
    if block.type == "tool_use":
        return {"type": "tool_use", "id": block.id, "name": block.name, "input": block.input}
    return None


class LlmAgent:
    def __init__(self, config: Config, client: anthropic.AsyncAnthropic, max_turns: int = MAX_TURNS):
        self.config = config
        self.client = client
        self.max_turns = max_turns

    async def respond(self, msg: MessageReceived, view: ChatView, ctx: AttemptContext | None = None) -> RespondResult:
        """Answer ``msg``; each model call's usage is added to ``ctx.evidence`` as it returns (decision 47)."""
        turn = Turn(msg, view, self.config)
        content = "\n".join(part for part in (user_content(msg), approval.context(msg, view)) if part)
        messages: list[dict[str, Any]] = [{"role": "user", "content": content}]
        system, tool_defs = system_prompt(self.config, view), tools(self.config)
        text = ""
        for _ in range(self.max_turns):
            response = await self._create(system=system, tools=tool_defs, messages=messages)
            if ctx is not None:
                ctx.evidence = spend.with_call(ctx.evidence, getattr(response, "model", None) or self.config.agent.model,
                                               getattr(response, "usage", None))
                if ctx.max_cost is not None and (ctx.evidence.cost_usd or 0.0) > ctx.max_cost:
                    raise TaskFailed(f"stopped at its cost cap of {spend.usd(ctx.max_cost)} "
                                     f"({spend.usd(ctx.evidence.cost_usd or 0.0)} spent); not retried", retryable=False)
            text = "".join(b.text for b in response.content if b.type == "text").strip()
            uses = [b for b in response.content if b.type == "tool_use"]
            if response.stop_reason != "tool_use" or not uses:
                return turn.result(text or _fallback(turn))
            messages.append({"role": "assistant", "content": [p for b in response.content if (p := _param(b))]})
            results = []
            for use in uses:
                if isinstance(use.input, dict) and (pid := _promise_id(use.input)) is not None:
                    # Only what a message may be about was read with the view (decision 75): read this one now.
                    await view.load_events([pid], events=use.name == "promise_history")
                out, is_error = run_tool(turn, use.name, use.input)
                results.append({"type": "tool_result", "tool_use_id": use.id, "content": out, "is_error": is_error})
            messages.append({"role": "user", "content": results})
        return turn.result(((text + "\n") if text else "") + f"(I stopped after {self.max_turns} steps.)")

    async def _create(self, **request: Any):
        try:
            return await self.client.messages.create(
                model=self.config.agent.model, max_tokens=self.config.agent.max_tokens, **request)
        except anthropic.APIError as exc:
            raise TaskFailed(f"language model error: {type(exc).__name__}: {exc}", retryable=True) from exc


def _fallback(turn: Turn) -> str:
    if turn.tasks:
        return "Planned: " + ", ".join(t.name or t.title for t in turn.tasks)
    return "I have nothing to add."


def make_client(api_key: str, base_url: str | None = None, timeout: float = 120.0) -> anthropic.AsyncAnthropic:
    """The SDK client; ``base_url`` None means the SDK's own choice (``ANTHROPIC_BASE_URL`` or the API)."""
    return anthropic.AsyncAnthropic(api_key=api_key, base_url=base_url, timeout=timeout, max_retries=2)
