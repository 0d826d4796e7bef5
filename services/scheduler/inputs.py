"""A round of inputs — commands and chat messages — turned into what to store and answer.  Pure.

The shell pulls up to ``INPUTS_PER_ROUND`` messages from COMMANDS and CHAT and
hands their bytes here; ``plan_round`` says, for each in order, what to do:

- ``Store``: store these effects, then answer the caller (a command) and ack.
  Ids are handed out in order across the round: each input starts where the
  last one that stores anything ended.
- ``Later``: the same request, message or promise already has an input in this
  round; it waits for the next round, where the log answers it idempotently.
- ``DeadLetter``: undecodable, or its events would be over NATS's max payload
  (a chat message; every redelivery would be refused the same way). A command
  gets its refusal as a reply instead: the caller is waiting.
- ``Failed``: planning raised; this input is tried again, the others keep their round.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Literal, NamedTuple, assert_never

import msgspec

from schemas.commands import (
    Approve,
    Cancel,
    CommandReply,
    Reject,
    Retry,
    Schedule,
    ScheduleChange,
    Submit,
    command_decoder,
)
from schemas.events import MessageDeleted, MessageEdited, MessagesSkipped, UpdatesGap, decode_chat, encode
from valor.config import Config

from . import approval, intake, schedules
from .effects import Effect, Publish, ids_taken
from .projection import Projection

# Commands and chat messages turned into events in one round (their stores overlap).
INPUTS_PER_ROUND = 64
# Room left under NATS's max payload for an event's headers.
HEADER_ROOM = 1024

Kind = Literal["chat", "command"]


class Input(NamedTuple):
    kind: Kind
    data: bytes


class Store(NamedTuple):
    effects: list[Effect]
    reply: CommandReply | None  # a command's answer, sent once the effects are stored
    reply_to: str | None
    key: Hashable  # the request, message or promise it is about: one input per key and round


class Later(NamedTuple):
    key: Hashable


class DeadLetter(NamedTuple):
    origin: Literal["chat", "command"]
    reason: str
    reply_to: str | None = None  # a command's caller, told the reason now
    undecodable: bool = True  # counted as a rejected input (else: refused for its size)


class Failed(NamedTuple):
    error: Exception


Outcome = Store | Later | DeadLetter | Failed


def plan_round(state: Projection, inputs: list[Input], now: float, config: Config, max_payload: int) -> list[Outcome]:
    """One outcome per input, in order (see the module's doc)."""
    next_id = state.max_id + 1
    seen: set[Hashable] = set()
    out: list[Outcome] = []
    for item in inputs:
        try:
            outcome = plan_one(state, item, now, config, max_payload, next_id)
        except Exception as exc:  # one input's trouble must not cost the others their round
            out.append(Failed(exc))
            continue
        if isinstance(outcome, Store):
            if outcome.key in seen or _deletes_one_of(outcome.key, seen):
                outcome = Later(outcome.key)
            else:
                seen.add(outcome.key)
                next_id += ids_taken(outcome.effects)
        out.append(outcome)
    return out


def _deletes_one_of(key: Hashable, seen: set[Hashable]) -> bool:
    """A deletion naming no chat (key ``("chat", 0, ids)``) and a message of this round with one of its ids:
    the deletion waits a round for the message's promise, as one naming its chat does by sharing its key."""
    if not (isinstance(key, tuple) and key[:2] == ("chat", 0) and isinstance(key[2], tuple)):
        return False
    return any(isinstance(k, tuple) and k[0] == "chat" and k[2] in key[2] for k in seen)


def plan_one(state: Projection, item: Input, now: float, config: Config, max_payload: int,
             next_id: int) -> Store | DeadLetter:
    if item.kind == "chat":
        return _chat(state, item.data, now, config, max_payload, next_id)
    return _command(state, item.data, now, config, max_payload, next_id)


def _chat(state: Projection, data: bytes, now: float, config: Config, max_payload: int, next_id: int):
    try:
        message = decode_chat(data)
    except msgspec.DecodeError as exc:
        return DeadLetter("chat", f"undecodable message: {exc}")
    # An edit or deletion shares its message's key: pulled in the same round, it waits for its promise.
    key: Hashable
    if isinstance(message, MessageDeleted):
        effects: list[Effect] = list(intake.deletion(state, message, now))
        key = ("chat", message.chat_id, min(message.message_ids, default=0))
        if not message.chat_id:  # no chat named: it waits for a message of any chat with one of its ids
            key = ("chat", 0, tuple(sorted(message.message_ids)))
    elif isinstance(message, MessageEdited):
        effects = list(intake.edit_for_message(state, message, now))
        key = ("chat", message.chat_id, message.message_id)
    elif isinstance(message, MessagesSkipped):
        effects = list(intake.summary_for_skipped(state, message, now, config, next_id))
        key = ("chat", message.chat_id, message.last_id)
    elif isinstance(message, UpdatesGap):
        effects = list(intake.notice_for_gap(state, message, now, config, next_id))
        key = ("chat", message.chat_id, intake.NO_MESSAGE)
    else:
        effects = list(intake.respond_for_message(state, message, now, config, next_id))
        key = ("chat", message.chat_id, message.message_id)
    if too_big := oversize(effects, max_payload):
        return DeadLetter("chat", too_big, undecodable=False)
    return Store(effects, None, None, key)


def _command(state: Projection, data: bytes, now: float, config: Config, max_payload: int, next_id: int):
    try:
        command = command_decoder.decode(data)
    except msgspec.DecodeError as exc:
        return DeadLetter("command", f"undecodable command: {exc}", reply_to=reply_to_of(data))
    key: Hashable
    match command:
        case Submit():
            effects, reply = intake.submit(state, command, now, config, next_id)
            key = ("request", command.request_id)
        case Cancel():
            effects, reply = intake.cancel(state, command.id, now, command.reason, command.by)
            key = ("cancel", command.id)
        case Retry():
            effects, reply = intake.retry(state, command.id, now, command.request_id, next_id)
            key = ("request", command.request_id)
        case Approve() | Reject():
            answer = approval.approve if isinstance(command, Approve) else approval.reject
            effects, reply = answer(state, command.id, now, command.by, command.reason)
            key = ("approval", command.id)
        case Schedule():
            effects, reply = schedules.create(state, command, now, config, next_id)
            key = ("request", command.request_id)
        case ScheduleChange():
            effects, reply = schedules.change(state, command, now)
            key = ("schedule", command.id)
        case _:
            assert_never(command)
    effects = list(effects)
    if too_big := oversize(effects, max_payload):  # refuse now rather than fail on every redelivery
        effects, reply = [], CommandReply(ok=False, error=too_big)
    return Store(effects, reply, command.reply_to, key)


def oversize(effects: list[Effect], max_payload: int) -> str | None:
    """Why an event of these effects cannot be stored (over NATS's max payload), or None."""
    limit = max_payload - HEADER_ROOM
    for e in effects:
        if isinstance(e, Publish) and (size := len(encode(e.event))) > limit:
            return (f"the request is too big: promise #{getattr(e.event, 'id', '?')} would be {size} bytes, "
                    f"over the limit of {limit}; keep task input smaller")
    return None


def reply_to_of(data: bytes) -> str | None:
    """The reply inbox of a command that does not decode, if it names one at all."""
    try:
        raw = msgspec.json.decode(data)
    except (msgspec.DecodeError, RecursionError):  # e.g. 100,000 nested brackets
        return None
    reply_to = raw.get("reply_to") if isinstance(raw, dict) else None
    return reply_to if isinstance(reply_to, str) and reply_to.startswith("_INBOX.") else None
