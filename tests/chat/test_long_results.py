"""A result too long for a few messages is one message: its beginning, and the whole as a document (decision 56)."""

import asyncio

import pytest

from services.notifier import texts
from valor.config import ConfigError, parse

from .conftest import ALICE, dies_before_recording, intents, notices, settle


@pytest.fixture
def people(world):
    world.user(ALICE, "alice", "Alice")
    return world


def replies_to(world, message_id):
    return [s for s in world.sent if s.chat_id == ALICE and s.reply_to == message_id]


def test_a_text_up_to_the_threshold_is_no_document():
    assert texts.document("x" * 12_288, 7, "terminal", 12_288) is None


def test_a_long_text_is_a_document_named_for_its_promise_with_its_beginning_as_caption():
    text = "✅ #7 build — done\n\n" + "".join(f"🙂 line {i}\n" for i in range(3000))
    doc = texts.document(text, 7, "terminal", 12_288)
    assert doc.name == "result-7.txt" and doc.data.decode() == text
    assert len(doc.caption.encode("utf-16-le")) // 2 <= texts.CAPTION  # emoji count twice on Telegram's side
    head = doc.caption.split("\n\n…")[0]
    assert text.startswith(head) and text[len(head)] == "\n" and len(head) > texts.CAPTION // 3  # cut at a line
    assert f"{len(text):,} characters" in doc.caption and "result-7.txt" in doc.caption
    assert texts.document(text, 7, "digest", 12_288).name == "digest-7.txt"
    assert texts.parts(text, doc) == [doc.caption] and texts.parts("short", None) == ["short"]


def test_a_threshold_below_one_message_is_refused():
    with pytest.raises(ConfigError, match="document_after_chars"):
        parse("[telegram]\ndocument_after_chars = 4000\n")


async def test_a_long_result_is_one_message_with_the_whole_result_attached(js, engine, people, services):
    start_ingest, start_notifier = services
    await start_ingest()
    notifier = await start_notifier()
    message = await people.says(ALICE, ALICE, "/huge")
    state, events = await settle(engine, notifier, expect_respond=1)
    promise = next(p for p in state.promises.values() if p.spec.message_id == message.id)
    [reply] = replies_to(people, message.id)
    name, data = reply.document
    assert name == f"result-{promise.id}.txt"
    whole = data.decode()
    assert "line 0: " in whole and "line 299: " in whole and len(whole) > 20_000
    assert whole.startswith(reply.text.split("\n\n…")[0]) and name in reply.text
    [intent] = intents(events)
    assert intent.parts == [texts.digest(reply.text)]  # the caption is what reconcile looks for


async def test_a_short_result_is_still_plain_text(js, engine, people, services):
    start_ingest, start_notifier = services
    await start_ingest()
    notifier = await start_notifier()
    message = await people.says(ALICE, ALICE, "hello")
    await settle(engine, notifier, expect_respond=1)
    [reply] = replies_to(people, message.id)
    assert reply.text == "echo: hello" and reply.document is None


async def test_a_notifier_killed_between_sending_a_document_and_recording_it_does_not_send_it_twice(
        js, engine, people, services):
    start_ingest, start_notifier = services
    await start_ingest()
    # Sent, never recorded: the notifier "dies" there.
    killed, die_before_recording = dies_before_recording("terminal")
    first = await start_notifier(record_hook=die_before_recording)
    message = await people.says(ALICE, ALICE, "/huge")
    await asyncio.wait_for(killed.wait(), 20)
    await first.stop()
    assert len(replies_to(people, message.id)) == 1  # sent, not recorded
    second = await start_notifier()
    _, events = await settle(engine, second, expect_respond=1)
    [reply] = replies_to(people, message.id)  # found by its caption, not sent again
    assert reply.document is not None
    assert second.outbox.stats["reconciled"] == 1 and second.outbox.stats["sent"] == 0
    assert [e.telegram_message_id for e in notices(events, "terminal")] == [reply.id] and len(intents(events)) == 1
