"""The notifier's pacing as a table: what went out when, and when the next call may go."""

from __future__ import annotations

import pytest

from services.notifier.pacing import COSMETIC, MESSAGES, Pacer, flood_wait, retry_delay
from valor.config import Telegram

LIMITS = Telegram(chat_interval=1.0, edit_interval=3.0, group_per_minute=3)
ALICE, GROUP = 42, -100


def pacer(*spent: tuple[int, str, float], edited=()) -> Pacer:
    p = Pacer(LIMITS)
    for chat, lane, at in spent:
        p.spent((chat, lane), at)
    for chat, message, at in edited:
        p.edited(chat, message, at)
    return p


@pytest.mark.parametrize("history, lane, edits, ready", [
    # nothing sent yet: now
    (pacer(), (ALICE, MESSAGES), None, 1.0),
    # a lane's calls chat_interval apart; the other lane of the chat does not wait for it
    (pacer((ALICE, MESSAGES, 10.0)), (ALICE, MESSAGES), None, 11.0),
    (pacer((ALICE, MESSAGES, 10.0)), (ALICE, COSMETIC), None, 1.0),
    (pacer((ALICE, MESSAGES, 10.0)), (7, MESSAGES), None, 1.0),  # nor another chat
    # an edit waits edit_interval after the message last changed, and chat_interval after the lane's last call
    (pacer((ALICE, COSMETIC, 10.0), edited=[(ALICE, 5, 10.0)]), (ALICE, COSMETIC), 5, 13.0),
    (pacer((ALICE, COSMETIC, 10.0), edited=[(ALICE, 5, 2.0)]), (ALICE, COSMETIC), 5, 11.0),
    (pacer((ALICE, COSMETIC, 10.0), edited=[(ALICE, 5, 10.0)]), (ALICE, COSMETIC), 6, 11.0),  # another message
    # a group: at most group_per_minute messages in any minute
    (pacer((GROUP, MESSAGES, 10.0), (GROUP, MESSAGES, 11.0)), (GROUP, MESSAGES), None, 12.0),
    (pacer((GROUP, MESSAGES, 10.0), (GROUP, MESSAGES, 11.0), (GROUP, MESSAGES, 12.0)), (GROUP, MESSAGES), None, 70.0),
    (pacer((GROUP, MESSAGES, 10.0), (GROUP, MESSAGES, 11.0), (GROUP, MESSAGES, 71.0)), (GROUP, MESSAGES), None, 72.0),
    (pacer((GROUP, COSMETIC, 10.0), (GROUP, COSMETIC, 11.0), (GROUP, COSMETIC, 12.0)), (GROUP, COSMETIC), None, 13.0),
    # a private chat has no minute's cap
    (pacer((ALICE, MESSAGES, 10.0), (ALICE, MESSAGES, 11.0), (ALICE, MESSAGES, 12.0)), (ALICE, MESSAGES), None, 13.0),
])
def test_when_the_next_call_may_go(history, lane, edits, ready):
    assert history.ready_at(lane, edits=edits) == ready


@pytest.mark.parametrize("seconds, wait", [(30, 31.0), (0, 1.0), (5, 6.0)])
def test_a_flood_wait_is_waited_out_with_a_second_to_spare(seconds, wait):
    assert flood_wait(seconds) == wait


def test_a_group_s_minute_forgets_sends_older_than_a_minute():
    p = pacer((GROUP, MESSAGES, 10.0), (GROUP, MESSAGES, 11.0), (GROUP, MESSAGES, 75.0))
    assert list(p.group_sends[GROUP]) == [75.0]


@pytest.mark.parametrize("failures, delay", [(1, 1.0), (2, 2.0), (3, 4.0), (9, 256.0), (10, 300.0), (50, 300.0)])
def test_a_failed_call_is_retried_after_a_doubling_delay_up_to_five_minutes(failures, delay):
    assert retry_delay(failures) == delay
