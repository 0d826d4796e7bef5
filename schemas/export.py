"""Write the JSON Schema of every record Valor exchanges: ``python -m schemas.export [DIR]``.

One file per union or record, default directory ``schemas/json/``.  Output is
deterministic (sorted keys, two-space indent, trailing newline) so the
committed files are a reviewable contract and a test can tell when they are
stale.  Files in DIR that this module no longer produces are removed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import msgspec

from schemas.commands import AnyCommand, CommandReply, ExecutorHeartbeat, RespondResult, WorkItem
from schemas.events import ChatEvent, MessageReceived, PromiseEvent

DEFAULT_DIR = Path(__file__).resolve().parent / "json"

# file stem -> (type, what it is)
RECORDS: dict[str, tuple[Any, str]] = {
    "promise_event": (PromiseEvent, "An event of the PROMISES stream (subject promise.<id>.<type>)"),
    "message_received": (MessageReceived, "An inbound chat message on the CHAT stream (chat.<chat_id>.in)"),
    "chat_event": (ChatEvent, "Anything on chat.<chat_id>.in: a message.received, a message.edited or message.deleted (decision 50), or messages_skipped (decision 54)"),
    "command": (AnyCommand, "A request on the COMMANDS stream (cmd.<verb>)"),
    "command_reply": (CommandReply, "The scheduler's answer to a command, on its reply subject"),
    "work_item": (WorkItem, "An attempt to run, on the WORK stream (work.<queue>)"),
    "respond_result": (RespondResult, "The result of a respond promise: reply, new promises, commands"),
    "executor_heartbeat": (ExecutorHeartbeat, "An executor's heartbeat in the valor_executors KV bucket"),
}


def schemas() -> dict[str, str]:
    """File name -> file text."""
    out = {}
    for stem, (tp, title) in RECORDS.items():
        doc = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": title,
            **msgspec.json.schema(tp),
        }
        out[f"{stem}.json"] = json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    return out


def write(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    files = schemas()
    for stale in directory.glob("*.json"):
        if stale.name not in files:
            stale.unlink()
    written = []
    for name, text in files.items():
        path = directory / name
        path.write_text(text)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    directory = Path(args[0]) if args else DEFAULT_DIR
    for path in write(directory):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
