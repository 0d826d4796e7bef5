"""``python -m services.notifier``: notices to Telegram (with credentials) or to the local console."""

from __future__ import annotations

import asyncio
import signal

from valor import bus, eventloop, logs, metrics
from valor.config import load
from valor.telegram import credentials

from .service import Notifier
from .transport import ConsoleTransport, TelethonTransport


async def serve() -> None:
    config = load()
    creds = credentials()
    nc = await bus.connect(name="notifier")
    try:
        await bus.ensure_streams(nc.jetstream())
        transport = ConsoleTransport(nc) if creds is None else TelethonTransport(creds)
        notifier = Notifier(nc, transport, config)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await notifier.start()
        metrics.serve(lambda: {"ok": nc.is_connected, "service": "notifier"})
        await stop.wait()
        await notifier.stop()
    finally:
        await nc.close()


def main() -> None:
    logs.setup("notifier")
    eventloop.run(serve())


if __name__ == "__main__":
    main()
