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


def test_stream_sequence_reads_both_reply_formats_like_nats_py():
    from nats.aio.msg import Msg

    v1 = "$JS.ACK.PROMISES.tail.1.4021.17.1700000000000000000.3"
    v2 = "$JS.ACK.hub.ACCHASH.PROMISES.tail.1.4021.17.1700000000000000000.3.rand"
    for reply in (v1, v2):
        msg = Msg(_client=None, subject="promise.1.created", reply=reply)
        assert bus.stream_sequence(msg) == 4021 == msg.metadata.sequence.stream


def test_stream_sequence_of_a_core_message_is_an_error():
    from nats.aio.msg import Msg
    from nats.errors import NotJSMessageError

    with pytest.raises(NotJSMessageError):
        bus.stream_sequence(Msg(_client=None, subject="x", reply="_INBOX.abc"))


async def test_stream_sequence_of_a_real_delivery_matches_the_stored_sequence(js):
    acks = [await bus.publish_event(js, Created(id=i, title="t"), f"seq:{i}") for i in (1, 2, 3)]
    sub = await js.pull_subscribe(subjects.ALL_PROMISE_EVENTS, stream=subjects.PROMISES)
    msgs = await sub.fetch(3, timeout=2)
    assert [bus.stream_sequence(m) for m in msgs] == [a.seq for a in acks]


async def test_patiently_waits_out_transient_answers_and_gives_up_on_anything_else():
    import nats.errors

    answers = [TimeoutError(), nats.errors.NoRespondersError(), "made"]

    async def creating():
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert await bus.patiently("consumer", creating, patience=5, first_delay=0.01) == "made"

    async def refused():
        raise ValueError("a bad config is not a slow cluster")

    with pytest.raises(ValueError):
        await bus.patiently("consumer", refused, patience=5, first_delay=0.01)

    async def never():
        raise TimeoutError

    with pytest.raises(TimeoutError):
        await bus.patiently("consumer", never, patience=0.05, first_delay=0.01)


def test_a_retried_publish_outlives_a_503_and_its_own_id_still_in_process_but_not_other_refusals():
    from nats.js.errors import APIError, ServiceUnavailableError

    assert bus.passing_refusal(ServiceUnavailableError(code=503, err_code=10008))
    assert bus.passing_refusal(APIError(code=409, err_code=bus.MSG_ID_IN_PROCESS,
                                        description="duplicate message id is in process"))
    assert not bus.passing_refusal(APIError(code=400, err_code=10054, description="maximum payload exceeded"))
