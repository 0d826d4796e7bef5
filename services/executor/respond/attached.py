"""A chat message's attachments in what the agents make of it.  Pure.

Ingest saved each photo or document into the chat's workspace, at a path
relative to it (``inbox/<chat>/<message>-<name>``), or recorded why not
(``Attachment.skipped``).  Tasks that run in the workspace (Claude Code) read
the file at that path, so the path has to be in the task's input:

- the command agent puts every attachment of the message into every task the
  message asks for (``into``): a line per file after a text input
  (``Attached: inbox/5/12-report.csv (text/csv, 1.2 KB)``; a file not saved
  reads ``Not attached: big.zip (too big: …)``), a list under ``attachments``
  in an object input that has none;
- the LLM agent sees the same lines with the message (``context``) and in the
  chat's recent messages, and mentions the paths in the input of the tasks
  that need them.

A file that was not saved is never passed over in silence: the task reads
why, and the reply to the user says so too (``noted``).
"""

from __future__ import annotations

import msgspec

from schemas.commands import NewPromise, RespondResult
from schemas.events import Attachment, MessageReceived
from valor.render import size


def line(att: Attachment) -> str:
    if not att.path:
        return f"Not attached: {att.name} ({att.skipped or 'not saved'})"
    facts = [f for f in (att.mime_type, size(att.size) if att.size is not None else "") if f]
    return f"Attached: {att.path}" + (f" ({', '.join(facts)})" if facts else "")


def lines(msg: MessageReceived) -> str:
    return "\n".join(line(a) for a in msg.attachments)


def into(task: NewPromise, msg: MessageReceived) -> NewPromise:
    """The task with the message's attachments in its input."""
    if not msg.attachments:
        return task
    value = task.input
    if isinstance(value, dict):
        if "attachments" in value:  # the user's own key wins
            return task
        value = {**value, "attachments": msgspec.to_builtins(msg.attachments)}
    elif isinstance(value, str) or value is None:
        value = "\n\n".join(p for p in (value, lines(msg)) if p)
    else:  # a list or a number: its shape is the task's contract, leave it whole
        return task
    return msgspec.structs.replace(task, input=value)


def context(msg: MessageReceived) -> str:
    """For the LLM: where the message's files are, relative to the workspace tasks run in."""
    if not msg.attachments:
        return ""
    return f"(files with this message, paths relative to the chat's workspace:\n{lines(msg)})"


def received_reply(msg: MessageReceived) -> str:
    """The command agent's answer to files sent without a command."""
    saved = [a.path for a in msg.attachments if a.path]
    if not saved:
        return ""
    return (f"Saved in this chat's workspace: {', '.join(saved)}. To work on it, send /do with what to do "
            "and the path, or send the file again with a /do caption.")


def noted(result: RespondResult, msg: MessageReceived) -> RespondResult:
    """The reply, telling the user about every file that was not saved."""
    missing = [a for a in msg.attachments if not a.path]
    if not missing:
        return result
    note = "\n".join(f"{a.name} was not saved: {a.skipped or 'unknown reason'}." for a in missing)
    return msgspec.structs.replace(result, reply="\n\n".join(p for p in (result.reply, note) if p))
