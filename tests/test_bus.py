import pytest

from schemas import subjects
from schemas.events import Created, decode_promise_event
from valor import bus


async def test_streams_exist_after_ensure(js):
    names = {s.config.name for s in await js.streams_info()}
    assert {"CHAT", "PROMISES", "WORK", "COMMANDS", "DLQ"} <= names


async def test_created_is_refused_when_the_id_is_taken(js):
    await bus.publish_event(js, Created(id=1, title="a"), "r1:0", expect_new_subject=True)
    with pytest.raises(Exception, match="wrong last sequence"):
        await bus.publish_event(js, Created(id=1, title="b"), "r2:0", expect_new_subject=True)
    msg = await js.get_last_msg(subjects.PROMISES, "promise.1.created")
    assert decode_promise_event(msg.data).title == "a"
