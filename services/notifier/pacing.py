"""When the next call to a chat may go: Telegram's limits as arithmetic.  Pure: time is an argument.

Each chat has two lanes (``outbox.py``): *messages* and *cosmetic* actions
(reactions, edits).  A lane's calls go at least ``chat_interval`` apart; a
group (negative chat id) gets at most ``group_per_minute`` messages in any 60 s;
one message is edited at most once per ``edit_interval``.  A flood wait
Telegram answered is waited out by the lane's worker, its seconds plus one,
before the same call is tried again (the worker holds the lane meanwhile).
A call that failed otherwise is tried again after a delay that doubles from
1 s up to 5 minutes.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Literal

from valor.config import Telegram

LaneName = Literal["messages", "cosmetic"]
MESSAGES: LaneName = "messages"
COSMETIC: LaneName = "cosmetic"
Lane = tuple[int, LaneName]  # (chat, lane)

GROUP_WINDOW = 60.0
FLOOD_MARGIN = 1.0  # Telegram's seconds are rounded: one more, so the retry is not itself too early
RETRY_FIRST, RETRY_MAX = 1.0, 300.0


@dataclass
class Pacer:
    limits: Telegram
    last_out: dict[Lane, float] = field(default_factory=dict)  # when the lane's last call went out
    edited_at: dict[tuple[int, int], float] = field(default_factory=dict)  # (chat, message) -> last edit
    group_sends: dict[int, deque[float]] = field(default_factory=dict)  # a group's sends in the last minute

    def ready_at(self, lane: Lane, edits: int | None = None) -> float:
        """The earliest time a call on ``lane`` may go; ``edits``: the message it edits, if it is an edit.

        A send on the messages lane of a group also waits for room in the group's minute.
        """
        at = self.last_out.get(lane, 0.0) + self.limits.chat_interval
        chat, name = lane
        if edits is not None:
            at = max(at, self.edited_at.get((chat, edits), 0.0) + self.limits.edit_interval)
        if name == MESSAGES and chat < 0:  # groups and channels have negative ids
            sends = self.group_sends.get(chat)
            if sends and len(sends) >= self.limits.group_per_minute:
                at = max(at, sends[0] + GROUP_WINDOW)
        return at

    def spent(self, lane: Lane, now: float) -> None:
        """A call went out on ``lane`` at ``now`` (a group's message counts in its minute)."""
        self.last_out[lane] = now
        chat, name = lane
        if name == MESSAGES and chat < 0:
            sends = self.group_sends.setdefault(chat, deque())
            sends.append(now)
            while sends and sends[0] <= now - GROUP_WINDOW:
                sends.popleft()

    def edited(self, chat: int, message: int, now: float) -> None:
        """The message shows new text since ``now`` (edited, or just sent): its next edit waits."""
        self.edited_at[(chat, message)] = now

def flood_wait(seconds: float) -> float:
    """How long to wait before repeating a call Telegram answered with a flood wait of ``seconds``."""
    return seconds + FLOOD_MARGIN


def retry_delay(failures: int) -> float:
    """The wait before trying a failed call again, after ``failures`` failures in a row (1 s, 2 s, 4 s, … 5 min)."""
    return min(RETRY_FIRST * 2 ** max(failures - 1, 0), RETRY_MAX)
