"""Talking to a running Valor from Python: what the CLI, tests and demos use.

Requests go to COMMANDS and are answered on a private inbox once the resulting
events are stored.  Reads come straight from the PROMISES log and are folded
with the scheduler's own projection, so every reader sees the same states.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import msgspec
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.js.api import DeliverPolicy

from schemas import subjects
from schemas.commands import (
    AnyCommand,
    Approve,
    Cancel,
    CommandReply,
    NewPromise,
    Reject,
    Retry,
    Submit,
    reply_decoder,
)
from schemas.events import PromiseEvent, decode_promise_event, encode
from services.scheduler.projection import Projection

TERMINAL_STATES = ("succeeded", "failed", "cancelled")


class CommandRefused(Exception):
    """The scheduler answered with an error a user can read."""




class ValorClient:
    def __init__(self, nc: Client, by: str = "cli") -> None:
        self.nc = nc
        self.js = nc.jetstream()
        self.by = by

    async def request(self, command: AnyCommand, timeout: float = 10.0) -> CommandReply:
        """Publish a command durably and wait for the scheduler's answer.

        The command is stored before we wait, so a scheduler that is restarting
        answers it when it is back; ``timeout`` bounds only our patience.
        """
        inbox = self.nc.new_inbox()
        sub = await self.nc.subscribe(inbox, max_msgs=1)
        deadline = time.monotonic() + timeout
        try:
            command = msgspec.structs.replace(command, reply_to=inbox)
            verb = command.__struct_config__.tag
            while True:  # the same Nats-Msg-Id makes a retried publish harmless
                try:
                    await self.js.publish(subjects.command(verb), encode(command), timeout=2.0,
                                          headers={"Nats-Msg-Id": command.request_id})
                    break
                except (TimeoutError, nats.errors.NoRespondersError, nats.js.errors.NoStreamResponseError):
                    if time.monotonic() >= deadline:
                        raise
                    await asyncio.sleep(0.2)
            msg = await sub.next_msg(timeout=max(0.1, deadline - time.monotonic()))
        finally:
            await sub.unsubscribe()
        reply = reply_decoder.decode(msg.data)
        if not reply.ok:
            raise CommandRefused(reply.error)
        return reply

    async def submit(self, *tasks: NewPromise, timeout: float = 10.0) -> dict[str, int]:
        cmd = Submit(request_id=uuid.uuid4().hex, by=self.by, tasks=list(tasks))
        return (await self.request(cmd, timeout)).ids

    async def cancel(self, promise_id: int, reason: str = "") -> None:
        await self.request(Cancel(request_id=uuid.uuid4().hex, by=self.by, id=promise_id, reason=reason))

    async def retry(self, promise_id: int) -> int:
        reply = await self.request(Retry(request_id=uuid.uuid4().hex, by=self.by, id=promise_id))
        return reply.ids["0"]

    async def approve(self, promise_id: int, reason: str = "") -> dict[str, int]:
        """Let the plan of ``promise_id`` that awaits approval run; its steps' names -> ids."""
        return (await self.request(Approve(request_id=uuid.uuid4().hex, by=self.by, id=promise_id,
                                           reason=reason))).ids

    async def reject(self, promise_id: int, reason: str = "") -> dict[str, int]:
        """Cancel every step of the plan of ``promise_id`` that awaits approval; names -> ids."""
        return (await self.request(Reject(request_id=uuid.uuid4().hex, by=self.by, id=promise_id,
                                          reason=reason))).ids

    # --- reading the log --------------------------------------------------------

    async def events(self, subject: str = subjects.ALL_PROMISE_EVENTS) -> list[tuple[int, PromiseEvent]]:
        """Every stored event on ``subject``, in log order, read to the end."""
        out: list[tuple[int, PromiseEvent]] = []
        info = await self.js.stream_info(subjects.PROMISES)
        if info.state.messages == 0:
            return out
        done = asyncio.Event()

        async def on_msg(msg):
            meta = msg.metadata
            try:
                out.append((meta.sequence.stream, decode_promise_event(msg.data)))
            except msgspec.DecodeError:
                pass
            if meta.num_pending == 0:
                done.set()

        sub = await self.js.subscribe(subject, stream=subjects.PROMISES, cb=on_msg, ordered_consumer=True,
                                      deliver_policy=DeliverPolicy.ALL)
        try:
            # An empty subject never delivers: ask the stream whether anything matches.
            try:
                await self.js.get_last_msg(subjects.PROMISES, subject)
            except Exception:
                return out
            await asyncio.wait_for(done.wait(), timeout=60)
        finally:
            await sub.unsubscribe()
        return out

    async def projection(self, subject: str = subjects.ALL_PROMISE_EVENTS) -> Projection:
        state = Projection()
        for seq, event in await self.events(subject):
            state.apply(event, seq)
        return state

    async def promise(self, promise_id: int):
        """(promise state or None, its events) for one promise."""
        events = await self.events(subjects.promise_all(promise_id))
        state = Projection()
        for seq, event in events:
            state.apply(event, seq)
        return state.promises.get(promise_id), [e for _, e in events]

    async def wait(self, ids: list[int], timeout: float | None = None, poll: float = 0.2) -> dict[int, str]:
        """Block until every promise is terminal; returns id -> state (TimeoutError past ``timeout``)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        states: dict[int, str] = {}
        pending = set(ids)
        while pending:
            for pid in sorted(pending):
                try:
                    p, _ = await self.promise(pid)
                except (TimeoutError, nats.errors.Error):
                    break  # a node is away or a stream leader is being elected: look again
                if p is None:
                    raise CommandRefused(f"no promise #{pid}")
                if p.state in TERMINAL_STATES:
                    states[pid] = p.state
            pending -= set(states)
            if not pending:
                break
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"still open: {', '.join(f'#{i}' for i in sorted(pending))}")
            await asyncio.sleep(poll)
        return states
