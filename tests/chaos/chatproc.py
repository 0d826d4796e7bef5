"""``python -m tests.chaos.chatproc ingest|notifier --telegram URL``: the real services on the fake Telegram.

The same wiring as ``services/ingest/__main__.py`` and
``services/notifier/__main__.py``, with the harness's Telegram in place of
Telethon, so the chaos suite can kill -9 them like any other process.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

from valor import bus, logs
from valor.config import load

from .telegram import RemoteInbound, RemoteTransport


async def serve(kind: str, url: str) -> None:
    config = load()
    nc = await bus.connect(name=kind)
    try:
        await bus.ensure_streams(nc.jetstream())
        # Each imports only its own service, as ``python -m services.<kind>`` does: the notifier's
        # imports (the agent's texts, the Anthropic SDK) would add seconds to ingest's start.
        if kind == "ingest":
            from services.ingest.service import Ingest

            runner = Ingest(nc, RemoteInbound(url), config)
        else:
            from services.notifier.service import Notifier

            runner = Notifier(nc, RemoteTransport(url), config)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await runner.start()
        await stop.wait()
        await runner.stop()
    finally:
        await nc.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=["ingest", "notifier"])
    parser.add_argument("--telegram", required=True)
    args = parser.parse_args()
    logs.setup(args.kind)
    asyncio.run(serve(args.kind, args.telegram))


if __name__ == "__main__":
    main()
