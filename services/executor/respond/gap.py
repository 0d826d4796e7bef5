"""The reply to a bot account's ``updates_gap`` (issue 15).  Pure, no model.

A bot cannot read history: when Telegram says the updates it missed are too
many to give, the messages in the gap are lost to Valor.  This says so, once,
with the time they may date from (UTC, as Telegram stores it).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec

from schemas.commands import RespondResult
from schemas.events import UpdatesGap

TAG = "updates_gap"


def is_gap(value: Any) -> bool:
    return isinstance(value, dict) and value.get("type") == TAG


def reply(fact: UpdatesGap) -> RespondResult:
    until = datetime.fromtimestamp(fact.until, UTC)
    return RespondResult(reply=f"I was offline; messages before {until:%H:%M} UTC ({until:%-d %b}) may not have "
                               "reached me. Resend the ones you still want.")


def answer(value: dict) -> RespondResult:
    return reply(msgspec.convert(value, UpdatesGap))
