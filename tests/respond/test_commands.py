"""The command agent's grammar: pure, message text (and the chat's log) in, result out."""

import msgspec
import pytest

from schemas.commands import NewPromise, RespondCommand
from schemas.events import BudgetAdjusted, Created, Dispatched, Evidence, Started, Succeeded
from services.executor.respond import commands
from services.executor.respond.commands import answer, parse, parse_duration, parse_id
from services.executor.respond.view import chat_view
from valor.config import DEFAULT
from valor.config import parse as parse_config

from .helpers import (
    CHAT,
    cancelled_by_failed_dependency,
    failed_after_retries,
    message,
    running,
    succeeded,
    view_of,
)

DO_USAGE = ("Usage: /do [!N] [$cap] [type] text, e.g. /do fix the failing login test, /do !1 fix it first, "
            "or /do $0.50 fix it for at most 50 cents")


def say(text, view=None, config=DEFAULT):
    return answer(message(text), view, config)


# --- parsing ---------------------------------------------------------------------


@pytest.mark.parametrize("text, verb, rest", [
    ("/do fix it", "do", "fix it"),
    ("  /DO   fix it  ", "do", "fix it"),
    ("/do@valor_bot fix it", "do", "fix it"),
    ("/plan\na: echo: x", "plan", "a: echo: x"),
    ("/plan a: echo: x\nb: echo: y", "plan", "a: echo: x\nb: echo: y"),
    ("/list", "list", ""),
    ("hello there", "", "hello there"),
])
def test_parse_splits_the_verb_from_the_rest(text, verb, rest):
    assert parse(text) == commands.Parsed(verb, rest)


@pytest.mark.parametrize("text, seconds", [
    ("30s", 30), ("10m", 600), ("2h", 7200), ("1d", 86400), ("1h30m", 5400), ("1.5h", 5400), ("90S", 90),
])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "30", "m", "ten minutes", "30x", "5m later", "-5m"])
def test_what_is_not_a_duration(text):
    assert parse_duration(text) is None


@pytest.mark.parametrize("text, pid", [("#12", 12), ("12", 12), (" #7 ", 7), ("#", None), ("x12", None),
                                       ("0", None), ("-3", None), ("#1a", None)])
def test_ids_with_or_without_hash(text, pid):
    assert parse_id(text) == pid


# --- /do and /later ------------------------------------------------------------------


def test_do_without_a_type_promises_a_code_task():
    r = say("/do fix the failing login test")
    assert r.promises == [NewPromise(name="code", type="code", title="fix the failing login test", input="fix the failing login test")]
    assert r.reply == "Promised a code task: fix the failing login test"
    assert r.commands == []


def test_do_with_a_known_type_as_first_word():
    r = say("/do search flaky tests in CI")
    assert [(p.type, p.input) for p in r.promises] == [("search", "flaky tests in CI")]


def test_a_first_word_that_is_no_type_is_part_of_the_text():
    r = say("/do refactor the parser")
    assert [(p.type, p.input) for p in r.promises] == [("code", "refactor the parser")]


def test_types_come_from_the_config():
    config = parse_config('[types.deploy]\nhandler = "shell"\n')
    r = say("/do deploy staging", config=config)
    assert [(p.type, p.input) for p in r.promises] == [("deploy", "staging")]


def test_a_json_object_text_is_the_input_itself():
    r = say('/do sleep {"seconds": 5}')
    assert r.promises == [NewPromise(name="sleep", type="sleep", title="sleep", input={"seconds": 5})]


def test_the_agent_cannot_be_asked_to_run_another_agent():
    r = say("/do respond hi")
    assert [(p.type, p.input) for p in r.promises] == [("code", "respond hi")]


@pytest.mark.parametrize("text, reply", [
    ("/do", DO_USAGE),
    ("/do !1", DO_USAGE),
    ("/do echo", "What should the echo task do? Usage: /do [!N] [$cap] [type] text"),
    ("/do !2 echo", "What should the echo task do? Usage: /do [!N] [$cap] [type] text"),
])
def test_do_without_text_promises_nothing(text, reply):
    r = say(text)
    assert (r.reply, r.promises) == (reply, [])


# --- priorities: !1 (first) to !9 (last) -----------------------------------------------


@pytest.mark.parametrize("text, priority, type_, input_, reply", [
    ("/do !1 sleep 3", 1, "sleep", "3", "Promised a sleep task (priority 1): 3"),
    ("/do sleep !2 3", 2, "sleep", "3", "Promised a sleep task (priority 2): 3"),
    ("/do !9 tidy the docs", 9, "code", "tidy the docs", "Promised a code task (priority 9): tidy the docs"),
    ("/do !5 echo x", 5, "echo", "x", "Promised an echo task: x"),
    ("/do echo hey!", 5, "echo", "hey!", "Promised an echo task: hey!"),  # a "!" inside the text is text
    ("/later !1 30m echo x", 1, "echo", "x", "Promised an echo task (priority 1) to start in 30m: x"),
    ("/later 30m !3 echo x", 3, "echo", "x", "Promised an echo task (priority 3) to start in 30m: x"),
])
def test_a_priority_word_sets_the_tasks_priority(text, priority, type_, input_, reply):
    r = say(text)
    assert [(p.priority, p.type, p.input) for p in r.promises] == [(priority, type_, input_)]
    assert r.reply == reply


BAD_PRIORITY = "is not a priority: use !1 (runs first) to !9 (last); without one a task gets 5."


@pytest.mark.parametrize("text, word", [
    ("/do !0 echo x", "!0"), ("/do !10 echo x", "!10"), ("/do !high fix it", "!high"), ("/do echo !-1 x", "!-1"),
    ("/do !1.5 x", "!1.5"), ("/later !0 30m x", "!0"), ("/later 30m !urgent x", "!urgent"),
])
def test_a_bad_priority_is_refused_naming_it_and_promises_nothing(text, word):
    r = say(text)
    assert r.reply.startswith(f"'{word}' {BAD_PRIORITY} Usage: /") and r.promises == []


def test_plan_lines_end_with_a_priority_before_or_after_their_dependencies():
    r = say("/plan\nsetup: echo: prepare !2\nwrite: echo: write it [after setup] !1\n"
            "run: echo: run it !1 [after write]\ntidy: echo: sweep up, done!")
    assert [(p.name, p.priority, p.input, p.after) for p in r.promises] == [
        ("setup", 2, "prepare", []), ("write", 1, "write it", ["setup"]), ("run", 1, "run it", ["write"]),
        ("tidy", 5, "sweep up, done!", [])]
    assert r.reply == ("Planned 4 tasks: setup (priority 2); write (after setup, priority 1); "
                       "run (after write, priority 1); tidy")


@pytest.mark.parametrize("line, error", [
    ("b: echo: x !0", f"line 2: '!0' {BAD_PRIORITY}"),
    ("b: echo: x !top [after a]", f"line 2: '!top' {BAD_PRIORITY}"),
    ("b: echo: x !1 !2", "line 2 has 2 priorities (!1, !2); give one."),
])
def test_a_plan_line_with_a_bad_priority_refuses_the_plan(line, error):
    r = say("/plan\na: echo: fine\n" + line)
    assert (r.reply, r.promises) == (f"Plan not accepted, nothing was created: {error}", [])


def test_later_promises_a_delayed_task():
    r = say("/later 30m run the nightly checks")
    assert r.promises == [NewPromise(name="code", type="code", title="run the nightly checks", input="run the nightly checks",
                                     delay=1800.0)]
    assert r.reply == "Promised a code task to start in 30m: run the nightly checks"


def test_later_with_a_type():
    r = say("/later 2h echo ping")
    assert [(p.type, p.input, p.delay) for p in r.promises] == [("echo", "ping", 7200.0)]


@pytest.mark.parametrize("text, start", [
    ("/later soon do it", "'soon' is not a delay."),
    ("/later", "Usage: /later <delay>"),
    ("/later 0s echo x", "The delay must be more than zero."),
    ("/later 10m", "Usage: /later <delay>"),
])
def test_later_without_a_delay_or_text_promises_nothing(text, start):
    r = say(text)
    assert r.reply.startswith(start) and r.promises == []


# --- /plan -----------------------------------------------------------------------------


def test_plan_is_a_dag_of_named_tasks():
    r = say("/plan\nsetup: code: set up the test environment\n"
            "write: code: write unit tests [after setup]\n"
            "run: shell: {\"argv\": [\"pytest\"]} [after setup, write]")
    assert [(p.name, p.type, p.after) for p in r.promises] == [
        ("setup", "code", []), ("write", "code", ["setup"]), ("run", "shell", ["setup", "write"])]
    assert r.promises[2].input == {"argv": ["pytest"]}
    assert [p.title for p in r.promises] == ["setup", "write", "run"]  # titled by name, not by input
    assert r.promises[1].input == "write unit tests"
    assert r.reply == "Planned 3 tasks: setup; write (after setup); run (after setup, write)"


def test_plan_lines_may_be_bullets_and_after_may_use_spaces():
    r = say("/plan\n- a: echo: one\n\n* b: echo: two [after a]\n• c: echo: three [ after a b ]")
    assert [(p.name, p.after) for p in r.promises] == [("a", []), ("b", ["a"]), ("c", ["a", "b"])]


@pytest.mark.parametrize("lines, error", [
    ("a: echo: x [after b]\nb: echo: y [after a]",
     "Plan not accepted, nothing was created: the plan has a cycle: a -> b -> a."),
    ("a: echo: x [after a]", "Plan not accepted, nothing was created: task 'a' is after itself."),
    ("a: echo: x\nb: echo: y [after c]",
     "Plan not accepted, nothing was created: task 'b' is after unknown task 'c'."),
    ("a: echo: x\na: echo: y", "Plan not accepted, nothing was created: two tasks are named 'a'."),
    ("a: echo: x\nthis is not a task",
     "Plan not accepted, nothing was created: line 2 ('this is not a task') is not 'name: type: text [after a, b]'."),
    ("a: echo: x [after ]", "Plan not accepted, nothing was created: line 1: [after] names no task."),
    ("", "Plan not accepted, nothing was created: the plan has no tasks; write one per line after /plan: "
         "name: type: text [after a, b]."),
])
def test_a_malformed_plan_is_answered_with_a_readable_error_and_no_promises(lines, error):
    r = say("/plan\n" + lines)
    assert (r.reply, r.promises, r.commands) == (error, [], [])


def test_a_plan_with_an_unknown_type_lists_the_known_types():
    r = say("/plan\na: echo: x\nb: telepathy: y [after a]")
    assert r.promises == []
    assert r.reply == ("Plan not accepted, nothing was created: task 'b' has unknown type 'telepathy'. Types: "
                       "analysis, code, code_review, echo, fail, noop, search, shell, sleep.")


# --- reading the chat ---------------------------------------------------------------------


def chat_log():
    return view_of(*succeeded(5, "first"), *failed_after_retries(12), *cancelled_by_failed_dependency(13, 12),
                   *running(14, "long job"), *succeeded(99, "another chat", chat_id=8))


def test_status_of_one_promise():
    assert say("/status #14", chat_log()).reply == '#14 sleep "long job": running, attempt 1 of 1'
    assert say("/status 12", chat_log()).reply == \
        '#12 fail "flaky job": failed: connection refused: db:5432 (after 3 attempts)'
    assert say("/status 5", chat_log()).reply == '#5 echo "first": succeeded, {"ok": true}'


def test_status_summarises_what_is_open():
    assert say("/status", chat_log()).reply == '1 open:\n#14 sleep "long job": running, attempt 1 of 1'
    assert say("/status", view_of(*succeeded(5))).reply == "Nothing is open in this chat. 1 finished; /list shows them."
    assert say("/status", view_of()).reply == "Nothing is open in this chat."


def test_promises_of_other_chats_are_not_visible():
    assert say("/status 99", chat_log()).reply == "There is no promise #99 in this chat."
    assert say("/why 99", chat_log()).reply == "There is no promise #99 in this chat."
    assert say("/cancel 99", chat_log()).commands == []


def test_list_shows_this_chats_promises():
    assert say("/list", chat_log()).reply == "\n".join([
        '#5 succeeded echo "first"',
        '#12 failed fail "flaky job"',
        '#13 cancelled code "run the tests"',
        '#14 running sleep "long job"',
    ])
    assert say("/list", view_of()).reply == "This chat has no promises yet. Send /do <what to do> to make one."


def test_list_shows_the_last_fifteen():
    view = view_of(*[e for i in range(1, 21) for e in succeeded(i, f"t{i}")])
    lines = say("/list", view).reply.splitlines()
    assert lines[0] == "The last 15 of 20:" and lines[1].startswith("#6 ") and len(lines) == 16


# --- steering ---------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["/cancel #14", "/cancel 14"])
def test_cancel_becomes_a_command_with_the_sender_as_reason(text):
    r = say(text, chat_log())
    assert r.commands == [RespondCommand(verb="cancel", id=14, reason="cancelled in chat by Ana")]
    assert r.reply == 'Cancelling #14 sleep "long job".'
    assert r.promises == []


def test_cancel_with_a_reason_and_dependents():
    view = view_of(*running(14), *[e for e in cancelled_by_failed_dependency(15, 14)[:1]])
    r = say("/cancel #14 not needed any more", view)
    assert r.commands == [RespondCommand(verb="cancel", id=14, reason="not needed any more")]
    assert r.reply == 'Cancelling #14 sleep "long thing". #15 will be cancelled with it.'


@pytest.mark.parametrize("text, reply", [
    ("/cancel", "Usage: /cancel id [reason], e.g. /cancel #12"),
    ("/cancel soon", "Usage: /cancel id [reason], e.g. /cancel #12"),
    ("/cancel #5", "#5 already succeeded; there is nothing to cancel."),
    ("/cancel #404", "There is no promise #404 in this chat."),
    ("/retry", "Usage: /retry id, e.g. /retry #12"),
    ("/retry 14", "#14 is running; only failed or cancelled promises can be retried."),
    ("/retry 13", "#13 depends on #12, which is failed; retry #12 first."),
])
def test_steering_what_cannot_be_steered_is_answered_without_commands(text, reply):
    r = say(text, chat_log())
    assert (r.reply, r.commands) == (reply, [])


def test_retry_a_failed_promise():
    r = say("/retry #12", chat_log())
    assert r.commands == [RespondCommand(verb="retry", id=12)]
    assert r.reply == 'Retrying #12 fail "flaky job" as a new promise.'


# --- /why, /help, plain text, unknown ----------------------------------------------------------


def test_why_tells_the_promises_story():
    reply = say("/why #13", chat_log()).reply
    assert reply.splitlines()[0] == ('#13 code "run the tests" was cancelled before it started: '
                                     'dependency #12 failed: connection refused: db:5432 (after 3 attempts)')


def test_help_lists_commands_and_types():
    reply = say("/help").reply
    assert "/plan" in reply and "/why id" in reply and reply.endswith(
        "Types: analysis, code, code_review, echo, fail, noop, search, shell, sleep")


def test_plain_text_without_a_model_gets_a_short_help():
    r = say("can you fix the build?")
    assert r.reply == commands.plain_text_reply(DEFAULT)
    assert "/do" in r.reply and "/help" in r.reply and r.promises == [] and r.commands == []


def test_an_unknown_command_points_to_help():
    assert say("/frobnicate now").reply == "I don't know /frobnicate. Send /help for the commands."


def test_commands_that_read_the_log_work_on_an_empty_chat():
    assert say("/why 3").reply == "There is no promise #3 in this chat."
    assert CHAT == 7


@pytest.mark.parametrize("text,priority,cap,input_", [
    ("/do $0.50 fix it", 5, 0.5, "fix it"),
    ("/do !1 $2 echo hi", 1, 2.0, "hi"),
    ("/do echo $0.25 !3 hi", 3, 0.25, "hi"),
    ("/do fix $5 later", 5, None, "fix $5 later"),  # a cost word inside the text is text
])
def test_do_takes_a_cost_cap_next_to_the_priority(text, priority, cap, input_):
    [task] = say(text).promises
    assert (task.priority, task.max_cost, task.input) == (priority, cap, input_)


@pytest.mark.parametrize("word", ["$0", "$-1", "$abc", "$", "$nan"])
def test_do_refuses_a_cost_cap_that_is_no_amount(word):
    result = say(f"/do {word} fix it")
    assert result.promises == [] and result.reply.startswith(f"'{word}' is not a cost cap: use an amount in USD")


# --- /budget (decision 49) -----------------------------------------------------------------------------

BUDGETS = parse_config("[budgets]\nchat_daily = 5.0\nchat_monthly = 40\nowners = [1]\n")
NOON = 1741953600.0  # 2025-03-14 12:00 UTC


def test_budget_says_what_is_left_of_this_chats_budgets():
    spent = [Created(at=NOON - 7200, id=12, title="fix", task="code", chat_id=CHAT),
             Dispatched(at=NOON - 7199, id=12, attempt=1), Started(at=NOON - 7198, id=12, attempt=1),
             Succeeded(at=NOON - 3600, id=12, attempt=1, evidence=Evidence(cost_usd=1.25))]
    asked = msgspec.structs.replace(message("/budget"), at=NOON)
    assert answer(asked, view_of(*spent), BUDGETS).reply == (
        "This chat's daily budget of $5.00: $1.25 spent, $3.75 left today\n"
        "This chat's monthly budget of $40.00: $1.25 spent, $38.75 left this month")
    assert say("/budget", view_of()).reply == "No budget is set for this chat or for you ([budgets] in valor.toml)."


def test_an_owner_raises_or_resets_the_budget_and_anyone_else_is_told_who_may():
    raised = say("/budget +5 today", view_of(), BUDGETS)
    assert raised.reply == "This chat's daily budget raised by $5.00."
    assert raised.commands == [RespondCommand(verb="budget", id=0, text="+5 today")]
    reset = say("/budget reset", view_of(), BUDGETS)
    assert reset.reply == "This chat's daily and monthly budget reset: its spend counts afresh from now."
    guest = answer(msgspec.structs.replace(message("/budget +5"), sender_id=2), view_of(), BUDGETS)
    assert (guest.reply, guest.commands) == ("Only an owner ([budgets] owners in valor.toml) can change a budget.", [])
    assert say("/budget lots", view_of(), BUDGETS).reply.startswith("'lots' is not an amount. Usage: /budget")


# --- /usage and a user's own budget, across chats (decisions 47, 49) ------------------------------------

def _spent(pid, task, chat, usd, parent=None, sender=None):
    asked = {"chat_id": chat, "message_id": pid, "sender_id": sender, "text": "x"} if sender else "x"
    return [Created(at=NOON - 7200, id=pid, title="t", task=task, chat_id=chat, parent_id=parent, input=asked),
            Dispatched(at=NOON - 7199, id=pid, attempt=1), Started(at=NOON - 7198, id=pid, attempt=1),
            Succeeded(at=NOON - 3600, id=pid, attempt=1, evidence=Evidence(cost_usd=usd))]


def _user_view():
    """Ana (user 1) asked here for a code task ($1.25, its respond $0.02), and in chat 99 for $0.50."""
    events = [*_spent(10, "respond", CHAT, 0.02, sender=1), *_spent(12, "code", CHAT, 1.25, parent=10),
              *_spent(20, "respond", 99, 0.5, sender=1), *_spent(30, "respond", 99, 9.0, sender=2)]
    return chat_view(list(enumerate(events, 1)), CHAT, user_id=1)


def test_usage_reports_this_chat_and_what_the_sender_spent_in_every_chat():
    asked = msgspec.structs.replace(message("/usage"), at=NOON)
    assert answer(asked, _user_view(), DEFAULT).reply == (
        "Today: $1.27 (2 attempts, 0 tokens)\nThis month: $1.27 (2 attempts, 0 tokens)\n"
        "By type: code $1.25, respond $0.02\nTop: #12 $1.25, #10 $0.02\n"
        "Yours, in 2 chats: $1.77 today, $1.77 this month")


def test_budget_and_usage_show_the_senders_own_budgets_counted_across_chats():
    config = parse_config("[budgets]\nchat_daily = 5.0\nuser_daily = 2.0\nuser_monthly = 10\nowners = [1]\n")
    asked = msgspec.structs.replace(message("/budget"), at=NOON)
    mine = ("This chat's daily budget of $5.00: $1.27 spent, $3.73 left today\n"
            "Your daily budget of $2.00: $1.77 spent, $0.23 left today\n"
            "Your monthly budget of $10.00: $1.77 spent, $8.23 left this month")
    assert answer(asked, _user_view(), config).reply == mine
    usage = answer(msgspec.structs.replace(asked, text="/usage"), _user_view(), config).reply
    assert usage.endswith("Yours, in 2 chats: $1.77 today, $1.77 this month\n" + mine)
    # An owner's raise of user 1's budget, recorded in the other chat, counts here too.
    raised = BudgetAdjusted(at=NOON - 60, id=20, scope="user", target=1, period="day", add=3.0, request_id="b:20:0:day")
    view = chat_view(list(enumerate([*_spent(10, "respond", CHAT, 0.02, sender=1), *_spent(20, "respond", 99, 0.5,
                                                                                            sender=1), raised], 1)),
                     CHAT, user_id=1)
    assert "Your daily budget of $2.00 + $3.00 added: $0.52 spent, $4.48 left today" in \
        answer(asked, view, config).reply
