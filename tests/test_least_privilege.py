"""Per-service NATS users: each is refused outside its subjects, and each service works under its own.

A real nats-server runs with the authorization rendered by deploy/render.py from
deploy/nats/permissions.toml; every connection below logs in as the user the
service gets under ``make up``.
"""

from __future__ import annotations

import asyncio
import importlib.util
import stat
import sys
import typing
from pathlib import Path

import msgspec
import nats
import nats.errors
import pytest

from schemas import subjects
from schemas.commands import AnyCommand, NewPromise
from schemas.events import PromiseEvent
from services.executor.respond.history import read_chat
from services.executor.worker import Executor
from services.ingest.service import Ingest
from services.notifier.service import Notifier
from services.scheduler.service import Scheduler
from tests.chat.conftest import ALICE, CONFIG, answer, settle
from tests.chat.fake_telegram import FakeTelegram
from valor import bus
from valor.client import ValorClient
from valor.config import Approval
from valor.natsserver import Node, free_port, node_config

ROOT = Path(__file__).resolve().parent.parent
SERVICE_USERS = ("scheduler", "executor", "ingest", "notifier", "cli", "admin")


def _load_render():
    spec = importlib.util.spec_from_file_location("deploy_render_lp", ROOT / "deploy" / "render.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


render = _load_render()


class Secured:
    """One JetStream node with the shipped users; connections record what the server refused."""

    def __init__(self, var: Path) -> None:
        self.var = var
        self.auth = render.render_auth(var)
        conf = var / "nats" / "node.conf"
        (var / "nats" / "n1").mkdir(parents=True, exist_ok=True)
        conf.write_text(node_config("n1", free_port(), var / "nats" / "n1") + 'include "auth.conf"\n')
        self.node = Node("n1", int(conf.read_text().split("port: ")[1].split()[0]), conf, var / "nats" / "n1.log")
        self.errors: dict[str, list[str]] = {}
        self.conns: list = []

    def password(self, user: str) -> str:
        return render.password_file(self.var / "secrets", user).read_text().strip()

    async def connect(self, user: str, password: str | None = None):
        errors = self.errors.setdefault(user, [])

        async def on_error(exc: Exception) -> None:
            errors.append(str(exc))

        nc = await bus.connect(self.node.url, name=f"lp-{user}", user=user,
                               password=self.password(user) if password is None else password,
                               error_cb=on_error, max_reconnect_attempts=0, allow_reconnect=False)
        self.conns.append(nc)
        return nc

    def violations(self) -> list[str]:
        return [e for errs in self.errors.values() for e in errs if "permissions violation" in e.lower()]

    async def close(self) -> None:
        for nc in self.conns:
            if not nc.is_closed:
                await nc.close()
        self.node.stop()


@pytest.fixture
async def secured(tmp_path):
    s = Secured(tmp_path / "var")
    s.node.start()
    admin = await s.connect("admin")
    await bus.ensure_streams(admin.jetstream(), 1)
    yield s
    await s.close()


async def stored(nc, stream: str) -> int:
    return (await nc.jetstream().stream_info(stream)).state.messages


# --- the rendered files ----------------------------------------------------------


def test_passwords_and_auth_conf_are_private_and_stable(tmp_path):
    var = tmp_path / "var"
    first = render.render_auth(var)
    secrets_dir = var / "secrets"
    assert stat.S_IMODE(secrets_dir.stat().st_mode) == 0o700
    for user in SERVICE_USERS:
        path = render.password_file(secrets_dir, user)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        assert len(path.read_text().strip()) >= 32
    assert stat.S_IMODE(first.stat().st_mode) == 0o600
    before = {u: render.password_file(secrets_dir, u).read_text() for u in SERVICE_USERS}
    render.render_auth(var)  # a second make up keeps the passwords
    assert before == {u: render.password_file(secrets_dir, u).read_text() for u in SERVICE_USERS}


def test_every_service_has_a_user_and_no_service_may_write_what_another_owns():
    perms = render.load_permissions()
    assert set(perms) == set(SERVICE_USERS)
    owners = {
        "promise.*.created": {"scheduler"}, "promise.*.dispatched": {"scheduler"},
        "promise.*.started": {"executor"}, "promise.*.succeeded": {"executor"},
        "promise.*.notified": {"notifier"}, "chat.*.in": {"ingest"}, "work.*": {"scheduler"},
        "promise.*.instructions_added": {"scheduler"}, "promise.*.instructions_delivered": {"executor"},
        "promise.*.schedule_created": {"scheduler"}, "promise.*.ticks_skipped": {"scheduler"},
        "promise.*.attempt_stopped": {"executor"},
    }
    for subject, who in owners.items():
        assert {u for u, p in perms.items() if subject in p["publish"] and u != "admin"} == who, subject
    for user, p in perms.items():
        if user != "admin":
            assert ">" not in p["publish"] and "$JS.API.>" not in p["publish"], user
            assert not any(s.startswith(("$JS.API.STREAM.DELETE", "$JS.API.STREAM.PURGE")) for s in p["publish"])


def _matches(pattern: str, subject: str) -> bool:
    """NATS subject matching: ``*`` one token, ``>`` the rest."""
    p, s = pattern.split("."), subject.split(".")
    for i, token in enumerate(p):
        if token == ">":
            return len(s) > i
        if i >= len(s) or token not in ("*", s[i]):
            return False
    return len(p) == len(s)


def test_every_event_type_has_a_service_allowed_to_record_it():
    """An event type no service may publish is refused at run time only, under make up
    (schedules and attempt_stopped were, with every test on an open server passing)."""
    perms = render.load_permissions()
    for event in typing.get_args(PromiseEvent):
        subject = f"promise.1.{event.__struct_config__.tag}"
        writers = {u for u, p in perms.items() if u not in ("admin", "cli")
                   and any(_matches(pattern, subject) for pattern in p["publish"])}
        assert writers, f"no service may publish {subject}"


def test_the_supervisor_gives_each_service_its_user_and_password_file_not_the_password(tmp_path):
    root, var = tmp_path / "checkout", tmp_path / "checkout" / "var"
    for name in ("scheduler", "executor", "ingest", "notifier"):
        (root / "services" / name).mkdir(parents=True)
        (root / "services" / name / "__main__.py").write_text("")
    render.render_auth(var)
    text = render.render_supervisord(root, var, root / ".venv", render.Ports.from_bases(4222, 6222, 8222)).read_text()
    for name in ("scheduler", "executor", "ingest", "notifier"):
        assert f'VALOR_NATS_USER="{name}",VALOR_NATS_PASSWORD_FILE="{var}/secrets/nats-{name}.password"' in text
        assert render.password_file(var / "secrets", name).read_text().strip() not in text


def test_credentials_come_from_env_a_password_file_or_the_cli_secret(tmp_path):
    secret = tmp_path / "pw"
    secret.write_text("s3cret-value\n")
    assert bus.credentials({"VALOR_NATS_USER": "executor", "VALOR_NATS_PASSWORD": "p"}) == {
        "user": "executor", "password": "p"}
    assert bus.credentials({"VALOR_NATS_USER": "executor", "VALOR_NATS_PASSWORD_FILE": str(secret)}) == {
        "user": "executor", "password": "s3cret-value"}
    assert bus.credentials({"VALOR_SECRETS": str(tmp_path / "none")}) == {}
    (tmp_path / "nats-cli.password").write_text("cli-pw\n")
    assert bus.credentials({"VALOR_SECRETS": str(tmp_path)}) == {"user": "cli", "password": "cli-pw"}


# --- refused outside its subjects ----------------------------------------------------

DENIED_PUBLISH = [
    ("executor", "promise.1.created"),
    ("executor", "promise.1.cancelled"),
    ("executor", "promise.1.notified"),
    ("executor", "promise.1.instructions_added"),
    ("executor", "cmd.submit"),
    ("executor", "chat.1.in"),
    ("executor", "work.default"),
    ("executor", "$KV.valor_scheduler.leader"),
    ("ingest", "cmd.submit"),
    ("ingest", "promise.1.created"),
    ("ingest", "work.default"),
    ("notifier", "promise.1.succeeded"),
    ("notifier", "chat.1.in"),
    ("notifier", "cmd.cancel"),
    ("scheduler", "promise.1.succeeded"),
    ("scheduler", "promise.1.started"),
    ("scheduler", "promise.1.instructions_delivered"),
    ("scheduler", "chat.1.in"),
    ("cli", "promise.1.created"),
    ("cli", "promise.1.cancelled"),
    ("cli", "chat.1.in"),
    ("cli", "work.default"),
    ("ingest", "valor.read.promises"),
    ("notifier", "valor.read.chat"),
    ("executor", "valor.read.promises"),
]


@pytest.mark.parametrize("user, subject", DENIED_PUBLISH, ids=[f"{u}->{s}" for u, s in DENIED_PUBLISH])
async def test_a_service_is_refused_when_it_publishes_outside_its_subjects(secured, user, subject):
    nc = await secured.connect(user)
    with pytest.raises((nats.errors.TimeoutError, nats.errors.NoRespondersError)):
        await nc.jetstream().publish(subject, b'{"type":"created","id":1,"title":"forged"}', timeout=1.0)
    assert f'nats: permissions violation for publish to "{subject.lower()}"' in secured.errors[user]
    admin = await secured.connect("admin")
    for stream in (subjects.PROMISES, subjects.CHAT, subjects.COMMANDS, subjects.WORK):
        assert await stored(admin, stream) == 0


@pytest.mark.parametrize("user, api", [
    ("executor", "$JS.API.STREAM.DELETE.PROMISES"),
    ("scheduler", "$JS.API.STREAM.PURGE.PROMISES"),
    ("cli", "$JS.API.STREAM.DELETE.PROMISES"),
    ("ingest", "$JS.API.STREAM.CREATE.PROMISES2"),
    ("notifier", "$JS.API.CONSUMER.DELETE.WORK.exec-default"),
])
async def test_no_service_may_delete_or_rewrite_the_log(secured, user, api):
    nc = await secured.connect(user)
    with pytest.raises((nats.errors.TimeoutError, nats.errors.NoRespondersError)):
        await nc.request(api, b"{}", timeout=1.0)
    assert f'nats: permissions violation for publish to "{api.lower()}"' in secured.errors[user]


@pytest.mark.parametrize("user, subject", [("ingest", "promise.>"), ("notifier", "chat.*.in"), ("executor", "cmd.*"),
                                           ("cli", "valor.read.*"), ("executor", "valor.read.*")])
async def test_a_service_may_not_listen_outside_its_subjects(secured, user, subject):
    nc = await secured.connect(user)
    await nc.subscribe(subject)
    await nc.flush()
    await asyncio.sleep(0.2)
    assert f'nats: permissions violation for subscription to "{subject}"' in secured.errors[user]


async def test_a_wrong_password_or_no_user_is_refused(secured):
    with pytest.raises(nats.errors.Error, match="Authorization Violation"):
        await nats.connect(secured.node.url, user="executor", password="guess",
                           max_reconnect_attempts=0, allow_reconnect=False, connect_timeout=2)
    with pytest.raises(nats.errors.Error, match="Authorization Violation"):
        await nats.connect(secured.node.url, max_reconnect_attempts=0, allow_reconnect=False, connect_timeout=2)


async def test_what_a_service_may_publish_is_stored(secured):
    executor = await secured.connect("executor")
    ack = await bus.publish_event(executor.jetstream(), _started(7), "7:started:1:1")
    assert ack.stream == subjects.PROMISES
    ingest = await secured.connect("ingest")
    ack = await ingest.jetstream().publish(subjects.chat_in(5), b'{"type":"message.received","chat_id":5,"message_id":1}')
    assert ack.stream == subjects.CHAT
    assert secured.violations() == []


async def test_ingest_may_ask_for_the_quorum_and_tell_the_console_its_line_is_held(secured):
    """What a store refused for lack of a quorum needs (decision 77): ``$JS.API.INFO``, and the console
    chat told on ``console.<chat>.out``, which the console (the cli user) reads."""
    from services.ingest.console import ConsoleNotices

    ingest = await secured.connect("ingest")
    console = await secured.connect("cli")
    sub = await console.subscribe("console.5.out")
    await console.flush()
    await bus.check_quorum(ingest)  # one node with JetStream: a quorum, so no NoQuorum
    await ConsoleNotices(ingest).send(5, "held", reply_to=1)
    assert b'"text": "held"' in (await sub.next_msg(timeout=2)).data
    assert secured.violations() == []


async def test_the_cli_may_send_every_command_there_is(secured):
    """A command the CLI's user may not publish times out in the CLI as "no answer from the scheduler"
    (valor schedule add did, under make up): each command type the client has must be stored."""
    cli = (await secured.connect("cli")).jetstream()
    for command in typing.get_args(AnyCommand):
        ack = await cli.publish(subjects.command(command.__struct_config__.tag), b"{}", timeout=2.0)
        assert ack.stream == subjects.COMMANDS
    assert secured.violations() == []


def _started(promise_id: int):
    from schemas.events import Started
    return Started(id=promise_id, attempt=1, executor="e")


# --- the normal path under least privilege -----------------------------------------------


async def test_every_service_works_under_its_own_user(secured):
    """Scheduler, executor, ingest and notifier as their users; a CLI submit and a chat message go through."""
    world = FakeTelegram()
    world.user(ALICE, "alice", "Alice")
    scheduler = Scheduler(await secured.connect("scheduler"), config=CONFIG)
    executor = Executor(await secured.connect("executor"), ["default", "respond"], slots=4,
                        handlers={"respond": answer}, executor_id="lp-exec", ack_wait=5)
    ingest = Ingest(await secured.connect("ingest"), world.inbound(), CONFIG)
    notifier = Notifier(await secured.connect("notifier"), world.transport(), CONFIG)
    client = ValorClient(await secured.connect("cli"))
    await executor.start()
    await scheduler.start()
    await ingest.start(reconcile_forever=False)
    await notifier.start()
    try:
        ids = await client.submit(NewPromise(title="under least privilege", type="echo", input="hi"))
        assert await client.wait([ids["0"]], timeout=20) == {ids["0"]: "succeeded"}
        for waited in ([ids["0"]], list(range(1, 100))):  # `valor wait`'s consumers: by id, and by wildcard
            endings = await client._endings(waited, _ignore)
            assert endings is not None, "the cli user may not follow endings"
            await endings.unsubscribe()
        state, _ = await client.promise(ids["0"])
        assert state.state == "succeeded"
        assert client.reads == {"served": client.reads["served"]} and client.reads["served"] > 0
        await world.says(ALICE, ALICE, "/do it under least privilege")
        await settle(client, notifier, expect_respond=1)
        assert any(s.text.startswith("On it.") for s in world.sent)
        # respond's read of the chat (/status, the agent's context), served by the scheduler
        view = await read_chat(await secured.connect("executor"), ALICE, history=5)
        assert [p.spec.task for p in view.work()] == ["echo"] and view.work_total == 1
        assert [m.text for m in view.messages] == ["/do it under least privilege"]
        with pytest.raises(Exception):  # noqa: B017 - the CLI may read and request, never record a fact
            await client.js.publish("promise.99.succeeded", b"{}", timeout=1.0)
        assert [v for v in secured.violations() if "promise.99.succeeded" not in v] == []
    finally:
        await notifier.stop()
        await ingest.stop()
        await scheduler.stop()
        await executor.stop(grace=1)


async def test_the_scheduler_stores_and_loads_its_snapshot_under_its_own_user(secured):
    scheduler = Scheduler(await secured.connect("scheduler"), config=CONFIG, snapshot_every=0)
    client = ValorClient(await secured.connect("cli"))
    await scheduler.start()
    try:
        ids = await client.submit(NewPromise(title="kept in the snapshot"))
        await _until(lambda: _at_least(scheduler.state.last_seq, 1), "the created event folded")
        await scheduler.snapshots.store(scheduler.state)
        await scheduler.snapshots.store(scheduler.state)  # replacing it needs no purge
    finally:
        await scheduler.stop()
    again = Scheduler(await secured.connect("scheduler"), config=CONFIG, snapshot_every=0)
    await again.start()
    try:
        assert again.snapshots.seq == scheduler.state.last_seq and ids["0"] in again.state.promises
    finally:
        await again.stop()
    assert secured.violations() == []


async def test_a_plan_awaiting_approval_is_approved_and_rejected_from_the_cli_under_its_own_users(secured):
    config = msgspec.structs.replace(CONFIG, approval=Approval(types=["echo"]))
    world = FakeTelegram()
    world.user(ALICE, "alice", "Alice")
    scheduler = Scheduler(await secured.connect("scheduler"), config=config)
    executor = Executor(await secured.connect("executor"), ["default", "respond"], slots=4,
                        handlers={"respond": answer}, executor_id="lp-exec", ack_wait=5)
    ingest = Ingest(await secured.connect("ingest"), world.inbound(), config)
    client = ValorClient(await secured.connect("cli"))
    await executor.start()
    await scheduler.start()
    await ingest.start(reconcile_forever=False)
    try:
        plans = []
        for text in ("/do run me", "/do refuse me"):
            await world.says(ALICE, ALICE, text)
            await _until(lambda: _held(client, len(plans) + 1), "a plan awaiting approval")
            plans.append(max(p.id for p in (await client.projection()).promises.values()))
        await client.approve(plans[0], "approved by the operator")
        await client.reject(plans[1], "plan rejected by the operator")
        await _until(lambda: _terminal(client, plans[0]), "the approved plan")
        await _until(lambda: _terminal(client, plans[1]), "the rejected plan")
        assert [(await client.promise(pid))[0].state for pid in plans] == ["succeeded", "cancelled"]
        assert secured.violations() == []
    finally:
        await ingest.stop()
        await scheduler.stop()
        await executor.stop(grace=1)


async def _ignore(msg) -> None:
    pass


async def _held(client: ValorClient, n: int) -> bool:
    return sum(p.state == "awaiting_approval" for p in (await client.projection()).promises.values()) >= n


async def _at_least(value: int, floor: int) -> bool:
    return value >= floor


async def _terminal(client: ValorClient, promise_id: int) -> bool:
    state, _ = await client.promise(promise_id)
    return state is not None and state.terminal


async def _until(check, what: str, timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)

