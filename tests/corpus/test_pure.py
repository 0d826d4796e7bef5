"""The corpus cases that need no NATS: valor.toml, plans, shell argv, Telegram accept rules."""

from __future__ import annotations

import msgspec
import pytest
from telethon import types

from promises.projection import Projection
from schemas.commands import NewPromise
from schemas.events import Cancelled, Created, Dispatched, Failed, Started, Succeeded, encode
from services.executor.context import TaskFailed
from services.executor.shell import check_argv
from services.ingest.accept import MAX_EVENT_BYTES, Rules, accept
from services.scheduler import intake
from tests.chat.fake_telegram import FakeTelegram
from valor.config import DEFAULT_SHELL_ALLOW, ConfigError, parse

from .cases import ARGV, CONFIG, OVERSIZED_TELEGRAM, PLANS, TELEGRAM

ALICE, STRANGER, GROUP = 501, 666, -900
RULES_TOML = f"[telegram]\nallow_users = [{ALICE}]\nallow_chats = [{GROUP}]\n"


def ids(table):
    return [row[0] for row in table]


# --- valor.toml ----------------------------------------------------------------------------


@pytest.mark.parametrize("case, text, error", CONFIG, ids=ids(CONFIG))
def test_malformed_valor_toml_is_refused_naming_the_key(case, text, error):
    if error is None:
        assert parse(text).types["echo"].handler == "echo"
        return
    with pytest.raises(ConfigError) as refused:
        parse(text)
    assert str(refused.value).startswith(error), str(refused.value)


# --- plans ------------------------------------------------------------------------------------


def existing() -> Projection:
    """#1 succeeded, #2 failed, #3 cancelled, #4 running."""
    state = Projection()
    events = [Created(id=i, title=f"p{i}", task="noop") for i in (1, 2, 3, 4)] + [
        Dispatched(id=1, attempt=1), Started(id=1, attempt=1), Succeeded(id=1, attempt=1),
        Failed(id=2, reason="boom"), Cancelled(id=3, reason="stop"),
        Dispatched(id=4, attempt=1), Started(id=4, attempt=1),
    ]
    for seq, event in enumerate(events, 1):
        state.apply(event, seq)
    return state


@pytest.mark.parametrize("case, tasks, error", PLANS, ids=ids(PLANS))
def test_bad_plans_are_refused_with_a_sentence_and_create_nothing(case, tasks, error):
    from schemas.commands import Submit

    cmd = Submit(request_id=f"corpus-{case}", tasks=[msgspec.convert(t, NewPromise) for t in tasks])
    effects, reply = intake.submit(existing(), cmd, now=1000.0)
    if error is None:
        assert reply.ok, reply.error
        assert len(effects) == len(tasks)
        assert all(len(encode(e.event)) < 64 * 1024 for e in effects)
    else:
        assert not reply.ok
        assert reply.error.startswith(error), reply.error
        assert effects == []


# --- shell argv -------------------------------------------------------------------------------


@pytest.mark.parametrize("case, spec, error", ARGV, ids=ids(ARGV))
def test_shell_input_is_an_allowlisted_argv_never_a_shell_string(case, spec, error):
    allow = frozenset(DEFAULT_SHELL_ALLOW)
    if error is None:
        argv, cwd = check_argv(spec, allow)
        assert argv == spec["argv"] and cwd == spec.get("cwd")
        return
    with pytest.raises(TaskFailed) as refused:
        check_argv(spec, allow)
    assert refused.value.error.startswith(error), refused.value.error
    assert refused.value.retryable is False


# --- Telegram messages --------------------------------------------------------------------------

MEDIA = {
    "photo": lambda: types.MessageMediaPhoto(),
    "document": lambda: types.MessageMediaDocument(),
    "geo": lambda: types.MessageMediaGeo(geo=types.GeoPointEmpty()),
    "contact": lambda: types.MessageMediaContact(phone_number="", first_name="A", last_name="", vcard="", user_id=1),
    "dice": lambda: types.MessageMediaDice(value=3, emoticon="🎲"),
    "unsupported": lambda: types.MessageMediaUnsupported(),
}


def telegram_world() -> FakeTelegram:
    world = FakeTelegram()
    world.user(ALICE, "alice", "Alice")
    world.user(STRANGER, "mallory", "Mallory")
    world.group(-GROUP)
    return world


def say(world: FakeTelegram, who: str, text: str, media: str | None):
    chat, sender = {"alice": (ALICE, ALICE), "stranger": (STRANGER, STRANGER),
                    "group": (GROUP, ALICE), "group-mention": (GROUP, ALICE)}[who]
    message, _ = world.say(chat, sender, text, media=MEDIA[media]() if media else None)
    return message


@pytest.mark.parametrize("case, who, text, media, expected", TELEGRAM, ids=ids(TELEGRAM))
def test_odd_telegram_messages_are_accepted_intact_or_refused_with_a_reason(case, who, text, media, expected):
    world = telegram_world()
    verdict = accept(say(world, who, text, media), world.me, Rules.from_config(parse(RULES_TOML)))
    kind, detail = expected
    if kind == "refused":
        assert verdict == detail
    else:
        assert not isinstance(verdict, str), verdict
        assert verdict.text == detail
        assert len(encode(verdict)) <= MAX_EVENT_BYTES


@pytest.mark.parametrize("case, text", OVERSIZED_TELEGRAM, ids=ids(OVERSIZED_TELEGRAM))
def test_a_message_too_big_for_nats_is_cut_and_says_so(case, text):
    world = telegram_world()
    verdict = accept(say(world, "alice", text, None), world.me, Rules.from_config(parse(RULES_TOML)))
    assert len(encode(verdict)) <= MAX_EVENT_BYTES
    assert verdict.text.endswith(f"\n[cut: the message had {len(text)} characters]")
    assert text.startswith(verdict.text.split("\n[cut:")[0])
