"""The ``respond`` task: a chat message in, a reply plus promises and commands out.

``respond_handler(config, nc)`` is the handler the executor registers for type
``respond``.  Its input is the ``message.received`` event (as a dict); its
result a ``RespondResult`` as a plain dict, from which the scheduler creates
the promised tasks and applies the commands, then records ``spawned``.

Which agent answers: "go", "yes", 👍 or "no" for a plan that waits for
approval are answered first (``approval.py``, no model needed); messages
starting with ``/`` always go to the command agent (``commands.py``, pure); a
plain reply to Valor's message about a promise steers that promise
(``steer.py``: stop, retry, why, or instructions for it, which continue a
Claude Code task that ended), or, "show 2" replying to a plan's message,
shows that step (``show.py``); other text goes
to the LLM agent (``llm.py``) when ``ANTHROPIC_API_KEY`` is set, else to the
command agent, which answers with a short help.  The chat's context is read by
``history.py``, only when the answer needs it.  Files sent with the message
reach the tasks by their paths in the workspace (``attached.py``); a file that
could not be saved is named in the reply whichever agent answers.

The input may instead be catch-up's ``messages_skipped`` (decision 54): its
reply is made without a model (``skipped.py``); so is a bot's ``updates_gap`` (``gap.py``).

Errors: a message that is not a ``message.received`` fails for good; the log
or the model being unreachable fails the attempt retryably.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Mapping
from typing import Any

import anthropic
import msgspec
import nats.errors
from nats.aio.client import Client

from schemas.commands import RespondResult
from schemas.events import MessageReceived
from services.executor.context import AttemptContext, TaskFailed
from valor.config import Config

from . import approval, attached, commands, gap, skipped
from .history import read_chat
from .llm import LlmAgent, make_client
from .reply import honest_reply
from .show import show_step
from .steer import steer
from .view import ChatView

__all__ = ["Responder", "respond_handler", "honest_reply", "message_of"]


def message_of(value: Any) -> MessageReceived:
    """The respond input as a message; a malformed one is a non-retryable failure."""
    if isinstance(value, dict) and "type" not in value:
        value = {**value, "type": "message.received"}
    try:
        return msgspec.convert(value, MessageReceived)
    except msgspec.ValidationError as exc:
        raise TaskFailed(f"respond input is not a message.received event: {exc}", retryable=False) from None


class Responder:
    """The respond handler: ``await responder(ctx)`` -> ``RespondResult`` as a dict."""

    def __init__(self, config: Config, nc: Client, llm: LlmAgent | None = None):
        self.config = config
        self.nc = nc
        self.llm = llm

    async def __call__(self, ctx: AttemptContext) -> dict[str, Any]:
        if skipped.is_skipped(ctx.input):  # catch-up's summary of what was too old (decision 54)
            return msgspec.to_builtins(skipped.answer(ctx.input))
        if gap.is_gap(ctx.input):  # a bot's updates Telegram would not give (issue 15)
            return msgspec.to_builtins(gap.answer(ctx.input))
        msg = message_of(ctx.input)
        return msgspec.to_builtins(await self.answer(msg, ctx))

    async def answer(self, msg: MessageReceived, ctx: AttemptContext | None = None) -> RespondResult:
        """The answer to ``msg``; the model's usage, if a model answered, is ``ctx.evidence``."""
        if not msg.text.strip() and not msg.attachments:
            return RespondResult(reply="I can only read text messages.")
        use_llm = self.llm is not None and not commands.is_command(msg.text)
        replying = msg.reply_to is not None and not commands.is_command(msg.text)
        view: ChatView | None = None
        if use_llm or replying or commands.needs_log(msg.text) or approval.needs_log(msg, self.llm is not None):
            view = await self._read(msg, self.config.agent.history if use_llm else 0)
        if (answered := approval.answer(msg, view)) is not None:
            return attached.noted(answered, msg)  # a go or a no for a waiting plan: no model needed
        if replying and (ran := skipped.ran(msg, view)) is not None:
            return ran  # "run them" replying to catch-up's summary: the scheduler runs them (decision 63)
        if replying and view is not None and (shown := show_step(msg, view)) is not None:
            return shown  # "show 2" replying to a plan's message
        if replying and (steered := steer(msg, view, self.config)) is not None:
            # The reply names its promise and the gesture is a word: nothing for a model to decide.
            return attached.noted(steered, msg)
        if use_llm:
            return attached.noted(await self.llm.respond(msg, view, ctx), msg)
        return attached.noted(commands.answer(msg, view, self.config), msg)

    async def _read(self, msg: MessageReceived, history: int) -> ChatView:
        try:
            spends = commands.needs_user(msg.text)
            view = await read_chat(self.nc, msg.chat_id, history, before=msg.message_id,
                                   about=mentioned(msg.text), reply_to=msg.reply_to, spend=spends,
                                   user_id=(msg.sender_id or None) if spends else None, now=msg.at or time.time(),
                                   budgets=commands.budgets_of(msg, self.config) if spends else ())
            # A reply is about Valor's message's promise and, for a plan, its steps (``show 2``, steering).
            if msg.reply_to is not None and (p := view.about(msg.reply_to)) is not None:
                await view.load_events([p.id, *(p.children or {}).values()])
            return view
        except (TimeoutError, nats.errors.Error) as exc:
            raise TaskFailed(f"cannot read chat {msg.chat_id}'s context: {type(exc).__name__}: {exc}") from None


def mentioned(text: str) -> list[int]:
    """The promise ids a message names (``/why 12``, ``#12``): whose events the answer may tell."""
    return [int(n) for n in re.findall(r"(?<![\w.])#?(\d{1,12})\b", text)]


def respond_handler(config: Config, nc: Client, *, env: Mapping[str, str] | None = None,
                    client: anthropic.AsyncAnthropic | None = None) -> Responder:
    """The handler for type ``respond``.

    The LLM agent is on when ``client`` is given or ``ANTHROPIC_API_KEY`` is set
    in ``env`` (default: the process environment); ``ANTHROPIC_BASE_URL`` points
    the SDK elsewhere, e.g. at a local fake.
    """
    env = os.environ if env is None else env
    if client is None and env.get("ANTHROPIC_API_KEY"):
        client = make_client(env["ANTHROPIC_API_KEY"], env.get("ANTHROPIC_BASE_URL") or None)
    return Responder(config, nc, LlmAgent(config, client) if client is not None else None)
