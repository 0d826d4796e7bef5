"""``python -m services.scheduler``: run one scheduler (active or hot standby)."""

from __future__ import annotations

import asyncio
import os
import signal

from valor import bus, eventloop, logs, metrics
from valor.config import ConfigError, load

from .service import Scheduler


async def main() -> None:
    config = load()  # refuse to start on a bad valor.toml, naming the key
    nc = await bus.connect(name="scheduler")
    scheduler = Scheduler(
        nc,
        config=config,
        lease_ttl=float(os.environ.get("VALOR_LEASE_TTL", "10")),
        ack_wait=float(os.environ.get("VALOR_ACK_WAIT", "30")),
        snapshot_every=int(os.environ.get("VALOR_SNAPSHOT_EVERY", "50000")),
        snapshot_interval=float(os.environ.get("VALOR_SNAPSHOT_INTERVAL", "30")),
    )
    await scheduler.start()
    metrics.serve(scheduler.health)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await scheduler.stop()
    await nc.close()  # not drain: it waits on pull inboxes nobody reads any more


if __name__ == "__main__":
    logs.setup("scheduler")
    try:
        eventloop.run(main())
    except ConfigError as exc:
        raise SystemExit(f"scheduler: {exc}") from None
