"""Claude Code's stream-json: its output read as a fold (lines in, progress texts and a result out),
and the lines of its input.

Pure: no I/O, no clock.  One JSON object per line; the kinds that matter are
``system`` (``init`` carries the session id, ``permission_denied`` a refused
tool call), ``assistant`` (its ``tool_use`` blocks become progress texts such
as "Editing auth.py"), ``user`` (the ``tool_result`` of each call: a Bash
command's exit code and output; with ``isReplay`` a message we wrote, taken
in) and each ``result`` (one per turn; the last one is the outcome).  Anything else, and
any line that is not JSON, is skipped: the CLI adds event kinds between
versions.

The fold also keeps the evidence of what the attempt did: the commands it ran
with their exit codes, the calls that were refused, tokens and cost.  It is
read from the tools' own results, never from the model's words.  Cost is the
CLI's own ``total_cost_usd`` (cumulative, on each ``result``) plus, for the
model calls streamed since the last ``result`` (each ``assistant`` line carries
its message's ``usage``), an estimate at list price (``valor.spend``): so an
attempt killed mid-turn still says what it spent, and a cap can stop it early.

Input (``--input-format stream-json``): one ``user_message`` line per turn the
CLI should take, written to its stdin while it runs; with
``--replay-user-messages`` the CLI echoes each one back, with the ``uuid`` we
gave it, once it is part of the conversation (``Stream.replayed``).
"""

from __future__ import annotations

import json
import posixpath
import re
from dataclasses import dataclass, field, replace
from typing import Any

from schemas.events import CommandRun, Evidence, Refusal, TokenUsage
from valor import spend

COMMAND_CHARS = 60
PATTERN_CHARS = 60
MAX_COMMANDS = 60  # the last ones are kept: the final test run matters most
OUTPUT_CHARS = 1200  # the end of a command's output
MAX_REFUSALS = 50
_EXIT = re.compile(r"\AExit code (-?\d+)\n?")
# A tool error in the CLI's words for a refusal by a deny rule (no permission_denied event comes for those).
_REFUSED = re.compile(r"denied by your permission settings|haven't granted|not allowed|permission to", re.IGNORECASE)
_TOOL_ERROR = re.compile(r"</?tool_use_error>")
_VIOLATIONS = re.compile(r"<sandbox_violations>\s*(.*?)\s*</sandbox_violations>", re.DOTALL)


@dataclass(frozen=True)
class Outcome:
    """The final ``result`` line."""

    text: str
    is_error: bool
    subtype: str = "success"
    cost_usd: float | None = None
    session_id: str | None = None
    turns: int | None = None
    duration_ms: int | None = None

    def as_result(self) -> dict[str, Any]:
        return {"text": self.text, "cost_usd": self.cost_usd, "session_id": self.session_id,
                "turns": self.turns, "duration_ms": self.duration_ms}


@dataclass(frozen=True)
class Stream:
    session_id: str | None = None
    last_text: str = ""  # the last assistant text seen, for an error without a result line
    outcome: Outcome | None = None
    calls: dict[str, tuple[str, str]] = field(default_factory=dict)  # tool_use id -> (tool, command or path)
    denied: dict[str, str] = field(default_factory=dict)  # tool_use id -> why it was refused
    commands: tuple[CommandRun, ...] = ()
    commands_dropped: int = 0
    refusals: tuple[Refusal, ...] = ()
    tokens: TokenUsage | None = None
    replayed: frozenset[str] = frozenset()  # uuids of the input messages the CLI took in
    results: int = 0  # result lines so far: one per turn
    model: str | None = None  # of the last assistant message
    streamed: dict[str, TokenUsage] = field(default_factory=dict)  # message id -> usage, since the last result

    @property
    def streamed_tokens(self) -> TokenUsage | None:
        total = None
        for usage in self.streamed.values():
            total = spend.add_tokens(total, usage)
        return total

    @property
    def cost_usd(self) -> float | None:
        """Spent so far: the CLI's figure at its last result, plus an estimate for what streamed since."""
        known = self.outcome.cost_usd if self.outcome else None
        since = self.streamed_tokens
        if since is None:
            return known
        return (known or 0.0) + spend.estimate(self.model, since)

    def evidence(self) -> Evidence:
        """What the stream proves the attempt did (files are the workspace's to tell)."""
        outcome = self.outcome
        return Evidence(commands=list(self.commands), commands_dropped=self.commands_dropped,
                        refusals=list(self.refusals), tokens=spend.add_tokens(self.tokens, self.streamed_tokens),
                        cost_usd=self.cost_usd, cost_estimated=bool(self.streamed),
                        turns=outcome.turns if outcome else None,
                        session_id=(outcome.session_id if outcome else None) or self.session_id)


def decode(line: bytes | str) -> dict[str, Any] | None:
    try:
        event = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        return None
    return event if isinstance(event, dict) else None


def step(stream: Stream, line: bytes | str) -> tuple[Stream, list[str]]:
    """Fold one stdout line into the stream; returns the new stream and its progress texts."""
    event = decode(line)
    if event is None:
        return stream, []
    kind = event.get("type")
    if kind == "system" and event.get("subtype") == "init":
        return replace(stream, session_id=_str(event.get("session_id")) or stream.session_id), []
    if kind == "system" and event.get("subtype") == "permission_denied":
        call = _str(event.get("tool_use_id"))
        reason = _str(event.get("message")) or _str(event.get("decision_reason")) or "not allowed"
        return (replace(stream, denied={**stream.denied, call: reason}) if call else stream), []
    if kind == "assistant":
        blocks = _blocks(event)
        texts = [b.get("text") for b in blocks if b.get("type") == "text" and isinstance(b.get("text"), str)]
        uses = [b for b in blocks if b.get("type") == "tool_use"]
        progress = [p for b in uses if (p := tool_progress(b))]
        calls = {b["id"]: (str(b.get("name") or ""), _target(b)) for b in uses if _str(b.get("id"))}
        if texts:
            stream = replace(stream, last_text=texts[-1])
        stream = _usage(stream, event.get("message"))
        return (replace(stream, calls={**stream.calls, **calls}) if calls else stream), progress
    if kind == "user":
        if event.get("isReplay") and (uuid := _str(event.get("uuid"))):
            return replace(stream, replayed=stream.replayed | {uuid}), []
        for block in _blocks(event):
            if block.get("type") == "tool_result":
                stream = tool_result(stream, block)
        return stream, []
    if kind == "result":
        return replace(stream, outcome=outcome(event, stream), results=stream.results + 1, streamed={},
                       tokens=model_tokens(event.get("modelUsage")) or tokens(event.get("usage"))), []
    return stream, []


def user_message(text: str, uuid: str) -> bytes:
    """One line of the CLI's stream-json input: a user message whose replay carries ``uuid``."""
    message = {"role": "user", "content": [{"type": "text", "text": text}]}
    return json.dumps({"type": "user", "uuid": uuid, "message": message}, ensure_ascii=False).encode() + b"\n"


def tool_result(stream: Stream, block: dict[str, Any]) -> Stream:
    """Record what a tool call came to: a command's exit code and output, or a refusal."""
    call = _str(block.get("tool_use_id"))
    if call is None or call not in stream.calls:
        return stream
    calls = dict(stream.calls)
    tool, target = calls.pop(call)
    text = _content_text(block.get("content"))
    refused = stream.denied.get(call)
    if refused is None and block.get("is_error") and tool != "Bash" and _REFUSED.search(text):
        refused = _TOOL_ERROR.sub("", text).strip()
    stream = replace(stream, calls=calls)
    if tool == "Bash":
        run = command_run(target, text, bool(block.get("is_error")), refused)
        stream = _add_command(stream, run)
        for line in _violations(text):
            stream = _add_refusal(stream, Refusal(tool="Bash", target=target, reason=line))
        return stream
    if refused is not None:
        return _add_refusal(stream, Refusal(tool=tool, target=target, reason=refused))
    return stream


def command_run(command: str, text: str, is_error: bool, refused: str | None = None) -> CommandRun:
    """A Bash tool result read as a command run: ``Exit code N`` leads the text of a failed one."""
    if refused is not None:
        return CommandRun(command=command, refused=refused)
    if not is_error:
        return CommandRun(command=command, exit_code=0, output=_tail(text))
    match = _EXIT.match(text)
    if match is None:  # an error without an exit code: the command never ran to its end
        return CommandRun(command=command, output=_tail(text))
    return CommandRun(command=command, exit_code=int(match.group(1)), output=_tail(text[match.end():]))


def tokens(usage: Any) -> TokenUsage | None:
    if not isinstance(usage, dict):
        return None
    return TokenUsage(input=_int(usage.get("input_tokens")) or 0, output=_int(usage.get("output_tokens")) or 0,
                      cache_read=_int(usage.get("cache_read_input_tokens")) or 0,
                      cache_creation=_int(usage.get("cache_creation_input_tokens")) or 0)


def model_tokens(usage: Any) -> TokenUsage | None:
    """The session's tokens so far, summed over the models of a result's ``modelUsage``."""
    if not isinstance(usage, dict) or not usage:
        return None
    total = None
    for per_model in usage.values():
        if isinstance(per_model, dict):
            total = spend.add_tokens(total, TokenUsage(
                input=_int(per_model.get("inputTokens")) or 0, output=_int(per_model.get("outputTokens")) or 0,
                cache_read=_int(per_model.get("cacheReadInputTokens")) or 0,
                cache_creation=_int(per_model.get("cacheCreationInputTokens")) or 0))
    return total


def _usage(stream: Stream, message: Any) -> Stream:
    """Keep an assistant message's usage (one line per content block may repeat it: the latest counts)."""
    if not isinstance(message, dict) or not (message_id := _str(message.get("id"))):
        return stream
    usage = tokens(message.get("usage"))
    if usage is None:
        return stream
    return replace(stream, streamed={**stream.streamed, message_id: usage},
                   model=_str(message.get("model")) or stream.model)


def _add_command(stream: Stream, run: CommandRun) -> Stream:
    commands = (*stream.commands, run)
    dropped = max(0, len(commands) - MAX_COMMANDS)
    return replace(stream, commands=commands[dropped:], commands_dropped=stream.commands_dropped + dropped)


def _add_refusal(stream: Stream, refusal: Refusal) -> Stream:
    if len(stream.refusals) >= MAX_REFUSALS:
        return stream
    return replace(stream, refusals=(*stream.refusals, refusal))


def _violations(text: str) -> list[str]:
    return [line.strip() for m in _VIOLATIONS.finditer(text) for line in m.group(1).splitlines() if line.strip()]


def _target(block: dict[str, Any]) -> str:
    """What a tool call aims at, for the record: a Bash command in full, else a path or pattern."""
    args = block.get("input") if isinstance(block.get("input"), dict) else {}
    if block.get("name") == "Bash":
        return str(args.get("command") or "")
    for key in ("file_path", "notebook_path", "path", "pattern", "url"):
        if isinstance(args.get(key), str):
            return args[key]
    return ""


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(b.get("text", "") for b in content if isinstance(b, dict) and b.get("type") == "text")
    return ""


def _tail(text: str) -> str:
    text = text.strip("\n")
    return text if len(text) <= OUTPUT_CHARS else "…" + text[-OUTPUT_CHARS:]


def outcome(event: dict[str, Any], stream: Stream = Stream()) -> Outcome:
    subtype = _str(event.get("subtype")) or "success"
    text = event.get("result")
    if not isinstance(text, str):
        text = "" if subtype == "success" else subtype.replace("_", " ")
    is_error = bool(event.get("is_error")) or subtype != "success"
    return Outcome(
        text=text,
        is_error=is_error,
        subtype=subtype,
        cost_usd=_number(event.get("total_cost_usd")),
        session_id=_str(event.get("session_id")) or stream.session_id,
        turns=_int(event.get("num_turns")),
        duration_ms=_int(event.get("duration_ms")),
    )


def tool_progress(block: dict[str, Any]) -> str | None:
    """What a tool call looks like to someone watching: "Editing auth.py", "Running pytest -q"."""
    name = block.get("name")
    if not isinstance(name, str) or not name:
        return None
    args = block.get("input") if isinstance(block.get("input"), dict) else {}
    if name in ("Write", "Edit", "MultiEdit", "NotebookEdit"):
        path = args.get("file_path") or args.get("notebook_path")
        return f"Editing {_base(path)}" if path else "Editing files"
    if name == "Read":
        path = args.get("file_path")
        return f"Reading {_base(path)}" if path else "Reading files"
    if name == "Bash":
        command = " ".join(str(args.get("command") or "").split())
        return f"Running {_clip(command, COMMAND_CHARS)}" if command else "Running a command"
    if name in ("Grep", "Glob"):
        pattern = args.get("pattern")
        return f"Searching {_clip(str(pattern), PATTERN_CHARS)}" if pattern else "Searching"
    return f"Using {name}"


def _blocks(event: dict[str, Any]) -> list[dict[str, Any]]:
    message = event.get("message")
    content = message.get("content") if isinstance(message, dict) else None
    return [b for b in content if isinstance(b, dict)] if isinstance(content, list) else []


def _base(path: Any) -> str:
    text = str(path).rstrip("/")
    return posixpath.basename(text) or text


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class Throttle:
    """At most one progress text per ``every`` seconds; the latest text held back is sent when due.

    Time comes in as an argument, so the rule is tested without waiting.
    """

    def __init__(self, every: float = 1.0):
        self.every = every
        self.last_at = float("-inf")
        self.pending: str | None = None

    def offer(self, text: str, now: float) -> str | None:
        """The text to send now, or None if it waits (replacing any older waiting text)."""
        if now - self.last_at >= self.every:
            self.last_at, self.pending = now, None
            return text
        self.pending = text
        return None

    def due(self, now: float) -> str | None:
        """The waiting text if its time has come."""
        if self.pending is not None and now - self.last_at >= self.every:
            text, self.pending, self.last_at = self.pending, None, now
            return text
        return None

    def wait(self, now: float) -> float | None:
        """Seconds until the waiting text is due; None if nothing waits."""
        return None if self.pending is None else max(0.0, self.last_at + self.every - now)
