"""Which replies are which gesture: a whole message is a gesture, anything else is instructions; pure."""

import pytest

from services.executor.respond.gestures import CANCEL, INSTRUCT, RETRY, WHY, Gesture, begins_like_one, parse


@pytest.mark.parametrize("text, gesture", [
    ("stop", Gesture(CANCEL)),
    ("Stop!", Gesture(CANCEL)),
    ("  cancel  ", Gesture(CANCEL)),
    ("cancel it please", Gesture(CANCEL)),
    ("please stop", Gesture(CANCEL)),
    ("Stop now.", Gesture(CANCEL)),
    ("abort", Gesture(CANCEL)),
    ("never mind", Gesture(CANCEL)),
    ("❌", Gesture(CANCEL)),
    ("❌\ufe0f", Gesture(CANCEL)),  # the emoji with its presentation selector
    ("🛑", Gesture(CANCEL)),
    ("@valor_bot stop", Gesture(CANCEL)),  # a mention in a group
    ("retry", Gesture(RETRY)),
    ("Try again", Gesture(RETRY)),
    ("again!", Gesture(RETRY)),
    ("rerun", Gesture(RETRY)),
    ("🔁", Gesture(RETRY)),
    ("why?", Gesture(WHY)),
    ("Why", Gesture(WHY)),
    ("why??", Gesture(WHY)),
    ("what happened?", Gesture(WHY)),
    ("explain", Gesture(WHY)),
    ("?", Gesture(WHY)),
    ("❓", Gesture(WHY)),
    ("#12 stop", Gesture(CANCEL, pick=12)),
    ("#13: why?", Gesture(WHY, pick=13)),
    # Everything else is instructions, as written, even when it starts with a gesture word.
    ("stop using tabs", Gesture(INSTRUCT, "stop using tabs")),
    ("stop, wrong repo", Gesture(INSTRUCT, "stop, wrong repo")),
    ("why not use pytest?", Gesture(INSTRUCT, "why not use pytest?")),
    ("retry with --verbose", Gesture(INSTRUCT, "retry with --verbose")),
    ("also check the signup form", Gesture(INSTRUCT, "also check the signup form")),
    ("no", Gesture(INSTRUCT, "no")),  # not a cancel: plan approval reads its own words
    ("Use pytest.\nAnd keep the old fixtures.", Gesture(INSTRUCT, "Use pytest.\nAnd keep the old fixtures.")),
    ("#13 use pytest", Gesture(INSTRUCT, "use pytest", pick=13)),
    ("#13", Gesture(INSTRUCT, "", pick=13)),
    ("", Gesture(INSTRUCT, "")),
])
def test_a_reply_is_a_gesture_only_as_a_whole_message(text, gesture):
    assert parse(text) == gesture


@pytest.mark.parametrize("text, begins", [
    ("stop, wrong repo", True), ("Cancel: use the other branch", True), ("why not pytest", True),
    ("use pytest", False), ("", False), ("stopping is fine", False),
])
def test_instructions_that_begin_like_a_gesture_are_told_apart(text, begins):
    assert begins_like_one(text) is begins
