"""``python -m services.executor [--queues default,respond] --slots respond=2,default=4 [--id ID]``

``--slots`` (``slots.py``): a number shared by all the queues served, or slots
of a queue's own (``respond=2,default=4``), or both (``respond=2,4``: the
queues not named share four).  Without ``--queues``, the queues named are
served (``default`` for a plain number).

Connects with ``VALOR_NATS_URL``, declares the streams, runs until SIGTERM or
SIGINT, then stops gracefully (running attempts get a grace period).
"""

from __future__ import annotations

import asyncio
import signal

import click
import msgspec

from valor import bus, eventloop, logs, metrics
from valor.config import ConfigError, load

from . import config
from . import logs as executor_logs
from .handlers import handlers_for
from .slots import SlotsError, pools_for, sharing
from .worker import Executor


async def serve(queues: list[str] | None, slots: str, executor_id: str | None, grace: float) -> None:
    settings = load()  # valor.toml: refuse to start on a bad file, naming the key
    nc = await bus.connect(name=f"executor-{executor_id or 'anon'}")
    try:
        await bus.ensure_streams(nc.jetstream())
        executor = Executor(nc, queues, slots, handlers=handlers_for(settings, nc), executor_id=executor_id)
        _warn_if_replies_share(executor, settings.types["respond"].queue if "respond" in settings.types else None)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await executor.start()
        metrics.serve(lambda: {"ok": nc.is_connected, "executor": executor.id, "busy": executor.busy,
                               "slots": executor.slots, "pools": [msgspec.to_builtins(p) for p in executor.pools()]})
        await stop.wait()
        await executor.stop(grace=grace)
    finally:
        await nc.close()


def _warn_if_replies_share(executor: Executor, queue: str | None) -> None:
    """Background work in the same pool can hold every slot the agent's answers need (decision 41)."""
    if queue and (others := sharing(executor.pools(), queue)):
        executor_logs.warning("executor.replies_share_slots", queue=queue, shared_with=list(others),
                              hint=f"give {queue} slots of its own, e.g. --slots {queue}=2,<n>")


@click.command()
@click.option("--queues", default=None, help="comma-separated queues to serve [default: those --slots names, "
              "else default]")
@click.option("--slots", default="4", show_default=True,
              help="attempts run at once: N shared by all queues, or per queue (respond=2,code=2,default=4; "
                   "respond=2,4: the others share 4)")
@click.option("--id", "executor_id", default=None, help="executor id (letters, digits, '-', '_')")
@click.option("--grace", default=config.STOP_GRACE, show_default=True, help="seconds running attempts get on stop")
def main(queues: str | None, slots: str, executor_id: str | None, grace: float) -> None:
    logs.setup("executor")
    names = [q.strip() for q in queues.split(",") if q.strip()] if queues is not None else None
    bad = [n for n in (names or []) + ([executor_id] if executor_id else []) if not config.is_token(n)]
    if names == [] or bad:
        raise click.BadParameter(f"queues and id must be letters, digits, '-' or '_': {', '.join(bad) or 'none given'}")
    try:
        pools_for(slots, names)
    except SlotsError as exc:
        raise click.BadParameter(str(exc), param_hint="--slots") from None
    try:
        eventloop.run(serve(names, slots, executor_id, grace))
    except ConfigError as exc:
        raise SystemExit(f"executor: {exc}") from None


if __name__ == "__main__":
    main()
