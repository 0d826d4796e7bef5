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


async def test_declaring_streams_waits_out_a_node_that_is_not_up_yet(nats_server):
    """A service started while its node restarts keeps trying instead of exiting."""
    import asyncio

    node = nats_server.nodes[0]
    nc = await bus.connect(nats_server.url, name="early")
    node.stop()

    async def restart_soon():
        await asyncio.sleep(1.5)
        node.start()

    try:
        back = asyncio.create_task(restart_soon())
        await bus.ensure_streams(nc.jetstream(timeout=0.5), 1, patience=20)
        await back
        assert {s.config.name for s in await nc.jetstream().streams_info()} >= {"PROMISES", "CHAT"}
    finally:
        await nc.close()
