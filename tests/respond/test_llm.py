"""The LLM agent through the real ``anthropic`` SDK against the scripted fake Messages API.

The chat's log is real: events are published to PROMISES on a real nats-server
and the handler reads them back, as it does in production.
"""

import msgspec
import pytest

from schemas import subjects
from schemas.commands import NewPromise, RespondCommand, RespondResult, WorkItem
from schemas.events import EVENT_NAMES, Attachment, ScheduleCreated, encode
from services.executor.context import AttemptContext, TaskFailed
from services.executor.respond import respond_handler
from services.executor.respond.reply import NO_RECORDED_RESULT
from services.executor.worker import Executor
from tests.executor.helpers import last, put_work
from tests.fakes.anthropic_api import FakeAnthropic, error, text, tool_use
from valor import spend
from valor.config import DEFAULT, parse

from .helpers import CHAT, failed_after_retries, message, running, succeeded
from .test_approval import held_plan
from .test_continue import claude_run

# The SDK warns (an error under pytest) about models it knows are deprecated, as the
# config's default claude-sonnet-4-5 is in anthropic 2.14.
CONFIG = parse('[agent]\nmodel = "claude-sonnet-4-6"\n')
CHAIN = [
    {"name": "setup", "type": "code", "title": "Set up the test environment", "input": "Create a venv, install deps"},
    {"name": "write", "type": "code", "title": "Write unit tests", "input": "Write unit tests", "after": ["setup"]},
    {"name": "run", "type": "code", "title": "Run the tests", "input": "Run pytest", "after": ["write"]},
]


@pytest.fixture
def fake():
    api = FakeAnthropic()
    api.start()
    yield api
    api.stop()


@pytest.fixture
def responder(nc, fake):
    return respond_handler(CONFIG, nc, env={"ANTHROPIC_API_KEY": "sk-test", "ANTHROPIC_BASE_URL": fake.base_url})


async def record(js, *events):
    for e in events:
        await js.publish(subjects.promise(e.id, EVENT_NAMES[type(e)]), encode(e))


async def ask(responder, text, message_id=100) -> RespondResult:
    msg = message(text, message_id=message_id)
    ctx = AttemptContext(id=1, attempt=1, task="respond", input=msgspec.to_builtins(msg), chat_id=CHAT)
    return msgspec.convert(await responder(ctx), RespondResult)


async def test_a_three_step_request_becomes_a_chain_of_promises(responder, fake):
    fake.script(tool_use("create_plan", {"tasks": CHAIN}, preface="Planning the three steps."),
                text("Planned: setup, then write, then run."))
    r = await ask(responder, "set up the test environment, write unit tests, then run them")
    assert [(p.name, p.type, p.after) for p in r.promises] == [
        ("setup", "code", []), ("write", "code", ["setup"]), ("run", "code", ["write"])]
    # A title the model gives anyway is left out: a step is titled by its name.
    assert r.promises[0] == NewPromise(name="setup", type="code", input="Create a venv, install deps")
    assert r.reply == "Planned: setup, then write, then run." and r.commands == []
    first, second = fake.calls()
    assert first.tool_names == ["create_plan", "cancel_promise", "retry_promise", "continue_promise", "approve_plan",
                                "reject_plan", "create_schedule", "list_schedules", "pause_schedule",
                                "resume_schedule", "delete_schedule", "list_promises", "promise_history"]
    assert first.model == "claude-sonnet-4-6" and first.body["max_tokens"] == CONFIG.agent.max_tokens
    assert "Never say you will do" in first.system
    assert first.messages == [{"role": "user", "content": "set up the test environment, write unit tests, then run them"}]
    [result] = second.tool_results
    assert result["is_error"] is False and result["content"].startswith("planned: setup, write (after setup), run")


async def test_why_did_it_fail_is_answered_from_the_recorded_events(responder, fake, js):
    await record(js, *failed_after_retries(12))
    fake.script(tool_use("promise_history", {"id": 12}),
                text("#12 failed three times: the database refused connections (db:5432)."))
    r = await ask(responder, "why did #12 fail?")
    assert r.reply == "#12 failed three times: the database refused connections (db:5432)."
    assert (r.promises, r.commands) == ([], [])
    [result] = fake.calls()[1].tool_results
    assert result["is_error"] is False
    assert "attempt 3 failed: connection refused: db:5432" in result["content"]
    assert '"error":"connection refused: db:5432"' in result["content"]  # the raw recorded event too


async def test_the_chats_messages_and_open_promises_are_context(responder, fake, js, nc):
    await record(js, *running(14, "long job"))
    for mid, words in ((90, "earlier question"), (101, "a later message")):
        m = message(words, message_id=mid)
        await js.publish(subjects.chat_in(CHAT), encode(m), headers={"Nats-Msg-Id": f"tg:{CHAT}:{mid}"})
    fake.script(text("#14 is still running."))
    await ask(responder, "how is it going?")
    system = fake.calls()[0].system
    assert "[90] Ana: earlier question" in system and "a later message" not in system
    assert '#14 sleep "long job": running' in system


async def test_a_reply_claiming_work_without_a_plan_is_corrected(responder, fake):
    fake.script(text("I'll set up the test environment right away."))
    r = await ask(responder, "set up the test environment")
    assert r.reply == ("I haven't started anything yet (no task was created): "
                       "I'll set up the test environment right away.")
    assert r.promises == []


async def test_a_claimed_result_is_corrected_before_it_is_recorded_and_a_quoted_one_goes_through(
        responder, fake, js, nc):
    """Through a real executor: the reply checked is the one the respond promise records for the notifier."""
    await record(js, *succeeded(12, "run the tests", task="code", result={"passed": 14}))
    ex = Executor(nc, ["default"], 1, handlers={"respond": responder}, executor_id="respond-claims",
                  fetch_timeout=0.2, heartbeat_interval=0.2)
    await ex.start()

    async def recorded_reply(pid: int, text: str) -> str:
        msg = msgspec.to_builtins(message(text, message_id=100 + pid))
        await put_work(js, WorkItem(id=pid, attempt=1, task="respond", input=msg, chat_id=CHAT))
        await ex.run_until_idle(quiet=0.1)
        return (await last(js, pid, "succeeded")).result["reply"]

    try:
        fake.script(text("Done, the tests pass."))
        assert await recorded_reply(1, "did the tests pass?") == f"{NO_RECORDED_RESULT}: Done, the tests pass."
        assert fake.calls()[0].tool_results == []  # it looked at nothing

        fake.script(tool_use("promise_history", {"id": 12}), text("#12 succeeded: the tests pass (14 passed)."))
        assert await recorded_reply(2, "and now?") == "#12 succeeded: the tests pass (14 passed)."
        assert "succeeded" in fake.calls()[2].tool_results[0]["content"]
    finally:
        await ex.stop(grace=1)


async def test_a_reply_saying_a_failed_promise_passed_is_corrected_with_what_the_log_has(responder, fake, js):
    await record(js, *failed_after_retries(12))
    fake.script(text("Good news: #12 passed."))
    r = await ask(responder, "how did #12 go?")
    assert r.reply == f"{NO_RECORDED_RESULT} (the log has #12 failed): Good news: #12 passed."


async def test_an_invalid_plan_goes_back_to_the_model_as_a_tool_error(responder, fake):
    cycle = [{"name": "a", "type": "echo", "title": "a", "input": "a", "after": ["b"]},
             {"name": "b", "type": "echo", "title": "b", "input": "b", "after": ["a"]}]
    fake.script(tool_use("create_plan", {"tasks": cycle}),
                tool_use("create_plan", {"tasks": [{"name": "a", "type": "telepathy", "title": "a", "input": "a"}]}),
                tool_use("create_plan", {"tasks": cycle[:1] + [{**cycle[1], "after": []}]}),
                text("Planned a after b."))
    r = await ask(responder, "do a and b")
    assert [(p.name, p.after) for p in r.promises] == [("a", ["b"]), ("b", [])]
    results = [c.tool_results[0] for c in fake.calls()[1:]]
    assert results[0] == {**results[0], "is_error": True,
                          "content": "plan refused: the plan has a cycle: a -> b -> a; nothing from this call was planned"}
    assert results[1]["is_error"] is True and "unknown type 'telepathy'" in results[1]["content"]
    assert results[2]["is_error"] is False


async def test_names_are_unique_across_calls_and_later_calls_may_follow_earlier_tasks(responder, fake):
    fake.script(tool_use("create_plan", {"tasks": CHAIN[:1]}),
                tool_use("create_plan", {"tasks": CHAIN[:1]}),
                tool_use("create_plan", {"tasks": CHAIN[1:]}),
                text("Planned."))
    r = await ask(responder, "set up, write, run")
    assert [p.name for p in r.promises] == ["setup", "write", "run"]
    assert fake.calls()[2].tool_results[0]["content"].startswith("plan refused: two tasks are named 'setup'")


async def test_cancel_and_retry_tools_become_commands(responder, fake, js):
    await record(js, *running(14), *failed_after_retries(12))
    fake.script(tool_use("cancel_promise", {"id": 14, "reason": "user asked"}),
                tool_use("retry_promise", {"id": 12}),
                tool_use("cancel_promise", {"id": 404}),
                text("Cancelling #14 and retrying #12."))
    r = await ask(responder, "stop 14 and retry 12")
    assert r.commands == [RespondCommand(verb="cancel", id=14, reason="user asked"),
                          RespondCommand(verb="retry", id=12)]
    assert r.reply == "Cancelling #14 and retrying #12."
    assert fake.calls()[3].tool_results[0] == {**fake.calls()[3].tool_results[0], "is_error": True,
                                               "content": "There is no promise #404 in this chat."}


async def test_the_tool_loop_is_bounded(responder, fake):
    responder.llm.max_turns = 3
    fake.script(*[tool_use("list_promises", {}) for _ in range(5)])
    r = await ask(responder, "keep looking")
    assert r.reply == "(I stopped after 3 steps.)" and len(fake.calls()) == 3


async def test_slash_commands_skip_the_model(responder, fake):
    r = await ask(responder, "/do echo hi")
    assert [(p.type, p.input) for p in r.promises] == [("echo", "hi")] and fake.calls() == []


async def test_an_api_error_fails_the_attempt_retryably(responder, fake):
    fake.script(error(400, "invalid_request_error", "bad request"))
    with pytest.raises(TaskFailed) as caught:
        await ask(responder, "hello")
    assert caught.value.retryable and "language model error: BadRequestError" in caught.value.error


async def test_a_malformed_message_fails_for_good(responder):
    ctx = AttemptContext(id=1, attempt=1, task="respond", input={"text": "no chat id"})
    with pytest.raises(TaskFailed) as caught:
        await responder(ctx)
    assert not caught.value.retryable
    assert caught.value.error.startswith("respond input is not a message.received event: ")


async def test_without_a_key_plain_text_gets_the_command_agents_help(nc, fake):
    responder = respond_handler(DEFAULT, nc, env={})
    r = await ask(responder, "can you fix the build?")
    assert "/do" in r.reply and fake.calls() == [] and responder.llm is None


async def test_a_reply_to_a_claude_code_task_s_result_continues_it_without_asking_the_model(responder, fake, js):
    await record(js, *claude_run(12))
    msg = msgspec.structs.replace(message("now add a test for it"), reply_to=512)
    ctx = AttemptContext(id=1, attempt=1, task="respond", input=msgspec.to_builtins(msg), chat_id=CHAT)
    r = msgspec.convert(await responder(ctx), RespondResult)
    assert r.promises == [NewPromise(name="continue-12", type="code", title="now add a test for it",
                                     input="now add a test for it", continues=12)]
    assert fake.calls() == []


async def test_the_continue_tool_promises_a_continuation_or_says_why_not(responder, fake, js):
    await record(js, *claude_run(12), *running(14, task="code"))
    fake.script(tool_use("continue_promise", {"id": 14, "instruction": "more"}),
                tool_use("continue_promise", {"id": 12, "instruction": "now add a test for it"}),
                tool_use("continue_promise", {"id": "#12", "instruction": "and another"}),
                text("Continuing #12."))
    r = await ask(responder, "continue 12: add a test for it")
    assert r.promises == [NewPromise(name="continue-12", type="code", title="now add a test for it",
                                     input="now add a test for it", continues=12)]
    results = [c.tool_results[0] for c in fake.calls()[1:]]
    assert [(x["is_error"], x["content"]) for x in results] == [
        (True, "#14 is still running; it can be continued once it has ended."),
        (False, "Continuing #12 in its code session: now add a test for it "
                "(promised once your reply is sent; Valor adds its id)"),
        (True, "not continued: two tasks are named 'continue-12'"),
    ]


async def test_the_model_is_told_where_files_sent_with_this_and_earlier_messages_are(responder, fake, js):
    earlier = msgspec.structs.replace(message("here is the photo", message_id=90), attachments=[
        Attachment(name="photo.jpg", path=f"inbox/{CHAT}/90-photo.jpg", size=2048, mime_type="image/jpeg")])
    await js.publish(subjects.chat_in(CHAT), encode(earlier), headers={"Nats-Msg-Id": f"tg:{CHAT}:90"})
    fake.script(tool_use("create_plan", {"tasks": [
        {"name": "sum", "type": "code", "title": "Sum the totals", "input": f"Sum inbox/{CHAT}/100-report.csv"}]}),
        text("Planned: sum."))
    msg = msgspec.structs.replace(message("sum the totals; the photo is the chart"), attachments=[
        Attachment(name="report.csv", path=f"inbox/{CHAT}/100-report.csv", size=30, mime_type="text/csv"),
        Attachment(name="dump.sql", size=9 << 20, skipped="too big: 9.0 MB, the limit is 8.0 MB")])
    ctx = AttemptContext(id=1, attempt=1, task="respond", input=msgspec.to_builtins(msg), chat_id=CHAT)
    r = msgspec.convert(await responder(ctx), RespondResult)
    first = fake.calls()[0]
    assert first.messages[0]["content"] == (
        "sum the totals; the photo is the chart (files with this message, paths relative to the chat's workspace:\n"
        f"Attached: inbox/{CHAT}/100-report.csv (text/csv, 30 B)\n"
        "Not attached: dump.sql (too big: 9.0 MB, the limit is 8.0 MB))")
    assert f"[90] Ana: here is the photo (files with this message, paths relative to the chat's workspace:\n" \
           f"Attached: inbox/{CHAT}/90-photo.jpg (image/jpeg, 2.0 KB))" in first.system
    assert "Put the path of every file a task needs into that task's input" in first.system
    assert r.promises[0].input == f"Sum inbox/{CHAT}/100-report.csv"  # the model's own task, as it wrote it
    assert r.reply == "Planned: sum.\n\ndump.sql was not saved: too big: 9.0 MB, the limit is 8.0 MB."


async def test_go_for_a_waiting_plan_approves_it_without_asking_the_model(responder, fake, js):
    await record(js, *held_plan(10, 11))
    msg = msgspec.structs.replace(message("go"), reply_to=610)
    ctx = AttemptContext(id=1, attempt=1, task="respond", input=msgspec.to_builtins(msg), chat_id=CHAT)
    r = msgspec.convert(await responder(ctx), RespondResult)
    assert r.commands == [RespondCommand(verb="approve", id=11, reason="approved in chat by Ana")]
    assert fake.calls() == []


async def test_an_edit_of_a_waiting_plan_is_made_by_the_model_rejecting_it_and_planning_anew(responder, fake, js):
    await record(js, *held_plan(10, 11))
    changed = [{"name": "setup", "type": "echo", "title": "Set up", "input": "env"},
               {"name": "run", "type": "echo", "title": "Run", "input": "run", "after": ["setup"]}]
    fake.script(tool_use("reject_plan", {"id": 12, "reason": "replaced: skip write"}),
                tool_use("create_plan", {"tasks": changed}),
                text("Changed the plan: setup, then run, without write."))
    msg = msgspec.structs.replace(message("skip step 2"), reply_to=610)
    ctx = AttemptContext(id=1, attempt=1, task="respond", input=msgspec.to_builtins(msg), chat_id=CHAT)
    r = msgspec.convert(await responder(ctx), RespondResult)
    assert r.commands == [RespondCommand(verb="reject", id=11,
                                         reason="plan rejected in chat by Ana: replaced: skip write")]
    assert [(p.name, p.after) for p in r.promises] == [("setup", []), ("run", ["setup"])]
    first = fake.calls()[0]
    assert first.messages[0]["content"] == (
        "(in reply to message 610) skip step 2\n(This replies to your message about the plan #11 setup, #12 write, "
        "#13 run, which awaits approval: to change it, reject it and create the changed plan.)")
    assert '#12 code "write things": awaiting approval (3 steps, more than 2)' in first.system
    assert "To change a waiting plan" in first.system


async def test_the_plan_tool_takes_a_priority_and_refuses_a_bad_one(responder, fake):
    urgent = {"name": "hotfix", "type": "code", "title": "Fix prod", "input": "Fix the login outage"}
    fake.script(tool_use("create_plan", {"tasks": [{**urgent, "priority": 0}]}),
                tool_use("create_plan", {"tasks": [{**urgent, "priority": "urgent"}]}),
                tool_use("create_plan", {"tasks": [{**urgent, "priority": 1}, {**CHAIN[0], "priority": 9}]}),
                text("hotfix goes first."))
    r = await ask(responder, "prod login is down, fix it before anything else")
    assert [(p.name, p.priority) for p in r.promises] == [("hotfix", 1), ("setup", 9)]
    schema = next(t for t in fake.calls()[0].tools if t["name"] == "create_plan")["input_schema"]
    assert schema["properties"]["tasks"]["items"]["properties"]["priority"] == {
        **schema["properties"]["tasks"]["items"]["properties"]["priority"], "type": "integer", "minimum": 1,
        "maximum": 9}
    results = [c.tool_results[0] for c in fake.calls()[1:]]
    assert results[0] == {**results[0], "is_error": True, "content": (
        "plan refused: task 'hotfix' has priority 0; use 1 (highest) to 9; nothing from this call was planned")}
    assert results[1]["is_error"] is True and "priority" in results[1]["content"] and (
        "Expected `int`, got `str`" in results[1]["content"])
    assert results[2] == {**results[2], "is_error": False, "content": (
        "planned: hotfix (priority 1), setup (priority 9). These are promised once your reply is sent; "
        "Valor adds their ids. Refer to them by name.")}


async def test_every_morning_becomes_a_schedule_the_reply_may_announce(responder, fake):
    fake.script(tool_use("create_schedule", {"when": "weekdays 09:00", "type": "code", "tz": "Europe/Berlin",
                                             "input": "Run the test suite and tell me what broke"}),
                text("I'll run the test suite every weekday at 9."))
    r = await ask(responder, "every weekday morning at 9, run the tests and tell me what broke")
    [s] = r.schedules
    assert (s.cron, s.every, s.tz, s.missed, s.overlap) == ("0 9 * * 1-5", None, "Europe/Berlin", "skip", "skip")
    assert (s.task.type, s.task.input) == ("code", "Run the test suite and tell me what broke")
    assert r.promises == [] and r.reply == "I'll run the test suite every weekday at 9."  # backed: not qualified
    [result] = fake.calls()[1].tool_results
    assert result["is_error"] is False and result["content"].startswith(
        "scheduled cron 0 9 * * 1-5 (Europe/Berlin): Run the test suite")


@pytest.mark.parametrize("args, error", [
    ({"when": "every morning", "type": "code", "input": "x"}, "not scheduled: not an interval: 'every'"),
    ({"when": "1d 09:00 tomorrow", "type": "code", "input": "x"}, "'when' must be only the recurrence"),
    ({"when": "1h", "type": "respond", "input": "x"}, "unknown type 'respond'"),
    ({"when": "1h", "type": "code", "input": "x", "overlap": "never"}, "overlap must be one of skip, queue, run"),
    ({"when": "1h", "type": "code"}, "'input' must say what each run does"),
    ({"when": "10s", "type": "code", "input": "x"}, "not scheduled: too often: 10s between runs; a schedule from a "
                                                    "chat runs at most every 1m"),
])
async def test_a_schedule_the_grammar_refuses_is_an_error_the_model_sees_and_nothing_is_scheduled(
        responder, fake, args, error):
    fake.script(tool_use("create_schedule", args), text("I could not schedule that."))
    r = await ask(responder, "check it regularly")
    assert r.schedules == []
    [result] = fake.calls()[1].tool_results
    assert result["is_error"] is True and error in result["content"]


async def test_pause_and_delete_a_schedule_of_this_chat_but_not_of_another(responder, fake, js):
    await record(js, ScheduleCreated(id=30, every=3600.0, title="deploy check", task="echo", chat_id=CHAT),
                 ScheduleCreated(id=31, every=3600.0, title="theirs", task="echo", chat_id=CHAT + 1))
    fake.script(tool_use("list_schedules", {}), tool_use("pause_schedule", {"id": 30}),
                tool_use("delete_schedule", {"id": 31}), text("Paused the deploy check."))
    r = await ask(responder, "stop the deploy checks for now")
    assert r.commands == [RespondCommand(verb="pause", id=30)]
    listed, paused, refused = (call.tool_results[0] for call in fake.calls()[1:])
    assert listed["content"].startswith("⏰ #30 every 1h: deploy check [echo] — active, 0 runs") \
        and "#31" not in listed["content"]
    assert (paused["is_error"], refused["is_error"]) == (False, True)
    assert refused["content"] == "There is no schedule #31 in this chat; /schedules lists them."


async def test_the_agents_own_model_calls_are_recorded_on_the_respond_promise_and_capped(responder, fake, js, nc):
    """Decision 47: each Messages API call's usage, priced at list price, rides on the respond attempt's end."""
    ex = Executor(nc, ["default"], 1, handlers={"respond": responder}, executor_id="respond-spend",
                  fetch_timeout=0.2, heartbeat_interval=0.2)
    await ex.start()
    try:
        fake.script(tool_use("list_promises", {}), text("Nothing is running."))
        msg = msgspec.to_builtins(message("what is running?", message_id=300))
        await put_work(js, WorkItem(id=30, attempt=1, task="respond", input=msg, chat_id=CHAT))
        await ex.run_until_idle(quiet=0.1)
        done = await last(js, 30, "succeeded")
        ev = done.evidence
        assert ev.turns == 2 and ev.cost_estimated and ev.tokens.input > 0 and ev.tokens.output > 0
        assert ev.cost_usd == pytest.approx(spend.estimate("claude-sonnet-4-6", ev.tokens))

        # A cap below one call's price stops the answer after that call, for good.
        fake.script(tool_use("list_promises", {}), text("never reached"))
        await put_work(js, WorkItem(id=31, attempt=1, task="respond", input=msg, chat_id=CHAT, max_cost=1e-6))
        await ex.run_until_idle(quiet=0.1)
        failed = await last(js, 31, "attempt_failed")
        assert failed.retryable is False and failed.error.startswith("stopped at its cost cap of $0.0000")
        assert failed.evidence.turns == 1 and failed.evidence.cost_usd > 1e-6
    finally:
        await ex.stop(grace=1)
