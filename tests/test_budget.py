"""Budgets and estimates as plain values: the decision table, what is left after raises and resets, the
grammar owners use, the config's checks and the estimate's words (decision 49)."""

import datetime
import re

import pytest

from schemas.events import BudgetAdjusted, Created
from valor import budget
from valor.budget import Budget, Change, Standing
from valor.config import ConfigError, parse
from valor.spend import Charge

NOON = datetime.datetime(2025, 3, 14, 12, tzinfo=datetime.UTC).timestamp()
HOUR = 3600.0
CHAT_DAY = Budget("chat", 5, "day", 5.0)
CHAT_MONTH = Budget("chat", 5, "month", 50.0)
USER_DAY = Budget("user", 7, "day", 2.0)


@pytest.mark.parametrize(("standings", "estimate", "reason"), [
    ([], None, None),
    ([Standing(CHAT_DAY, spent=1.0)], None, None),
    ([Standing(CHAT_DAY, spent=5.0)], None, "over budget: $0.00 left today (this chat's daily budget of $5.00)"),
    ([Standing(CHAT_DAY, spent=7.5)], None, "over budget: $0.00 left today (this chat's daily budget of $5.00)"),
    ([Standing(CHAT_DAY, spent=5.0, added=5.0)], None, None),
    ([Standing(CHAT_DAY, spent=4.0)], 0.5, None),
    ([Standing(CHAT_DAY, spent=4.0)], 1.5,
     "over budget: $1.00 left today (this chat's daily budget of $5.00), the plan is estimated at $1.50"),
    ([Standing(CHAT_DAY, spent=1.0), Standing(CHAT_MONTH, spent=50.0)], None,
     "over budget: $0.00 left this month (this chat's monthly budget of $50.00)"),
    ([Standing(CHAT_DAY, spent=1.0), Standing(USER_DAY, spent=1.75)], 0.5,
     "over budget: $0.25 left today (your daily budget of $2.00), the plan is estimated at $0.50"),
    ([Standing(CHAT_DAY, spent=5.0), Standing(CHAT_MONTH, spent=50.0)], None,
     "over budget: $0.00 left today (this chat's daily budget of $5.00)"),
    ([Standing(Budget("chat", 5, "day", 0.0))], None,
     "over budget: $0.00 left today (this chat's daily budget of $0.00)"),
], ids=["no budget", "within", "spent exactly", "overspent", "raised", "estimate fits", "estimate does not fit",
        "month spent", "the user's is tightest", "both spent: the day named", "a zero budget"])
def test_over_budget_decides_from_what_is_left_and_the_estimate(standings, estimate, reason):
    assert budget.over_budget(standings, estimate) == reason


def charge(at: float, usd: float, chat: int = 5, user: int | None = 7) -> Charge:
    return Charge(promise_id=1, attempt=1, at=at, task="code", chat_id=chat, user_id=user, plan=1, usd=usd)


def adjusted(at: float, add: float = 0.0, reset: bool = False, period: str = "day", scope: str = "chat",
             target: int = 5) -> BudgetAdjusted:
    return BudgetAdjusted(at=at, id=1, scope=scope, target=target, period=period, add=add, reset=reset,
                          request_id=f"budget:1:{at}:{period}")


def test_what_is_left_counts_this_period_only_and_this_chat_only():
    charges = [charge(NOON - 13 * HOUR, 4.0), charge(NOON - HOUR, 1.5), charge(NOON - HOUR, 9.0, chat=6),
               charge(NOON + HOUR, 3.0)]  # yesterday, today, another chat, later than now
    assert budget.standing(CHAT_DAY, charges, [], NOON).left == 3.5
    assert budget.standing(CHAT_MONTH, charges, [], NOON).left == 44.5
    assert budget.standing(USER_DAY, charges, [], NOON).left == 2.0 - 1.5 - 9.0


def test_a_raise_lasts_its_period_and_a_reset_counts_afresh_dropping_earlier_raises():
    charges = [charge(NOON - 3 * HOUR, 4.0), charge(NOON - HOUR, 2.0)]
    yesterday = adjusted(NOON - 20 * HOUR, add=100.0)
    raised = adjusted(NOON - 2.5 * HOUR, add=3.0)
    assert budget.standing(CHAT_DAY, charges, [yesterday, raised], NOON) == Standing(CHAT_DAY, added=3.0, spent=6.0)
    reset = adjusted(NOON - 2 * HOUR, reset=True)
    assert budget.standing(CHAT_DAY, charges, [raised, reset], NOON) == Standing(CHAT_DAY, added=0.0, spent=2.0)
    later = adjusted(NOON - 0.5 * HOUR, add=1.0)
    assert budget.standing(CHAT_DAY, charges, [reset, raised, later], NOON).left == 4.0
    other = adjusted(NOON - HOUR, add=50.0, scope="user", target=7)
    assert budget.standing(CHAT_DAY, charges, [other], NOON).added == 0.0
    assert budget.standing(CHAT_MONTH, charges, [reset], NOON).spent == 6.0  # a day's reset leaves the month


def test_a_chats_own_budget_overrides_the_default_and_users_have_theirs():
    config = parse("[budgets]\nchat_daily = 5.0\nuser_monthly = 50\n[chats.5]\ndaily_budget = 1.5\n"
                   "monthly_budget = 20\n")
    assert budget.budgets(config, 5, 7) == [Budget("chat", 5, "day", 1.5), Budget("chat", 5, "month", 20.0),
                                            Budget("user", 7, "month", 50.0)]
    assert budget.budgets(config, 6, None) == [Budget("chat", 6, "day", 5.0)]
    assert budget.budgets(parse(""), 5, 7) == []


def test_check_holds_the_request_of_a_spent_chat_and_says_what_is_left():
    config = parse("[budgets]\nchat_daily = 5.0\n")
    assert budget.check(config, 5, 7, [charge(NOON - HOUR, 5.0)], [], NOON) == (
        "over budget: $0.00 left today (this chat's daily budget of $5.00)")
    assert budget.check(config, 6, 7, [charge(NOON - HOUR, 5.0)], [], NOON) is None
    assert budget.check(parse(""), 5, 7, [charge(NOON - HOUR, 500.0)], [], NOON) is None


@pytest.mark.parametrize(("text", "change"), [
    ("", None),
    ("+5", Change(("day",), add=5.0)),
    ("+5 today", Change(("day",), add=5.0)),
    ("+$2.50 month", Change(("month",), add=2.5)),
    ("reset", Change(("day", "month"), reset=True)),
    ("reset today", Change(("day",), reset=True)),
    ("+20 month user 123", Change(("month",), add=20.0, scope="user", target=123)),
])
def test_the_budget_command_grammar(text, change):
    assert budget.parse_change(text) == change


@pytest.mark.parametrize(("text", "error"), [
    ("5", "positive amount, e.g. +5"), ("+0", "positive amount"), ("+x", "'+x' is not an amount"),
    ("+5 today month", "Usage"), ("+5 user", "'user' needs a user id"), ("raise", "'raise' is not an amount"),
])
def test_the_budget_command_refuses_what_it_cannot_read(text, error):
    with pytest.raises(budget.BadBudget, match=re.escape(error)):
        budget.parse_change(text)


@pytest.mark.parametrize(("toml", "error"), [
    ("[budgets]\nchat_daily = -1\n", "budgets.chat_daily: must not be negative"),
    ("[budgets]\nuser_monthly = 'lots'\n", "budgets.user_monthly: Expected `float | null`"),
    ("[budgets]\nowners = ['ana']\n", "budgets.owners"),
    ("[budgets]\nweekly = 3\n", "budgets.weekly: unknown key"),
    ("[chats.5]\ndaily_budget = -2\n", "chats.5.daily_budget: must not be negative"),
])
def test_a_bad_budget_in_the_config_is_named(toml, error):
    with pytest.raises(ConfigError, match=re.escape(error)):
        parse(toml)


class P:
    """What ``estimates`` reads of a projection's promise."""

    def __init__(self, task: str, cost: float | None, terminal: bool = True):
        self.spec = Created(id=1, title="t", task=task)
        self.terminal, self.cost_usd, self.spent = terminal, cost or 0.0, [cost] if cost is not None else []


def test_an_estimate_is_the_mean_of_the_types_latest_ended_runs_that_spent():
    promises = [P("code", 9.0), P("code", 1.0), P("code", 2.0), P("code", None), P("code", 50.0, terminal=False),
                P("search", 0.25)]
    assert budget.estimates(promises, {"code", "search", "analysis"}, runs=2) == {
        "code": budget.Estimate(1.5, 2, "code"), "search": budget.Estimate(0.25, 1, "search")}


def test_a_plans_estimate_is_labelled_with_its_history():
    code = Created(id=2, title="a", task="code", estimate_usd=0.42, estimate_runs=5)
    search = Created(id=3, title="b", task="search", estimate_usd=0.1, estimate_runs=1)
    echo = Created(id=4, title="c", task="echo")
    assert budget.plan_estimate([code]) == "💲 About $0.42 (estimate from the last 5 code runs)."
    assert budget.plan_estimate([code, search, echo]) == (
        "💲 About $0.52 in all: $0.42 (estimate from the last 5 code runs); "
        "$0.10 (estimate from the last 1 search run), and 1 step with no history.")
    assert budget.plan_estimate([echo]) == ""
