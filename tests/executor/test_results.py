"""What an attempt records in the log, and when the work is acked."""

import asyncio

from schemas import subjects
from schemas.commands import WorkItem
from schemas.events import AttemptFailed, Progress, Started, Succeeded
from services.executor.attempt import PROGRESS_EVERY
from services.executor.context import TaskFailed
from valor import bus

from .helpers import last, names, put_work, story


async def test_echo_result_carries_input_and_dependency_results(js, executor):
    ex = await executor()
    await put_work(js, WorkItem(id=1, attempt=1, task="echo", input={"q": "hi"}, deps={"7": {"n": 7}}))
    await ex.run_until_idle()
    events = await story(js, 1)
    assert names(events) == ["started", "succeeded"]
    started, succeeded = events
    assert (started.executor, started.delivery) == ("test-1", 1)
    assert succeeded.result == {"input": {"q": "hi"}, "deps": {"7": {"n": 7}}}


async def test_result_is_recorded_before_work_is_acked(nc, js, executor):
    seen: list[str] = []

    async def record(msg):
        seen.append("ack" if msg.subject.startswith("$JS.ACK") else msg.subject)

    await nc.subscribe("promise.1.succeeded", cb=record)
    await nc.subscribe("$JS.ACK.WORK.>", cb=record)
    ex = await executor()
    await put_work(js, WorkItem(id=1, attempt=1, task="noop"))
    await ex.run_until_idle()
    assert seen == ["promise.1.succeeded", "ack"]


async def test_result_publish_is_retried_until_stored_and_only_then_work_is_acked(js, executor):
    release = asyncio.Event()

    async def waits(ctx):
        await release.wait()
        return "done"

    ex = await executor(handlers={"waits": waits})
    await put_work(js, WorkItem(id=1, attempt=1, task="waits"))
    while await last(js, 1, "started") is None:
        await asyncio.sleep(0.05)
    # The log stops accepting promise events: the result cannot be stored.
    info = await js.stream_info(subjects.PROMISES)
    config = info.config
    await js.update_stream(_with_subjects(config, ["promise.none"]))
    release.set()
    await asyncio.sleep(1.0)
    consumer = await js.consumer_info(subjects.WORK, "exec-default")
    assert consumer.num_ack_pending == 1  # not acked: the result is not stored
    await js.update_stream(_with_subjects(config, [subjects.ALL_PROMISE_EVENTS]))
    await ex.run_until_idle()
    assert (await last(js, 1, "succeeded")).result == "done"
    assert (await js.stream_info(subjects.WORK)).state.messages == 0


def _with_subjects(config, subject_list):
    config.subjects = subject_list
    return config


async def test_fail_task_succeeds_after_its_failures(js, executor):
    ex = await executor()
    for attempt in (1, 2):
        await put_work(js, WorkItem(id=1, attempt=attempt, task="fail", input={"times": 1}))
    await ex.run_until_idle()
    failed = await last(js, 1, "attempt_failed")
    assert (failed.attempt, failed.retryable) == (1, True)
    assert failed.error == "failing on purpose: attempt 1 of 1 planned failures"
    succeeded = await last(js, 1, "succeeded")
    assert (succeeded.attempt, succeeded.result) == (2, {"attempts": 2})


async def test_timeout_stops_the_attempt_and_records_retryable_failure(js, executor):
    ex = await executor()
    await put_work(js, WorkItem(id=1, attempt=1, task="sleep", input={"seconds": 10}, timeout=0.5))
    await ex.run_until_idle()
    failed = await last(js, 1, "attempt_failed")
    assert (failed.error, failed.retryable) == ("timed out after 0.5s", True)
    assert 0.5 <= failed.duration < 10  # stopped at its timeout, not at the end of its sleep
    assert await last(js, 1, "succeeded") is None


async def test_unknown_task_type_fails_without_retry(js, executor):
    ex = await executor()
    await put_work(js, WorkItem(id=1, attempt=1, task="teleport"))
    await ex.run_until_idle()
    failed = await last(js, 1, "attempt_failed")
    assert failed.retryable is False
    assert failed.error == "unknown task type 'teleport'; known: echo, fail, noop, shell, sleep"


async def test_handler_errors_are_retryable_failures_with_a_readable_message(js, executor):
    async def broken(ctx):
        return {}["missing"]

    async def refuses(ctx):
        raise TaskFailed("no such repository", retryable=False)

    ex = await executor(handlers={"broken": broken, "refuses": refuses})
    await put_work(js, WorkItem(id=1, attempt=1, task="broken"))
    await put_work(js, WorkItem(id=2, attempt=1, task="refuses"))
    await ex.run_until_idle()
    one, two = await last(js, 1, "attempt_failed"), await last(js, 2, "attempt_failed")
    assert (one.error, one.retryable) == ("KeyError: 'missing'", True)
    assert (two.error, two.retryable) == ("no such repository", False)


async def test_a_result_that_is_not_json_fails_without_retry(js, executor):
    async def returns_a_set(ctx):
        return object()

    ex = await executor(handlers={"odd": returns_a_set})
    await put_work(js, WorkItem(id=1, attempt=1, task="odd"))
    await ex.run_until_idle()
    failed = await last(js, 1, "attempt_failed")
    assert failed.retryable is False
    assert failed.error.startswith("result is not JSON-encodable")


async def test_undecodable_work_goes_to_dlq_with_reason(nc, js, executor):
    ex = await executor()
    await js.publish("work.default", b"{not json")
    await js.publish("work.default", b'{"id": "seven", "attempt": 1, "task": "noop"}')
    await ex.run_until_idle()
    first = await js.get_msg(subjects.DLQ, seq=1)
    second = await js.get_msg(subjects.DLQ, seq=2)
    assert first.subject == "dlq.work" and first.data == b"{not json"
    assert first.headers[bus.REASON].startswith("undecodable work item: ")
    assert first.headers[bus.ORIGIN_STREAM] == "WORK"
    assert second.headers[bus.REASON] == "undecodable work item: Expected `int`, got `str` - at `$.id`"
    assert (await js.stream_info(subjects.WORK)).state.messages == 0
    # The loop is still alive after bad input.
    await put_work(js, WorkItem(id=3, attempt=1, task="noop"))
    await ex.run_until_idle()
    assert await last(js, 3, "succeeded") is not None


async def test_progress_is_published_and_throttled(js, executor):
    async def chatty(ctx):
        for i in range(50):
            await ctx.progress(f"step {i}", i / 50)
            await asyncio.sleep(0.02)
        return "ok"

    ex = await executor(handlers={"chatty": chatty})
    await put_work(js, WorkItem(id=1, attempt=1, task="chatty"))
    await ex.run_until_idle()
    progress = [e for e in await story(js, 1) if isinstance(e, Progress)]
    # At least 1 s of work: the first step and one more.  How many more depends on how slow the machine
    # is; the throttle shows in the gaps (unthrottled they would be the steps' 0.02 s).  Half of
    # PROGRESS_EVERY, because `at` is read a moment after the throttle's own clock.
    assert len(progress) >= 2
    assert all(b.at - a.at >= PROGRESS_EVERY / 2 for a, b in zip(progress, progress[1:], strict=False))
    assert progress[0].text == "step 0" and progress[0].fraction == 0.0
    assert isinstance((await story(js, 1))[0], Started)
    assert isinstance((await story(js, 1))[-1], Succeeded)


async def test_failed_result_of_a_sleep_with_bad_input_is_not_retryable(js, executor):
    ex = await executor()
    await put_work(js, WorkItem(id=1, attempt=1, task="sleep", input="ten"))
    await ex.run_until_idle()
    failed = await last(js, 1, "attempt_failed")
    assert isinstance(failed, AttemptFailed) and failed.retryable is False
    assert failed.error == "sleep input must be an object, got str"
