"""The ``valor`` command: submit and inspect promises, check the cluster.

Each command is one ``asyncio.run`` around one NATS connection.  Exit codes:
0 done, 1 refused / failed / not found, 2 bad usage or ``wait`` timed out,
3 NATS or the scheduler could not be reached.  Errors are one line on stderr.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import importlib.util
import json
import os
import re
import signal
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from types import ModuleType
from typing import Any, NoReturn, TypeVar

import click
import nats.errors
from nats.js.errors import NotFoundError

from promises.projection import Projection
from promises.states import PUBLIC_ORDER, State
from schemas import subjects
from schemas.commands import NewPromise
from schemas.events import PromiseEvent
from valor import bus, context, recurrence
from valor.client import TERMINAL_STATES, CommandRefused, ValorClient
from valor.planfile import PlanFileError, read_plan
from valor.readmodel import PromiseQuery, PromisesQuery


def _on_first_use(name: str) -> ModuleType:
    """A module loaded when first used (importlib's LazyLoader): every `valor plan` and `valor wait`
    is a process of its own, and what only listing and reporting commands use need not load in it."""
    spec = importlib.util.find_spec(name)
    spec.loader = importlib.util.LazyLoader(spec.loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


render = _on_first_use("valor.render")
spend = _on_first_use("valor.spend")

T = TypeVar("T")

CONNECT_TIMEOUT = 2.0
# How long `submit` and `plan` wait for the scheduler's answer: a failover takes seconds (decision 65),
# so they wait well past it, storing the same request again every ASK_AGAIN seconds.
REPLY_TIMEOUT = 60.0
ASK_AGAIN = 10.0
# What an idempotency key may hold: it becomes a request id, a message-id header on COMMANDS.
IDEMPOTENCY_KEY = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")
STATES = tuple(s.value for s in PUBLIC_ORDER)


class Unreachable(Exception):
    """NATS, a stream or the scheduler is not there: exit 3."""


def fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"valor: {message}", err=True)
    sys.exit(code)


# --- running a command against NATS ----------------------------------------------------


def _refused(url: str, found: bus.Login | None) -> str:
    if found is None:
        return (f"NATS at {url} refused an anonymous client: authorization violation; no credentials found "
                f"(no context at {context.context_path()}): run `make up`, or set VALOR_NATS_USER and "
                "VALOR_NATS_PASSWORD_FILE")
    return (f"NATS refused user '{found.user}': authorization violation (at {url}, password from {found.origin}); "
            "run `make up` in the checkout that started the cluster to record its credentials again, or set "
            "VALOR_NATS_USER and VALOR_NATS_PASSWORD_FILE")


def _unreachable(url: str, reason: str) -> str:
    recorded = None if os.environ.get("VALOR_NATS_URL") else context.read()
    if recorded is not None and recorded.url == url:
        return (f"cannot reach NATS at {url} ({reason}): the cluster `make up` started in {recorded.root or '?'} "
                f"is down (recorded in {recorded.path}); start it with `make up` there")
    return (f"cannot reach NATS at {url} ({reason}); start the local cluster with `make up` "
            "or point VALOR_NATS_URL at a running one")


async def _connect(url: str):
    servers = [s for s in url.split(",") if s.strip()]
    found = bus.login()
    errors: list[str] = []

    async def record(exc: Exception) -> None:
        """nats-py reports every failed attempt through this; the CLI reports once, itself."""
        errors.append(str(exc))

    try:
        return await asyncio.wait_for(
            bus.connect(url, name="valor-cli", max_reconnect_attempts=1, reconnect_time_wait=0.1,
                        connect_timeout=CONNECT_TIMEOUT, error_cb=record,
                        **({"user": found.user, "password": found.password} if found else {})),
            timeout=CONNECT_TIMEOUT * len(servers) + 1,
        )
    except (TimeoutError, OSError, nats.errors.Error) as exc:
        # nats-py ends with NoServersError whatever happened; the server's refusal is in the attempts.
        if any("authorization violation" in e.lower() for e in errors):
            raise Unreachable(_refused(url, found)) from None
        raise Unreachable(_unreachable(url, str(exc) or type(exc).__name__)) from None


async def _session(body: Callable[[ValorClient], Awaitable[T]]) -> T:
    url = bus.nats_url()
    nc = await _connect(url)
    try:
        return await body(ValorClient(nc, by="cli"))
    except NotFoundError as exc:
        raise Unreachable(f"NATS at {url} has no Valor streams yet ({exc.description or exc}); "
                          "start Valor with `make up`") from None
    except nats.errors.NoRespondersError:
        raise Unreachable(f"NATS at {url} has no Valor streams (or no JetStream); start Valor with `make up`") from None
    except (nats.errors.ConnectionClosedError, nats.errors.UnexpectedEOF, nats.errors.StaleConnectionError):
        raise Unreachable(f"lost the connection to NATS at {url}") from None
    except TimeoutError:  # nats.errors.TimeoutError included
        with contextlib.suppress(TimeoutError, nats.errors.Error):
            await bus.check_quorum(nc)
        raise Unreachable(f"NATS at {url} did not answer in time (a stream may be electing a leader; "
                          "try again, or see `valor status`)") from None
    except nats.errors.Error as exc:
        raise Unreachable(f"NATS at {url} refused: {exc}") from None
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(nc.close(), timeout=2)


def run(body: Callable[[ValorClient], Awaitable[T]]) -> T:
    try:
        return asyncio.run(_session(body))
    except (Unreachable, context.ContextError) as exc:
        fail(str(exc), 3)
    except CommandRefused as exc:
        fail(str(exc), 1)
    except bus.NoQuorum as exc:
        fail(f"{exc}; writes are refused until a node returns, and nothing acknowledged is lost "
             "(start the stopped nodes; see `valor status`)", 3)


async def ask(request: Awaitable[T], key: str | None = None) -> T:
    """A command's answer, or exit 3 when no scheduler answered in time."""
    try:
        return await request
    except (TimeoutError, nats.errors.TimeoutError):
        again = (f"; running it again with --idempotency-key {key} creates it once" if key else "")
        raise Unreachable(f"no answer from the scheduler within {REPLY_TIMEOUT:g}s; the request is stored and "
                          f"runs when a scheduler is active (see `valor status`){again}") from None


def request_id_for(key: str | None) -> str:
    """The request id of `submit` and `plan`: from the idempotency key, so a retried invocation is
    answered with the promises the first created (intake dedupes request ids, decision 66); else fresh."""
    return f"key:{key}" if key is not None else uuid.uuid4().hex


def check_key(_ctx, _param, value: str | None) -> str | None:
    if value is not None and not IDEMPOTENCY_KEY.fullmatch(value):
        raise click.BadParameter("1 to 128 letters, digits or . _ : @ / + = -")
    return value


def submit_plan(client: ValorClient, tasks: list[NewPromise], key: str | None) -> Awaitable[dict[str, int]]:
    def still_waiting() -> None:
        click.echo(f"valor: no answer from the scheduler after {ASK_AGAIN:g}s (a failover?); the request is stored, "
                   f"still waiting up to {REPLY_TIMEOUT:g}s", err=True)

    return ask(client.submit(*tasks, timeout=REPLY_TIMEOUT, request_id=request_id_for(key), ask_again=ASK_AGAIN,
                             still_waiting=still_waiting), key)


idempotency_key = click.option(
    "--idempotency-key", "key_", callback=check_key, metavar="KEY",
    help="name this request: running the command again with the same KEY creates nothing new and prints "
         "the same ids (letters, digits, . _ : @ / + = -)")


async def read_log(client: ValorClient) -> tuple[Projection, list[tuple[int, PromiseEvent]]]:
    events = await client.events()
    state = Projection()
    for seq, event in events:
        state.apply(event, seq)
    return state, events


def emit_json(obj: Any) -> None:
    click.echo(render.to_json(obj))


# --- commands ---------------------------------------------------------------------------


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Valor: promises on NATS JetStream.

    It talks to the cluster the last `make up` recorded (~/.config/valor/context.json, or
    $VALOR_CONTEXT), from any directory; VALOR_NATS_URL picks another.
    """


def parse_input(_ctx, _param, value: str | None) -> Any:
    if value is None:
        return None
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not valid JSON ({exc}): {value}") from None


@main.command()
@click.option("--type", "type_", default="noop", show_default=True, help="task type: noop, echo, sleep, fail, shell, ...")
@click.option("--input", "input_", callback=parse_input, help="the task's input, as JSON")
@click.option("--after", type=int, multiple=True, help="an existing promise id to wait for (repeatable)")
@click.option("--priority", type=click.IntRange(1, 9), default=5, show_default=True, help="1 (highest) to 9")
@click.option("--queue", help="queue (default: the task type's)")
@click.option("--key", help="concurrency key")
@click.option("--key-limit", type=click.IntRange(min=1), default=1, show_default=True,
              help="attempts allowed to run at once under --key")
@click.option("--delay", type=click.FloatRange(min=0), help="seconds before it may start")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), help="seconds per attempt")
@click.option("--retries", type=click.IntRange(min=0), help="retries after the first attempt")
@click.option("--backoff", type=click.FloatRange(min=0), help="seconds before the first retry")
@click.option("--max-cost", type=click.FloatRange(min=0, min_open=True),
              help="USD one attempt may spend (default: the type's max_cost)")
@idempotency_key
@click.argument("title")
def submit(type_, input_, after, priority, queue, key, key_limit, delay, timeout, retries, backoff, max_cost, key_,
           title):
    """Create one promise; prints its id once it is stored."""
    optional = dict(queue=queue, key=key, delay=delay, timeout=timeout, retries=retries, backoff=backoff,
                    max_cost=max_cost)
    task = NewPromise(title=title, type=type_, input=input_, depends_on=list(after), priority=priority,
                      key_limit=key_limit, **{k: v for k, v in optional.items() if v is not None})
    ids = run(lambda c: submit_plan(c, [task], key_))
    click.echo(ids["0"])


@main.command(short_help="Create a plan's promises (JSON or TOML, - for stdin).")
@click.argument("file", type=click.File("r", encoding="utf-8"))
@idempotency_key
def plan(file, key_):
    """Create the promises of a plan file (JSON or TOML, `-` for stdin); prints NAME ID per task."""
    try:
        tasks = read_plan(file.read())
    except PlanFileError as exc:
        fail(str(exc), 2)
    ids = run(lambda c: submit_plan(c, tasks, key_))
    for task in tasks:
        click.echo(f"{task.name} {ids[task.name]}")


@main.command(short_help="Wait for promises: exit 0 succeeded, 1 failed, 2 timeout.")
@click.argument("ids", type=int, nargs=-1, required=True)
@click.option("--timeout", type=click.FloatRange(min=0), help="give up after this many seconds (exit 2)")
def wait(ids, timeout):
    """Wait until the promises end.

    Exit 0 when all succeeded; 1 as soon as one failed or was cancelled (or an id is unknown);
    2 when --timeout passed first, naming the open ones on stderr.
    """
    ids = list(dict.fromkeys(ids))

    def any_ended_badly(found) -> bool:
        return any(p.state in (State.FAILED, State.CANCELLED) for p in found.values())

    async def body(client: ValorClient):
        return await client.follow(ids, timeout, enough=any_ended_badly)

    states, timed_out = run(body)
    for pid, p in states.items():
        if p.state in TERMINAL_STATES:
            click.echo(f"#{pid} {p.state}" + (f": {p.error}" if p.state != State.SUCCEEDED and p.error else ""))
    still_open = [f"#{pid} {states[pid].state if pid in states else '(unread)'}" for pid in ids
                  if pid not in states or states[pid].state not in TERMINAL_STATES]
    if any(p.state in (State.FAILED, State.CANCELLED) for p in states.values()):
        if still_open:
            click.echo("still open: " + ", ".join(still_open), err=True)
        sys.exit(1)
    if timed_out:
        fail(f"timed out after {timeout:g}s; still open: " + ", ".join(still_open), 2)


@main.command(short_help="One promise: state, result, timeline, dependencies.")
@click.argument("promise_id", metavar="ID", type=int)
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def show(promise_id, as_json):
    """A promise's state, attempts, result, dependencies and event timeline."""

    async def body(client: ValorClient):
        state = await client.read_state(PromiseQuery(id=promise_id))  # it, its dependencies and dependents
        found = promise_id in state.promises
        return state, [e for _, e in await client.events(subjects.promise_all(promise_id))] if found else []

    state, own = run(body)
    p = state.promises.get(promise_id)
    if p is None:
        fail(f"no promise #{promise_id}")
    if as_json:
        emit_json(render.promise_json(p, state.dependents.get(promise_id, []), own))
    else:
        click.echo(render.show_text(p, own, state))


@main.command(name="list")
@click.option("--state", "state_filter", type=click.Choice(STATES), help="only promises in this state")
@click.option("--json", "as_json", is_flag=True, help="print JSON (the `show --json` objects without events)")
def list_(state_filter, as_json):
    """Every promise, oldest first."""
    state = run(lambda c: c.read_state(PromisesQuery(state=state_filter)))
    promises = [p for _, p in sorted(state.promises.items())]
    if as_json:
        emit_json([render.promise_json(p, state.dependents.get(p.id, [])) for p in promises])
    elif promises:
        click.echo(render.list_text(promises, time.time()))


@main.command(short_help="What work spent: today, this month, by type, top promises.")
@click.option("--chat", "chat_id", type=int, help="only this chat's promises")
@click.option("--since", help="from this day (YYYY-MM-DD, UTC) or this long ago (30m, 12h, 7d); default: this month")
@click.option("--json", "as_json", is_flag=True, help="print the totals by day, type, chat, user and plan as JSON")
def usage(chat_id, since, as_json):
    """Spend recorded on the attempts' end events, summed from the log (decision 47)."""
    now = time.time()
    start = None
    if since:
        start = parse_since(since, now)
        if start is None:
            fail(f"--since: '{since}' is neither a day (2026-05-01) nor a duration (30m, 12h, 7d)", 2)
    state, _ = run(read_log)
    charges = spend.charges(state.promises.values())
    if as_json:
        emit_json(spend.totals(charges, since=start, chat_id=chat_id).as_dict())
    else:
        click.echo(spend.report(charges, now, since=start, chat_id=chat_id))


def parse_since(text: str, now: float) -> float | None:
    try:
        return datetime.datetime.fromisoformat(text).replace(tzinfo=datetime.UTC).timestamp()
    except ValueError:
        pass
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd])", text.strip().lower())
    return None if match is None else now - float(match.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]


@main.command(short_help="Cancel a promise; its dependents end cancelled.")
@click.argument("promise_id", metavar="ID", type=int)
@click.option("--reason", default="", help="why (recorded in the event)")
def cancel(promise_id, reason):
    """Cancel a promise (a running attempt is stopped; dependents end cancelled)."""
    run(lambda c: ask(c.cancel(promise_id, reason)))
    click.echo(promise_id)


@main.command(short_help="Retry now, or re-run a failed promise as a new one.")
@click.argument("promise_id", metavar="ID", type=int)
def retry(promise_id):
    """Retry now; a failed or cancelled promise is re-run as a new promise, whose id is printed."""
    click.echo(run(lambda c: ask(c.retry(promise_id))))


@main.command(short_help="Let a plan that awaits approval run.")
@click.argument("promise_id", metavar="ID", type=int)
def approve(promise_id):
    """Approve the plan #ID belongs to (any of its steps, or the message that asked for it); prints its ids."""
    ids = run(lambda c: ask(c.approve(promise_id, "approved by the operator")))
    click.echo("\n".join(str(i) for i in sorted(ids.values())))


@main.command(short_help="Cancel a plan that awaits approval.")
@click.argument("promise_id", metavar="ID", type=int)
@click.option("--reason", default="", help="why (recorded with each step's cancel)")
def reject(promise_id, reason):
    """Reject the plan #ID belongs to: every step ends cancelled naming the refusal; prints their ids."""
    why = "plan rejected by the operator" + (f": {reason}" if reason else "")
    ids = run(lambda c: ask(c.reject(promise_id, why)))
    click.echo("\n".join(str(i) for i in sorted(ids.values())))


@main.command(short_help="Cluster, streams, executors, scheduler, promise counts.")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@click.option("--watch", is_flag=True, help="refresh until Ctrl-C (valor top)")
@click.option("--iterations", type=click.IntRange(min=1), hidden=True)
@click.pass_context
def status(ctx, as_json, watch, iterations):
    """Cluster, streams and consumers, executors, the active scheduler and promises by state.

    Exits 1 when some part did not answer (e.g. a stream electing a leader), 3 when NATS is unreachable.
    """
    if watch:
        return ctx.invoke(top, iterations=iterations)
    info = run(lambda c: c.status())
    if as_json:
        emit_json(info)
    else:
        click.echo(render.status_text(info))
    if info["errors"]:
        sys.exit(1)


@main.command(short_help="The status view, refreshed live until Ctrl-C.")
@click.option("--interval", type=click.FloatRange(min=0.1), default=1.0, show_default=True, help="seconds between refreshes")
@click.option("--iterations", type=click.IntRange(min=1), help="stop after this many refreshes")
def top(interval, iterations):
    """`valor status` plus the promises that moved last, redrawn every --interval seconds."""
    from valor import top as top_view

    def clock():
        now = time.time()
        return now, time.strftime("%H:%M:%S", time.localtime(now))

    tty = sys.stdout.isatty()
    try:
        run(lambda c: top_view.watch(c, click.echo, interval, iterations, tty, clock))
    except KeyboardInterrupt:
        pass


@main.command(short_help="Read-only web dashboard on localhost.")
@click.option("--host", default="127.0.0.1", show_default=True, help="address to bind (the page is read-only)")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True, help="0 picks a free port")
def web(host, port):
    """Serve the dashboard: promises, timelines, dependency graphs, executors, stream lag, live."""
    from valor.web.server import serve

    async def body(_client: ValorClient):
        # run() checked that NATS answers; the dashboard's own connection reconnects for as long as it runs.
        async def lost() -> None:
            if not nc.is_closed:
                click.echo("valor web: lost NATS; reconnecting", err=True)

        nc = await bus.connect(bus.nats_url(), name="valor-web", disconnected_cb=lost)
        loop = asyncio.get_running_loop()
        started, stop = loop.create_future(), asyncio.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        server = asyncio.ensure_future(serve(nc, host, port, started))
        try:
            await asyncio.wait([server, started], return_when=asyncio.FIRST_COMPLETED)
            if started.done():
                click.echo(f"valor web: http://{host}:{started.result()}/  (Ctrl-C stops)")
            stopping = asyncio.ensure_future(stop.wait())
            await asyncio.wait([server, stopping], return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            server.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await server
        finally:
            await nc.close()

    try:
        run(body)
    except OSError as exc:
        fail(f"cannot serve on {host}:{port} ({exc.strerror or exc})", 1)


@main.command(short_help="Rebuild the projection from the log, timed.")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def replay(as_json):
    """Rebuild the projection from the whole log and say how long it took."""

    async def body(client: ValorClient):
        start = time.perf_counter()
        state, events = await read_log(client)
        return {"events": len(events), "promises": len(state.promises), "ignored": state.ignored,
                "seconds": round(time.perf_counter() - start, 6), "last_seq": state.last_seq}

    out = run(body)
    if as_json:
        emit_json(out)
    else:
        click.echo(f"replayed {out['events']} events into {out['promises']} promises in {out['seconds']:.3f}s "
                   f"({out['ignored']} ignored, log at seq {out['last_seq']})")


@main.command(short_help="Copy the streams into a DuckDB file for SQL.")
@click.option("--db", default="var/analytics.duckdb", show_default=True, type=click.Path(dir_okay=False),
              help="the DuckDB file (derived from the log: delete it to rebuild)")
@click.option("--once", is_flag=True, help="sync once and exit (the default)")
@click.option("--every", type=click.FloatRange(min=0.1), metavar="S", help="sync every S seconds until Ctrl-C")
def analytics(db, once, every):
    """Copy new PROMISES, CHAT and DLQ messages into DuckDB tables and views (docs/analytics.md).

    The file is closed between syncs, so `duckdb -readonly FILE` reads it while this runs.
    """
    from valor import analytics as duck

    if once and every:
        fail("--once and --every exclude each other", 2)
    try:
        run(lambda c: duck.follow(c.nc, db, every, report=click.echo))
    except duck.Locked as exc:
        fail(str(exc), 1)
    except KeyboardInterrupt:
        pass


# --- status ------------------------------------------------------------------------------


# --- schedules (decision 51) ---------------------------------------------------------------


@main.group(short_help="Recurring promises: add, list, pause, resume, rm.")
def schedule() -> None:
    """Recurring promises: every tick creates one promise from the schedule's template."""


@schedule.command(name="add")
@click.argument("every", metavar="EVERY")
@click.argument("title")
@click.option("--type", "type_", default="noop", show_default=True, help="task type of every run")
@click.option("--input", "input_", callback=parse_input, help="each run's input, as JSON")
@click.option("--at", "at_", help="time of day for 1d or 1w<day> (HH:MM), e.g. `add 1d --at 09:00`")
@click.option("--tz", default="UTC", show_default=True, help="time zone the cron times are read in")
@click.option("--priority", type=click.IntRange(1, 9), default=5, show_default=True)
@click.option("--queue", help="queue (default: the task type's)")
@click.option("--max-cost", type=click.FloatRange(min=0, min_open=True), help="USD one run may spend")
@click.option("--missed", type=click.Choice(recurrence.MISSED), default="skip", show_default=True,
              help="ticks passed while Valor was down: skipped (told with the next run), or one run for them")
@click.option("--overlap", type=click.Choice(recurrence.OVERLAP), default="skip", show_default=True,
              help="a tick while the last run is still open: skipped, queued behind it, or run anyway")
def schedule_add(every, title, type_, input_, at_, tz, priority, queue, max_cost, missed, overlap):
    """Every EVERY (30m, 2h, 1d, weekdays, or a cron expression in quotes), run TITLE; prints its id."""
    words = every.split()
    if len(words) == 5:
        words = ["cron", *words]
    words += at_.split() if at_ else []
    try:
        rule, rest = recurrence.parse_every(words)
        recurrence.next_fire(0.0, anchor=0.0, tz=tz, **rule)
    except recurrence.RecurrenceError as exc:
        raise click.BadParameter(str(exc)) from None
    if rest:
        raise click.BadParameter(f"unexpected {' '.join(rest)!r} after the recurrence")
    task = NewPromise(title=title, type=type_, input=input_, priority=priority, queue=queue, max_cost=max_cost)
    click.echo(run(lambda c: ask(c.schedule(task, tz=tz, missed=missed, overlap=overlap, **rule))))


@schedule.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def schedule_list(as_json):
    """Every schedule that is not deleted: its recurrence, state, runs and next tick."""
    state, _ = run(read_log)
    rows = [render.schedule_json(s) for s in state.schedules.values() if not s.deleted]
    if as_json:
        emit_json(rows)
        return
    for row in rows:
        click.echo(render.schedule_line(row))
    if not rows:
        click.echo("no schedules")


def _change(verb: str):
    @click.argument("schedule_id", metavar="ID", type=int)
    def command(schedule_id):
        run(lambda c: ask(c.change_schedule(schedule_id, verb)))
        click.echo(schedule_id)
    return command


schedule.command(name="pause", short_help="Stop a schedule's ticks until resumed.")(_change("pause"))
schedule.command(name="resume", short_help="Tick again, from the next tick on.")(_change("resume"))
schedule.command(name="rm", short_help="Delete a schedule (its runs stay).")(_change("delete"))
