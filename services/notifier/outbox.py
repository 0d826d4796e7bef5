"""Per-chat queues that perform notices within Telegram's limits, exactly once.

Each chat has two lanes, each with its own worker task: *messages* (sends)
and *cosmetic* actions (reactions and edits).  Telegram limits messages per
chat (about one a second, 20 a minute in a group); reactions and edits have
flood limits of their own.  So a flood wait or an error in one chat never
delays another, and within a chat a reaction or an edit never holds back a
message (nor the other way round): the reply to ``/help`` goes out at once, not
a ``chat_interval`` behind its own 👀.  Within a lane, actions run in order, at
least ``chat_interval`` apart; a group gets at most ``group_per_minute``
messages a minute; a message is edited at most once per ``edit_interval`` (a
newer edit replaces one still waiting).  In the messages lane, the replies of
respond promises go before the background notices waiting there (status
messages, results), each in arrival order: an answer to ``/status`` never waits
behind a backlog of results.  A flood wait holds back the lane whose call it
answered.  One order across lanes is kept: a reaction on a message
waits until the replies to that message already queued are sent, so ✅ never
shows before the answer it marks.

A message is sent in three steps: log ``notice_intended`` (with a digest of
each part), send the parts, log ``notified``.  A text too long for a few parts
is one part: a document with the text's beginning as its caption, whose
digest is the one recorded (decision 56).  If the process dies between
the last two, the next one sees the intent without ``notified`` and first
looks through Valor's own recent messages in that chat for the parts (user
accounts); only what it cannot find is sent.  A transport that cannot read
history (bots, the console) sends it again: a duplicate is possible only in
that crash window, a loss never.

A chat Telegram says Valor cannot write to any more (blocked, kicked, deleted,
no rights: ``transport.UNREACHABLE``) is not retried: the refused notice is
recorded ``notice_failed`` with Telegram's answer, and so is every later one for
that chat, without calling Telegram, until the service says the chat is
reachable again (a new request came from it, decision 52).  Its lanes never
stall, and other chats were never waiting on them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from telethon.errors import FloodWaitError, RPCError

from schemas.events import NoticeFailed, NoticeIntended, Notified
from valor import metrics
from valor.config import Telegram

from . import logs, texts
from .pacing import COSMETIC, MESSAGES, Lane, LaneName, Pacer, flood_wait, retry_delay
from .plan import STATUS_END, Action, Edit, React, Send
from .transport import Transport, unreachable

Record = Callable[[object, str], Awaitable[None]]  # (event, Nats-Msg-Id) -> stored
RECENT = 100  # own messages looked at when reconciling
GIVE_UP_COSMETIC = 3  # failed tries before a reaction or an edit is dropped


def lane_of(action: Action) -> LaneName:
    return MESSAGES if isinstance(action, Send) else COSMETIC


class Outbox:
    def __init__(self, transport: Transport, record: Record, limits: Telegram,
                 clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.transport = transport
        self.record = record
        self.limits = limits
        self.clock = clock
        self.sleep = sleep
        self.queues: dict[Lane, dict[tuple, Action]] = {}  # lane -> key -> action, in arrival order
        self.workers: dict[Lane, asyncio.Task] = {}
        self.wakeups: dict[Lane, asyncio.Event] = {}
        self.done: set[tuple] = set()  # keys this process completed (the log may not show them yet)
        self.busy: set[Lane] = set()
        self.edited: dict[tuple[int, int], str] = {}  # (chat, message) -> text it shows
        self.pacer = Pacer(limits)  # when each lane may call next (pacing.py)
        self.progress: dict[tuple, dict[int, int]] = {}  # send key -> part -> message id, until notified
        self.unsure: set[tuple] = set()  # sends whose last call failed in a way that may have delivered it
        self.unreachable: dict[int, str] = {}  # chat -> Telegram's refusal, until it is reachable again
        self.stats = {"sent": 0, "edited": 0, "reacted": 0, "reconciled": 0, "flood_waits": 0, "refused": 0}

    # --- intake -----------------------------------------------------------------

    def submit(self, action: Action) -> None:
        if action.key in self.done:
            return
        if (isinstance(action, Edit) and not action.final
                and self.edited.get((action.chat_id, action.message_id)) == action.text):
            return
        lane = (action.chat_id, lane_of(action))
        queue = self.queues.setdefault(lane, {})
        if action.key in queue and not isinstance(action, Edit):
            return  # already waiting (or being performed)
        queue.pop(action.key, None)
        queue[action.key] = action
        if lane not in self.workers or self.workers[lane].done():
            self.wakeups[lane] = asyncio.Event()
            self.workers[lane] = asyncio.create_task(self._work(lane), name=f"chat-{lane[0]}-{lane[1]}")
        self.wakeups[lane].set()

    def refused(self, chat_id: int, reason: str) -> None:
        """Telegram refused this chat for good (told by the log after a restart, or found here)."""
        self.unreachable.setdefault(chat_id, reason)

    def reachable(self, chat_id: int) -> None:
        """The chat may take messages again: the next notice calls Telegram."""
        if self.unreachable.pop(chat_id, None) is not None:
            logs.info("notifier.chat_reachable_again", chat_id=chat_id)

    def idle(self) -> bool:
        return not self.busy and not any(self.queues.values())

    async def stop(self) -> None:
        tasks = list(self.workers.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=2.0)

    # --- the worker of one lane of one chat --------------------------------------

    async def _work(self, lane: Lane) -> None:
        queue, wake = self.queues[lane], self.wakeups[lane]
        while True:
            chosen = self._next(queue)
            if chosen is None:  # nothing queued, or only reactions waiting for replies
                wake.clear()
                await wake.wait()
                continue
            key, action = chosen
            wait = self._ready_at(action) - self.clock()
            if wait > 0:
                await self._nap(wake, wait)
                continue
            self.busy.add(lane)
            try:
                if await self._perform_with_retries(action):
                    if not isinstance(action, Edit) or action.final:
                        self.done.add(key)
                if queue.get(key) is action:
                    del queue[key]
            finally:
                self.busy.discard(lane)
            if lane[1] == MESSAGES and (other := self.wakeups.get((lane[0], COSMETIC))):
                other.set()  # a reaction may have been waiting for this reply

    async def _nap(self, wake: asyncio.Event, seconds: float) -> None:
        """Wait for an action's slot, or less if a new action arrives (real time only)."""
        if self.sleep is not asyncio.sleep:  # injected time moves only when we sleep
            await self.sleep(seconds)
            return
        wake.clear()
        try:
            await asyncio.wait_for(wake.wait(), timeout=seconds)
        except TimeoutError:
            pass

    def _next(self, queue: dict[tuple, Action]) -> tuple[tuple, Action] | None:
        """The first action in order that may go now, else the one that may go soonest."""
        now = self.clock()
        first = None
        for key, action in _answers_first(queue):
            if self._held(action):
                continue
            if self._ready_at(action) <= now:
                return key, action
            if first is None or self._ready_at(action) < self._ready_at(first[1]):
                first = (key, action)
        return first

    def _held(self, action: Action) -> bool:
        """A reaction waits for the replies to its message still queued (✅ after the answer)."""
        if not isinstance(action, React):
            return False
        sends = self.queues.get((action.chat_id, MESSAGES), {})
        return any(s.reply_to == action.message_id for s in sends.values())  # type: ignore[union-attr]

    def _ready_at(self, action: Action) -> float:
        return self.pacer.ready_at((action.chat_id, lane_of(action)),
                                   edits=action.message_id if isinstance(action, Edit) else None)

    async def _perform_with_retries(self, action: Action) -> bool:
        failures = 0
        while True:
            if (known := self.unreachable.get(action.chat_id)) is not None:
                await self._refused(action, known, unsent=True)
                return True
            try:
                await self._perform(action)
                return True
            except asyncio.CancelledError:
                raise
            except FloodWaitError as exc:
                self.stats["flood_waits"] += 1
                metrics.NOTIFIER_FLOOD_WAITS.inc()
                logs.warning("notifier.flood_wait", chat_id=action.chat_id, promise_id=action.id, seconds=exc.seconds)
                await self.sleep(flood_wait(exc.seconds))
            except (ConnectionError, OSError, TimeoutError, RPCError) as exc:
                if (reason := unreachable(exc)) is not None:
                    self.unreachable[action.chat_id] = reason
                    await self._refused(action, reason, unsent=False)
                    return True
                failures += 1
                if isinstance(action, Send):
                    self.unsure.add(action.key)
                logs.warning("notifier.action_failed", chat_id=action.chat_id, promise_id=action.id,
                             action=type(action).__name__, error=str(exc) or type(exc).__name__)
                if not isinstance(action, Send) and isinstance(exc, RPCError) and failures >= GIVE_UP_COSMETIC:
                    if isinstance(action, React):  # say so in the log; never retried again
                        await self._record(Notified(id=action.id, kind=action.kind, chat_id=action.chat_id,
                                                    at=self.clock()), f"{action.id}:notified:{action.kind}")
                    return False
                await self.sleep(retry_delay(failures))  # a message is never dropped; other chats go on meanwhile

    async def _refused(self, action: Action, reason: str, unsent: bool) -> None:
        """The notice cannot reach its chat: say so in the log, once, and move on."""
        self.progress.pop(action.key, None)
        self.unsure.discard(action.key)
        if isinstance(action, Edit):
            return  # an edit is no notice of its own: the message it would change is unreachable too
        self.stats["refused"] += 1
        metrics.NOTICES_REFUSED.inc()
        logs.warning("notifier.chat_unreachable", chat_id=action.chat_id, promise_id=action.id, kind=action.kind,
                     reason=reason, called=not unsent)
        await self._record(NoticeFailed(id=action.id, kind=action.kind, chat_id=action.chat_id, reason=reason,
                                        unsent=unsent, at=self.clock()), f"{action.id}:notice_failed:{action.kind}")

    # --- performing ---------------------------------------------------------------

    async def _perform(self, action: Action) -> None:
        match action:
            case React():
                await self.transport.react(action.chat_id, action.message_id, action.emoji)
                self.pacer.spent((action.chat_id, COSMETIC), self.clock())
                self.stats["reacted"] += 1
                await self._record(Notified(id=action.id, kind=action.kind, chat_id=action.chat_id,
                                            telegram_message_id=action.message_id, at=self.clock()),
                                   f"{action.id}:notified:{action.kind}")
            case Edit():
                where = (action.chat_id, action.message_id)
                if self.edited.get(where) != action.text:
                    await self.transport.edit(action.chat_id, action.message_id, action.text)
                    self.pacer.spent((action.chat_id, COSMETIC), self.clock())
                    self.edited[where] = action.text
                    self.pacer.edited(*where, self.clock())
                    self.stats["edited"] += 1
                if action.final:  # the status shows its end: no restart edits it again
                    await self._record(Notified(id=action.id, kind=STATUS_END, chat_id=action.chat_id,
                                                telegram_message_id=action.message_id, at=self.clock()),
                                       f"{action.id}:notified:{STATUS_END}")
            case Send():
                await self._send(action)

    def _shape(self, action: Send) -> tuple[list[str], texts.Document | None]:
        """The parts sent as text, and the document the one part is the caption of, when the text is long."""
        doc = texts.document(action.text, action.id, action.kind, self.limits.document_after_chars)
        return texts.parts(action.text, doc), doc

    async def _send(self, action: Send) -> None:
        parts, doc = self._shape(action)
        digests = [texts.digest(p) for p in parts]
        if action.find_only:
            await self._find_only(action)
            return
        found = self.progress.get(action.key)
        if found is None:  # the first try in this process
            if action.intended:
                found = await self._find(action, digests)
                if len(found) < len(parts) and await self._found_as_first_sent(action):
                    return
            else:
                await self._record(NoticeIntended(id=action.id, kind=action.kind, chat_id=action.chat_id,
                                                  reply_to=action.reply_to, parts=digests,
                                                  covers=list(action.covers), at=self.clock()),
                                   f"{action.id}:notice_intended:{action.kind}")
                found = {}
            self.progress[action.key] = found
        elif action.key in self.unsure:  # a retry: the part whose call failed may have arrived
            found.update(await self._find(action, digests, known=found))
        self.unsure.discard(action.key)
        reused, ids = len(found), []
        for i, part in enumerate(parts):
            if i in found:
                ids.append(found[i])
                continue
            await self._pace(action)
            if doc is not None:
                ids.append(await self.transport.send_document(action.chat_id, part, doc.name, doc.data,
                                                              action.reply_to))
            else:
                ids.append(await self.transport.send(action.chat_id, part, action.reply_to))
            found[i] = ids[-1]
            self.pacer.spent((action.chat_id, MESSAGES), self.clock())
            self.stats["sent"] += 1
        where = (action.chat_id, ids[0])  # what it shows, should it be edited (a status, a checklist)
        self.edited[where] = parts[0]
        self.pacer.edited(*where, self.clock())
        await self._sent(action, ids[0])
        metrics.NOTICES_SENT.labels(action.kind).inc()
        logs.info("notifier.sent", promise_id=action.id, kind=action.kind, chat_id=action.chat_id,
                  message=ids[0], parts=len(parts), already_there=reused)

    async def _sent(self, action: Send, message_id: int) -> None:
        await self._record(Notified(id=action.id, kind=action.kind, chat_id=action.chat_id,
                                    telegram_message_id=message_id, covers=list(action.covers), at=self.clock()),
                           f"{action.id}:notified:{action.kind}")
        self.progress.pop(action.key, None)

    async def _find_only(self, action: Send) -> None:
        """A status that may be in the chat, its work over: found, it is recorded (then set to the end);
        not found (never sent, or a transport that cannot look), it is recorded without a message."""
        found = await self._find(action, list(action.recorded)) if action.recorded else {}
        message_id = found.get(0)
        await self._record(Notified(id=action.id, kind=action.kind, chat_id=action.chat_id,
                                    telegram_message_id=message_id, at=self.clock()),
                           f"{action.id}:notified:{action.kind}")
        logs.info("notifier.status_looked_for", promise_id=action.id, chat_id=action.chat_id, message=message_id)

    async def _found_as_first_sent(self, action: Send) -> bool:
        """An intended message that is in the chat whole, as its text was when intended: record it, send nothing.

        A checklist's text changes between the intent and a restart; the message
        found is brought up to date by the edit that follows its ``notified``.
        """
        if not action.recorded or list(action.recorded) == [texts.digest(p) for p in self._shape(action)[0]]:
            return False
        found = await self._find(action, list(action.recorded))
        if len(found) < len(action.recorded):
            return False
        await self._sent(action, found[0])
        logs.info("notifier.sent", promise_id=action.id, kind=action.kind, chat_id=action.chat_id,
                  message=found[0], parts=len(found), already_there=len(found))
        return True

    async def _find(self, action: Send, digests: list[str], known: dict[int, int] | None = None) -> dict[int, int]:
        """Parts of an intended message already in the chat, besides those ``known`` (user accounts only)."""
        if not self.transport.can_read_history:
            return {}
        recent = await self.transport.recent_own(action.chat_id, RECENT)
        known = known or {}
        found: dict[int, int] = {}
        for sent in sorted(recent, key=lambda s: s.id):
            if sent.reply_to != action.reply_to or sent.id in known.values():
                continue
            d = texts.digest(sent.text)
            for i, want in enumerate(digests):
                if i not in known and i not in found and want == d and sent.id not in found.values():
                    found[i] = sent.id
                    break
        if found:
            self.stats["reconciled"] += len(found)
            metrics.NOTICES_RECONCILED.inc(len(found))
            logs.info("notifier.reconciled", promise_id=action.id, kind=action.kind, chat_id=action.chat_id,
                      found=len(found), parts=len(digests))
        return found

    async def _pace(self, action: Action) -> None:
        wait = self._ready_at(action) - self.clock()
        if wait > 0:
            await self.sleep(wait)

    async def _record(self, event, msg_id: str) -> None:
        await self.record(event, msg_id)


def _answers_first(queue: dict[tuple, Action]) -> list[tuple[tuple, Action]]:
    """The replies to the chat's messages, then the rest; each in arrival order."""
    answers = [(k, a) for k, a in queue.items() if isinstance(a, Send) and a.answer]
    if not answers:
        return list(queue.items())
    return answers + [(k, a) for k, a in queue.items() if not (isinstance(a, Send) and a.answer)]
