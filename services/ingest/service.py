"""Ingest: Telegram messages into ``chat.<chat_id>.in``, none missed.

Start: connect, note each allowed chat's cursor, listen (Telethon catches up
first), then read each allowed chat's history after its cursor; then
reconcile every ``reconcile_interval``.  Telethon drops gaps it finds "too
long" silently, so the history reads are what make delivery complete.

The cursor of a chat is the highest message id whose history was *read*
(kept in the ``valor_ingest`` bucket), not the last message published: a live
message after a gap must not hide the gap.  Without a stored cursor, the last
message on ``chat.<id>.in`` is used.  Everything read is published with
``Nats-Msg-Id: tg:<chat>:<msg>``, so a message seen live and again in history
is stored once (CHAT's duplicate window covers the catch-up horizon).

Catch-up after downtime is pipelined: up to ``HISTORY_READERS`` chats are
read at once (a flood wait pauses all of them: Telegram counts per account),
and each page of history is published without waiting for each ack in turn,
then the acks are awaited before the cursor moves past the page.  A publish
that fails is retried one by one, its duplicates absorbed.

Messages for Valor older than ``catchup_horizon`` are not acted on but told:
one ``messages_skipped`` per chat and skipped range, which the scheduler turns
into a reply (decision 54).

Bot accounts cannot read history (nor list dialogs): they get Telethon's
catch-up only, and where Telegram reports the gap too long to give, each chat
that may have lost messages is told once (``updates_gap``, issue 15).

A photo or document is saved into the chat's workspace (``inbox.py``) before
its message is published, so the message names a file that is there; a
download that keeps failing is recorded in the message, which goes on.

A message that cannot be stored because the cluster has no quorum (two of three
nodes gone) is held, its publish retrying, and its chat is told once per outage
through ``notices`` (the Telegram session itself, or the console): ``outage.py``
decides, decision 77.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import msgspec
from nats.aio.client import Client
from nats.js.api import KeyValueConfig, PubAck, StorageType
from nats.js.errors import BucketNotFoundError, KeyNotFoundError, NotFoundError
from telethon.errors import FloodWaitError, RPCError

from schemas import subjects
from schemas.events import (
    ChatEvent,
    MessageDeleted,
    MessageEdited,
    MessageReceived,
    MessagesSkipped,
    UpdatesGap,
    decode_message,
    encode,
)
from valor import bus, metrics
from valor.config import Config, load

from . import inbox, logs, outage
from .accept import Rules, accept, skipped
from .telegram import Inbound, Notices

BUCKET = "valor_ingest"
HISTORY_READERS = 4  # chats whose history is read at once (Telegram's limits are per account)
PUBLISH_TIMEOUT = 5.0  # seconds for one publish, or for the acks of one page
# A live message dated this long before start was waiting for us: it is caught up too.
LIVE_SLACK = 5.0
DOWNLOAD_TRIES = 3  # a download cut off this often is recorded as failed; the message goes on
TELL_TIMEOUT = 10.0  # seconds for the no-quorum notice: a Telegram that hangs must not hold the retries up

# Called each time a message's store is refused for lack of a quorum, with the reason.
OnHeld = Callable[[str], Awaitable[None]]


class Ingest:
    def __init__(
        self,
        nc: Client,
        source: Inbound,
        config: Config | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        notices: Notices | None = None,
    ) -> None:
        self.nc = nc
        self.js = nc.jetstream()
        self.source = source
        self.notices = notices or source  # where a chat is told its messages are held
        self.config = config or load()
        self.tg = self.config.telegram
        self.rules = Rules.from_config(self.config)
        self.clock = clock
        self.sleep = sleep
        self.me = None
        self.bot = False
        self.cursors: dict[int, int | None] = {}
        self.started_at = 0.0
        self.published = 0  # new messages stored (duplicates not counted)
        self._kv = None
        self._loop: asyncio.Task | None = None
        self._readers = asyncio.Semaphore(HISTORY_READERS)
        self._flood_until = 0.0  # a flood wait pauses every call until then
        self.outage = outage.Outage()
        self.held: set[tuple[int, int]] = set()  # (chat, message) refused a store for lack of a quorum
        self._quorum_lock = asyncio.Lock()  # one count of the nodes at a time; the others reuse its answer

    # --- lifecycle --------------------------------------------------------------

    async def start(self, reconcile_forever: bool = True) -> None:
        self.started_at = self.clock()
        self._kv = await bus.patiently("the cursor bucket", lambda: cursor_bucket(self.js))
        await self._retrying("connect", self.source.connect)
        self.me = await self._retrying("get_me", self.source.me)
        self.bot = bool(getattr(self.me, "bot", False))
        if self.bot:  # Telegram refuses a bot the dialog list and history (BOT_METHOD_INVALID): updates only
            await self._retrying("listen", self._listen)
            logs.info("ingest.started", me=getattr(self.me, "id", None), bot=True)
            logs.info("ingest.no_backfill", reason="bot accounts cannot read history; Telethon catch-up only")
            return
        # Cursors before listening: a live message must not move one past a gap.
        chats = await self._retrying("dialogs", self.allowed_chats)
        await bus.patiently("the chats' cursors",
                            lambda: asyncio.gather(*(self.cursor(chat_id, at_start=True) for chat_id in chats)))
        await self._retrying("listen", self._listen)
        logs.info("ingest.started", me=getattr(self.me, "id", None), bot=self.bot, chats=sorted(self.cursors))
        await self.reconcile()
        if reconcile_forever:
            self._loop = asyncio.create_task(self._reconcile_forever(), name="reconcile")

    async def stop(self) -> None:
        if self._loop:
            self._loop.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._loop
        with contextlib.suppress(Exception):
            await self.source.stop()

    # --- live -------------------------------------------------------------------

    async def _listen(self) -> None:
        await self.source.listen(self.on_live, self.on_edit, self.on_deleted, self.on_gap)

    async def on_gap(self, chat_id: int | None) -> int:
        """Telegram will not give the updates missed: a channel's (``chat_id``) or the account's (None: its
        private chats and basic groups).  Returns how many chats are told.

        A user account's history read fills any gap; a bot's cannot be filled, so each chat
        that may have lost messages is told, once: every chat Valor has stored messages from,
        for the account's gap.  The scheduler makes it a reply (``updates_gap``).
        """
        logs.warning("ingest.gap", chat_id=chat_id, bot=self.bot)
        if not self.bot:
            return 0
        if chat_id is not None:
            chats = [chat_id] if chat_id in self.rules.chats else []
        else:
            chats = [c for c in await self.known_chats() if not _is_channel(c)]
        until = self.clock()
        told = 0
        for chat in chats:
            told += await self.publish(UpdatesGap(chat_id=chat, until=until, channel=chat_id is not None))
        return told

    async def known_chats(self) -> list[int]:
        """The chats with anything stored on CHAT (a bot has no dialog list to ask)."""
        info = await self.js.stream_info(subjects.CHAT, subjects_filter="chat.*.in")
        chats = {int(subject.split(".")[1]) for subject in (info.state.subjects or {})}
        return sorted(c for c in chats if c and (c > 0 or c in self.rules.chats))

    async def on_live(self, message) -> None:
        caught_up = message.date is not None and message.date.timestamp() < self.started_at - LIVE_SLACK
        await self.take(message, caught_up)

    async def on_edit(self, message) -> bool:
        """An edit of a message, as it reads now, after the message itself; True when new to CHAT.

        Accepted by the same rules as a new message: an edit that makes a message
        not for Valor (a mention taken out) is not recorded.  The scheduler
        decides what it changes (decision 50).
        """
        verdict = self._accepted(message, caught_up=False)
        if verdict is None:
            return False
        edited = message.edit_date or message.date
        msg = await self.saved(message, verdict)
        return await self.publish(MessageEdited(chat_id=msg.chat_id, message_id=msg.message_id,
                                                edited_at=edited.timestamp() if edited else self.clock(),
                                                message=msg))

    async def on_deleted(self, chat_id: int | None, message_ids: list[int]) -> bool:
        """Deleted messages, recorded for the scheduler to match with requests (decision 50).

        Telegram names no chat for a user account's private chats and basic
        groups: recorded under chat 0.  A group or channel not allowed is skipped.
        """
        if not message_ids or (chat_id is not None and chat_id < 0 and chat_id not in self.rules.chats):
            return False
        return await self.publish(MessageDeleted(chat_id=chat_id or 0, message_ids=sorted(message_ids)))

    async def take(self, message, caught_up: bool) -> bool:
        """Publish if it is for Valor; True when it was new to CHAT."""
        verdict = self._accepted(message, caught_up)
        return verdict is not None and await self.publish(await self.saved(message, verdict))

    def _accepted(self, message, caught_up: bool) -> MessageReceived | None:
        verdict = accept(message, self.me, self.rules, caught_up)
        if isinstance(verdict, str):
            logs.debug("ingest.ignored", chat_id=message.chat_id, message=message.id, reason=verdict)
            return None
        return verdict

    async def saved(self, message, msg: MessageReceived) -> MessageReceived:
        """The message with its photo or document saved into the chat's workspace, or why not."""
        if not msg.attachments:
            return msg

        async def download(path: Path) -> None:
            await self._retrying(f"download {msg.chat_id}/{msg.message_id}",
                                 lambda: self.source.download(message, path), tries=DOWNLOAD_TRIES)

        return await inbox.save_all(msg, self.config.workspace_for(msg.chat_id), download,
                                    self.tg.attachment_max_bytes)

    def _stamped(self, msg: ChatEvent) -> tuple[str, bytes, dict[str, str]]:
        msg = msgspec.structs.replace(msg, at=self.clock())
        if isinstance(msg, MessageDeleted):
            msg_id = subjects.msg_id_for_deletion(msg.chat_id, msg.message_ids)
        elif isinstance(msg, MessageEdited):
            msg_id = subjects.msg_id_for_edit(msg.chat_id, msg.message_id, msg.edited_at)
        elif isinstance(msg, MessagesSkipped):
            msg_id = subjects.msg_id_for_skipped(msg.chat_id, msg.first_id, msg.last_id)
        elif isinstance(msg, UpdatesGap):
            msg_id = subjects.msg_id_for_gap(msg.chat_id, msg.until)
        else:
            msg_id = subjects.msg_id_for_message(msg.chat_id, msg.message_id)
        return subjects.chat_in(msg.chat_id), encode(msg), {bus.MSG_ID: msg_id}

    async def publish(self, msg: ChatEvent, on_held: OnHeld | None = None) -> bool:
        delay = 0.2
        while True:  # at-least-once into CHAT: NATS being away is waited out
            subject, payload, headers = self._stamped(msg)
            try:
                ack = await self.js.publish(subject, payload, headers=headers, timeout=PUBLISH_TIMEOUT)
                break
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logs.warning("ingest.publish_retry", chat_id=msg.chat_id, message=getattr(msg, "message_id", None),
                             error=str(exc))
                if isinstance(msg, MessageReceived):
                    await self.refused(msg.chat_id, msg.message_id, on_held, str(exc) or type(exc).__name__)
                await self.sleep(delay)
                delay = min(delay * 2, 5.0)
        return self._stored(msg, ack)

    async def refused(self, chat_id: int, message_id: int | None, on_held: OnHeld | None = None,
                      error: str = "") -> None:
        """A message's store (or, for the console, the read before it: ``message_id`` None) failed:
        if the cluster has no quorum, the message is held and its chat told, once per outage.
        ``on_held`` (the console's line) hears of every failed try, with why."""
        nodes = await self._no_quorum()
        if nodes is None:  # an election, a slow node: waited out without a word to the chat
            if on_held is not None:
                await on_held(error)
            return
        self.outage, notice = outage.refused(self.outage, chat_id, message_id)
        if message_id is not None and (chat_id, message_id) not in self.held:
            self.held.add((chat_id, message_id))
            metrics.INGEST_HELD.set(len(self.held))
            logs.warning("ingest.held", chat_id=chat_id, message=message_id, up=nodes[0], total=nodes[1])
        if notice is not None:
            await self._tell(chat_id, message_id, notice)
        if on_held is not None:
            await on_held(str(bus.NoQuorum(*nodes)))

    async def _no_quorum(self) -> tuple[int, int] | None:
        """(up, total) when the cluster has no quorum, else None; asked at most every few seconds."""
        async with self._quorum_lock:
            if outage.check_due(self.outage, self.clock()):
                try:
                    await bus.check_quorum(self.nc)
                    nodes = None
                except bus.NoQuorum as exc:
                    nodes = (exc.up, exc.total)
                except Exception as exc:  # cannot tell: say nothing
                    logs.warning("ingest.quorum_unknown", error=str(exc) or type(exc).__name__)
                    nodes = None
                self.outage = outage.checked(self.outage, self.clock(), nodes)
            return self.outage.nodes

    async def _tell(self, chat_id: int, message_id: int | None, text: str) -> None:
        if self.notices is None:
            return
        try:
            await asyncio.wait_for(self.notices.send(chat_id, text, message_id), TELL_TIMEOUT)
            logs.warning("ingest.told_no_quorum", chat_id=chat_id, message=message_id)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the message is still held and answered once stored
            logs.warning("ingest.tell_failed", chat_id=chat_id, message=message_id,
                         error=str(exc) or type(exc).__name__)

    async def publish_many(self, msgs: list[MessageReceived]) -> int:
        """Publish all, then await the acks; returns how many were new to CHAT.

        What did not get an ack goes again one by one through ``publish`` (which
        waits NATS out); a copy that was stored after all is absorbed as a duplicate.
        """
        futures: list[asyncio.Future] = []
        acks: list = []
        try:
            for msg in msgs:
                subject, payload, headers = self._stamped(msg)
                futures.append(await self.js.publish_async(subject, payload, headers=headers))
            acks = await asyncio.wait_for(asyncio.gather(*futures, return_exceptions=True), PUBLISH_TIMEOUT)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            for future in futures:  # frees their slots in the client's window of pending acks
                future.cancel()
            logs.warning("ingest.publish_retry", chat_id=msgs[0].chat_id, messages=len(msgs), error=str(exc))
        new = 0
        for i, msg in enumerate(msgs):
            ack = acks[i] if i < len(acks) else None
            new += self._stored(msg, ack) if isinstance(ack, PubAck) else await self.publish(msg)
        return new

    def _stored(self, msg: ChatEvent, ack: PubAck) -> bool:
        self.outage = outage.stored(self.outage, msg.chat_id)
        if isinstance(msg, MessageReceived) and (msg.chat_id, msg.message_id) in self.held:
            self.held.discard((msg.chat_id, msg.message_id))
            metrics.INGEST_HELD.set(len(self.held))
            logs.info("ingest.held_stored", chat_id=msg.chat_id, message=msg.message_id)
        if not ack.duplicate and isinstance(msg, MessageDeleted):
            logs.info("ingest.deleted", chat_id=msg.chat_id, messages=msg.message_ids)
        elif not ack.duplicate and isinstance(msg, MessageEdited):
            logs.info("ingest.edited", chat_id=msg.chat_id, message=msg.message_id, edited_at=msg.edited_at)
        elif not ack.duplicate and isinstance(msg, MessagesSkipped):
            logs.warning("ingest.skipped", chat_id=msg.chat_id, messages=msg.count, first=msg.first_id,
                         last=msg.last_id)
        elif not ack.duplicate and isinstance(msg, UpdatesGap):
            logs.warning("ingest.gap_told", chat_id=msg.chat_id, until=msg.until)
        elif not ack.duplicate:
            self.published += 1
            metrics.INGESTED.labels("caught_up" if msg.caught_up else "live").inc()
            logs.info("ingest.received", chat_id=msg.chat_id, message=msg.message_id, caught_up=msg.caught_up)
        return not ack.duplicate

    # --- history ----------------------------------------------------------------

    async def allowed_chats(self) -> list[int]:
        return [chat_id for chat_id, entity in await self.source.dialogs(self.tg.dialogs_limit)
                if self.rules.chat_allowed(chat_id, entity)]

    async def cursor(self, chat_id: int, at_start: bool = False) -> int | None:
        """The stored cursor; else, before listening, the last message stored for the chat.

        A chat first seen later has no trustworthy last message (a live one may
        have skipped a gap): it is read from the horizon, duplicates absorbed.
        """
        if chat_id not in self.cursors:
            self.cursors[chat_id] = await read_cursor(self.js, self._kv, chat_id, fallback_to_last=at_start)
        return self.cursors[chat_id]

    async def reconcile(self) -> int:
        """Read every allowed chat's history after its cursor; returns how many messages were new."""
        if self.bot:
            return 0
        counts: list[int] = []

        async def one(chat_id: int) -> None:
            async with self._readers:
                try:
                    counts.append(await self._retrying(f"history {chat_id}", lambda: self.fill(chat_id)))
                except RPCError as exc:  # this chat is unreadable (left, banned...): the others go on
                    logs.warning("ingest.chat_unreadable", chat_id=chat_id, error=str(exc))

        chats = await self._retrying("dialogs", self.allowed_chats)
        try:
            async with asyncio.TaskGroup() as group:  # an error in one chat stops the others, as before
                for chat_id in chats:
                    group.create_task(one(chat_id))
        except ExceptionGroup as errors:  # the caller sees the error itself, as before
            raise errors.exceptions[0] from None
        new = sum(counts)
        if new:
            logs.info("ingest.backfilled", new=new)
        return new

    async def fill(self, chat_id: int) -> int:
        """One chat: history after the cursor, oldest first, capped per read, within the horizon.

        Messages for Valor older than the horizon are not published but told: one
        ``messages_skipped`` per chat and range (decision 54).  Until it is stored
        the cursor stays in memory only, so a crash re-reads the same range and the
        summary, with the same ``Nats-Msg-Id``, is stored once.
        """
        since = self.clock() - self.tg.catchup_horizon
        new = 0
        too_old: list[MessageReceived] = []
        for _ in range(100):  # a long backlog is read in capped pages; the bound keeps one chat from hogging
            cursor = await self.cursor(chat_id) or 0
            top, count, page, fresh = cursor, 0, [], False
            history = self.source.history(chat_id, cursor, datetime.fromtimestamp(since, UTC),
                                          self.tg.catchup_limit)
            async for message in history:
                count += 1
                top = max(top, message.id)
                old = message.date is not None and message.date.timestamp() < since
                fresh = fresh or not old
                if (msg := self._accepted(message, caught_up=True)) is None:
                    continue
                if old:  # not saved nor published: only counted and quoted
                    too_old.append(msg)
                else:
                    page.append(await self.saved(message, msg))
            if page:  # stored before the cursor moves past it
                new += await self.publish_many(page)
            last = count < self.tg.catchup_limit
            if too_old and (fresh or last):  # the old ones come first: their range is complete
                await self.publish(skipped(too_old, self.tg.catchup_horizon))
                too_old = []
            if top > cursor:
                self.cursors[chat_id] = top
                if not too_old:
                    await self._kv.put(str(chat_id), str(top).encode())
            if last:
                break
        if too_old:  # the page bound stopped the read inside the old ones
            await self.publish(skipped(too_old, self.tg.catchup_horizon))
            await self._kv.put(str(chat_id), str(self.cursors[chat_id]).encode())
        return new

    async def _reconcile_forever(self) -> None:
        while True:
            await self.sleep(self.tg.reconcile_interval)
            try:
                await self.reconcile()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logs.warning("ingest.reconcile_failed", error=str(exc))

    async def _retrying(self, what: str, call, tries: int | None = None):
        """Flood waits are waited out, disconnects too (``tries`` calls at most); other errors are the caller's."""
        delay = 1.0
        failed = 0
        while True:
            if (pause := self._flood_until - self.clock()) > 0:  # another call's flood wait holds us too
                await self.sleep(pause)
            try:
                return await call()
            except FloodWaitError as exc:
                metrics.INGEST_FLOOD_WAITS.inc()
                logs.warning("ingest.flood_wait", call=what, seconds=exc.seconds)
                self._flood_until = max(self._flood_until, self.clock() + exc.seconds + 1)
                await self.sleep(exc.seconds + 1)
            except (ConnectionError, OSError, TimeoutError) as exc:
                failed += 1
                if tries is not None and failed >= tries:
                    raise
                logs.warning("ingest.disconnected", call=what, error=str(exc) or type(exc).__name__,
                             retry_in=delay)
                await self.sleep(delay)
                delay = min(delay * 2, 60.0)


def _is_channel(chat_id: int) -> bool:
    """A channel or supergroup (its marked id): its updates have a gap of their own."""
    return chat_id < -10**12


async def cursor_bucket(js):
    try:
        return await js.key_value(BUCKET)
    except BucketNotFoundError:
        return await js.create_key_value(KeyValueConfig(
            bucket=BUCKET, description="ingest: per chat, the highest message id whose history was read",
            history=1, storage=StorageType.FILE, replicas=bus.replicas()))


async def last_stored_id(js, chat_id: int) -> int | None:
    try:
        raw = await js.get_last_msg(subjects.CHAT, subjects.chat_in(chat_id))
    except NotFoundError:
        return None
    try:
        return decode_message(raw.data).message_id
    except msgspec.DecodeError:
        return None


async def read_cursor(js, kv, chat_id: int, fallback_to_last: bool) -> int | None:
    try:
        entry = await kv.get(str(chat_id))
        return int(entry.value)
    except (KeyNotFoundError, ValueError, TypeError):
        return await last_stored_id(js, chat_id) if fallback_to_last else None
