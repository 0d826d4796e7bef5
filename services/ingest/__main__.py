"""``python -m services.ingest``: Telegram (with credentials) or the local console into CHAT.

``python -m services.ingest login`` creates the ingest and notifier sessions
interactively (``make login``).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from valor import bus, eventloop, logs, metrics
from valor.config import load
from valor.telegram import credentials, login

from .console import ConsoleIngest
from .service import Ingest
from .telegram import TelethonInbound


async def serve() -> None:
    config = load()
    creds = credentials()
    nc = await bus.connect(name="ingest")
    try:
        await bus.ensure_streams(nc.jetstream())
        if creds is None:
            logging.getLogger("valor.ingest").info("no Telegram credentials: serving the local console")
            runner = ConsoleIngest(nc, Ingest(nc, source=None, config=config))  # type: ignore[arg-type]
        else:
            runner = Ingest(nc, TelethonInbound(creds), config)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await runner.start()
        metrics.serve(lambda: {"ok": nc.is_connected, "service": "ingest"})
        await stop.wait()
        await runner.stop()
    finally:
        await nc.close()


async def login_all() -> None:
    creds = credentials()
    if creds is None:
        sys.exit("set VALOR_TG_API_ID, VALOR_TG_API_HASH and VALOR_TG_PHONE or VALOR_TG_BOT_TOKEN "
                 "(environment or .env) first")
    for name in ("ingest", "notifier"):  # one session per process, never shared
        print(await login(creds, name))


def main() -> None:
    logs.setup("ingest")
    if sys.argv[1:] == ["login"]:
        eventloop.run(login_all())
    else:
        eventloop.run(serve())


if __name__ == "__main__":
    main()
