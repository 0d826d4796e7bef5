"""The notifier is sent only the kinds of event its board folds, and decodes only those of its promises."""

import copy

import msgspec

from schemas.events import EVENT_NAMES, Created, Dispatched, Started, Succeeded
from services.notifier import reading
from services.notifier.board import Board
from valor import bus

FILLERS = {int: 1, float: 1.0, str: "x", bool: True}


def some(cls):
    """An instance of an event type with every required field filled with a plain value."""
    fields = {f.encode_name: FILLERS.get(f.type, None) for f in msgspec.structs.fields(cls) if f.required}
    return msgspec.convert(fields, cls, strict=False)


def test_every_kind_the_notifier_is_not_sent_leaves_its_board_as_it_was():
    """A new event kind the board folds must be added to reading.FOLDED, or the notifier never sees it."""
    board = Board()
    board.apply(Created(id=1, task="respond", title="hi", chat_id=5, message_id=9, at=1.0), seq=1)
    unsent = [cls for cls, name in EVENT_NAMES.items() if name not in reading.FOLDED]
    assert Dispatched in unsent and len(unsent) >= 5
    for cls in unsent:
        before = copy.deepcopy(board.items)
        assert board.apply(some(cls)) == set(), cls
        assert repr(board.items) == repr(before), cls
    assert set(reading.FOLDED) <= set(EVENT_NAMES.values())


def test_only_the_birth_of_a_promise_the_board_does_not_hold_is_decoded():
    assert reading.skippable("promise.7.started", known={1})
    assert not reading.skippable("promise.7.created", known={1})
    assert not reading.skippable("promise.1.started", known={1})
    assert not reading.skippable("chat.1.in", known={1})


async def test_the_replay_ends_at_the_last_event_the_notifier_is_sent_not_at_the_last_of_the_log(js):
    assert await reading.last_seq(js) == 0
    await bus.publish_event(js, Created(id=1, task="noop", title="t", at=1.0), "c1")
    await bus.publish_event(js, Started(id=1, attempt=1, at=1.0), "s1")
    ended = await bus.publish_event(js, Succeeded(id=1, attempt=1, at=1.0), "d1")
    await bus.publish_event(js, Dispatched(id=2, attempt=1, at=1.0), "x2")
    assert await reading.last_seq(js) == ended.seq
