"""The scheduler's projection, served: a NATS micro service ``valor-reads`` (decision 48).

Every scheduler (leader and standby: both fold the log) answers in the queue
group, so ``nats micro ls`` lists one instance per scheduler.  An answer
reflects every event stored before the request: the handler reads PROMISES'
last sequence when the request arrives and answers once the projection has
applied it; past ``FRESH_WAIT`` it answers an error (503) and the client falls
back to reading the log itself.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
from collections.abc import Callable

import msgspec
from nats.aio.client import Client
from nats.micro import add_service
from nats.micro.request import Request
from nats.micro.service import Service

from schemas import subjects
from valor import readmodel
from valor.readmodel import ReadIndex

log = logging.getLogger("valor.scheduler.reads")

# How long a request may wait for the tail to apply what was stored before it.
FRESH_WAIT = 2.0
VERSION = "1.0.0"


class Applied:
    """The projection's applied sequence, and waiters for a sequence to be reached."""

    def __init__(self, seq: int = 0) -> None:
        self.seq = seq
        self._waiters: list[tuple[int, int, asyncio.Future]] = []
        self._order = itertools.count()

    def advance(self, seq: int) -> None:
        self.seq = max(self.seq, seq)
        while self._waiters and self._waiters[0][0] <= self.seq:
            _, _, fut = heapq.heappop(self._waiters)
            if not fut.done():
                fut.set_result(None)

    async def reach(self, seq: int, timeout: float) -> bool:
        if self.seq >= seq:
            return True
        fut = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (seq, next(self._order), fut))
        try:
            await asyncio.wait_for(fut, timeout)
            return True
        except TimeoutError:
            return False


class ReadService:
    def __init__(self, nc: Client, index: ReadIndex, applied: Applied, name: str,
                 leader: Callable[[], bool] = lambda: False) -> None:
        self.nc = nc
        self.js = nc.jetstream()
        self.index = index
        self.applied = applied
        self.name = name
        self.leader = leader
        self.service: Service | None = None
        self._decoders = {e: msgspec.json.Decoder(q) for e, q in readmodel.QUERIES.items()}

    async def start(self) -> None:
        self.service = await add_service(self.nc, name=readmodel.SERVICE, version=VERSION,
                                         description="Valor's promises as the scheduler's projection holds them",
                                         metadata={"scheduler": self.name})
        group = self.service.add_group(name=readmodel.SUBJECT_PREFIX)
        for endpoint in readmodel.ENDPOINTS:
            await group.add_endpoint(name=endpoint, handler=self._handler(endpoint))

    async def stop(self) -> None:
        if self.service is not None:
            await self.service.stop()

    def _handler(self, endpoint: str):
        decoder = self._decoders[endpoint]

        async def handle(req: Request) -> None:
            try:
                query = decoder.decode(req.data or b"{}")
            except msgspec.DecodeError as exc:
                await req.respond_error("400", f"bad {endpoint} query: {exc}")
                return
            try:
                stored = (await self.js.stream_info(subjects.PROMISES)).state.last_seq
            except Exception as exc:  # noqa: BLE001 - any failure: the client reads the log itself
                await req.respond_error("503", f"cannot read the log's end: {type(exc).__name__}: {exc}")
                return
            if not await self.applied.reach(stored, FRESH_WAIT):
                await req.respond_error("503", f"projection at seq {self.applied.seq}, the log at {stored}")
                return
            answer = readmodel.answer(self.index, query)
            answer.by, answer.leader = self.name, self.leader()
            await req.respond(msgspec.json.encode(answer))

        return handle
