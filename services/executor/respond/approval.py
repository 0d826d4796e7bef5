"""Answering a plan that waits for approval (decision 45).  Pure.

The words: "go", "yes" or 👍 approve, "no" refuses.  Which plan they answer:
the one whose message the user replies to, else the chat's only plan that
waits (several: the reply asks which).  The answer is a respond result with
an ``approve`` or ``reject`` command the scheduler applies to every held step.
Other text about a waiting plan ("skip step 2") is an edit: the LLM agent
makes it (rejects the plan, plans the changed one); the command agent cannot
and says so.  ``/approve [id]`` and ``/reject [id] [reason]`` say the same
explicitly.  ``prompt`` is what the chat is shown when a plan starts waiting.
"""

from __future__ import annotations

import re

from promises.projection import Promise
from promises.states import State
from promises.story import short
from schemas.commands import RespondCommand, RespondResult
from schemas.events import MessageReceived

from .view import ChatView

APPROVE, REJECT = "approve", "reject"
WORDS = {
    APPROVE: frozenset({"go", "go ahead", "yes", "y", "ok", "okay", "approve", "approved", "run it", "do it",
                        "lgtm", "👍"}),
    REJECT: frozenset({"no", "n", "nope", "reject", "don't", "dont", "👎"}),
}
# Skin tones and the emoji presentation selector: 👍🏽 is 👍.
_MODIFIERS = re.compile("[\U0001F3FB-\U0001F3FF\uFE0F]")


def gesture(text: str) -> str | None:
    """``approve``, ``reject`` or None: what a message says to a waiting plan, if it is one of the words."""
    said = _MODIFIERS.sub("", text).strip().rstrip(".!").strip().lower()
    said = " ".join(said.split())
    if said and set(said) == {"👍"}:  # 👍👍
        said = "👍"
    return next((verb for verb, words in WORDS.items() if said in words), None)


def steps_text(steps: list[Promise]) -> str:
    return ", ".join(f"#{p.id} {p.spec.name or short(p.spec.title, 40)}" for p in steps)


def waiting(view: ChatView) -> list[list[Promise]]:
    """The chat's plans with steps awaiting approval, oldest first, each its held steps."""
    plans: dict[object, list[Promise]] = {}
    for pid, p in sorted(view.promises.items()):
        if p.status == State.AWAITING:
            plans.setdefault(p.spec.request_id or pid, []).append(p)
    return list(plans.values())


def _plan(view: ChatView, p: Promise) -> list[Promise]:
    """Every step of the plan ``p`` is part of (a respond promise: the plan it spawned)."""
    if p.spec.task == "respond":
        ids = sorted((p.children or {}).values())
        return [s for i in ids if (s := view.get(i)) is not None]
    if p.spec.request_id is None:
        return [p]
    return [s for _, s in sorted(view.promises.items()) if s.spec.request_id == p.spec.request_id]


def replied_plan(msg: MessageReceived, view: ChatView) -> list[Promise] | None:
    """The plan that waited (or waits) for approval whose message this one replies to; None otherwise."""
    if msg.reply_to is None:
        return None
    about = view.about(msg.reply_to)
    steps = _plan(view, about) if about is not None else []
    return steps if any(s.spec.awaits_approval for s in steps) else None


def _decided(verb: str, steps: list[Promise], msg: MessageReceived, because: str = "") -> RespondResult:
    held = [s for s in steps if s.status == State.AWAITING]
    if not held:
        states = ", ".join(f"#{s.id} {s.state}" for s in steps)
        return RespondResult(reply=f"That plan is no longer waiting for approval ({states}).")
    who = msg.sender_name or "the user"
    if verb == APPROVE:
        return RespondResult(reply=f"Approved: {steps_text(held)} may run now.",
                             commands=[RespondCommand(verb=APPROVE, id=held[0].id, reason=f"approved in chat by {who}")])
    reason = f"plan rejected in chat by {who}" + (f": {because}" if because else "")
    return RespondResult(reply=f"Rejected: {steps_text(held)} are cancelled; none of it ran.",
                         commands=[RespondCommand(verb=REJECT, id=held[0].id, reason=reason)])


def _which(plans: list[list[Promise]], verb: str) -> RespondResult:
    listed = "; ".join(steps_text(steps) for steps in plans)
    return RespondResult(reply=f"{len(plans)} plans wait for approval: {listed}. Reply to the message of the one "
                               f"you mean, or send /{verb} with one of its ids.")


def _cannot_edit(plans: list[list[Promise]]) -> RespondResult:
    listed = "; ".join(steps_text(steps) for steps in plans)
    return RespondResult(reply=f"Waiting for approval: {listed}. Without a language model I can't change a plan: "
                               "answer go to run it as it is, or no to cancel it and send a new /plan.")


def needs_log(msg: MessageReceived, llm: bool) -> bool:
    """Whether ``answer`` must see the chat's log: the words, and (without a model) any plain text."""
    text = msg.text.strip()
    return bool(text) and not text.startswith("/") and (gesture(text) is not None or msg.reply_to is not None
                                                         or not llm)


def answer(msg: MessageReceived, view: ChatView | None) -> RespondResult | None:
    """The answer to a go or a no for a waiting plan; None when the message is not one (or about nothing waiting)."""
    if view is None or msg.text.lstrip().startswith("/") or (verb := gesture(msg.text)) is None:
        return None
    replied = replied_plan(msg, view)
    if msg.reply_to is not None:
        return _decided(verb, replied, msg) if replied is not None else None  # else: a reply to something else
    plans = waiting(view)
    if len(plans) > 1:
        return _which(plans, verb)
    return _decided(verb, plans[0], msg) if plans else None


def cannot_edit(msg: MessageReceived, view: ChatView | None) -> RespondResult | None:
    """The command agent's answer to other text while a plan waits: it cannot change a plan, and says so.

    Only text that is about a waiting plan: a reply to its message, or a message
    replying to nothing while plans wait.  (The LLM agent makes such edits.)
    """
    if view is None or not msg.text.strip() or msg.text.lstrip().startswith("/"):
        return None
    if msg.reply_to is not None:
        held = [s for s in replied_plan(msg, view) or [] if s.status == State.AWAITING]
        return _cannot_edit([held]) if held else None
    plans = waiting(view)
    return _cannot_edit(plans) if plans else None


def _named(rest: str, msg: MessageReceived, view: ChatView, verb: str) -> tuple[list[Promise] | RespondResult, str]:
    """The plan ``/approve 12`` (or a bare ``/approve``) names, or the reply saying why there is none; and
    the rest of the text (a reason)."""
    word, tail = (rest.split(None, 1) + ["", ""])[:2]
    pid = word.removeprefix("#")
    if pid.isdigit():
        p = view.get(int(pid))
        if p is None:
            return RespondResult(reply=f"There is no promise #{pid} in this chat."), tail
        return _plan(view, p), tail
    if (replied := replied_plan(msg, view)) is not None:
        return replied, rest
    plans = waiting(view)
    if len(plans) > 1:
        return _which(plans, verb), rest
    if not plans:
        return RespondResult(reply="No plan in this chat is waiting for approval."), rest
    return plans[0], rest


def approve_command(rest: str, msg: MessageReceived, view: ChatView, config) -> RespondResult:
    steps, _ = _named(rest, msg, view, APPROVE)
    return steps if isinstance(steps, RespondResult) else _decided(APPROVE, steps, msg)


def reject_command(rest: str, msg: MessageReceived, view: ChatView, config) -> RespondResult:
    steps, reason = _named(rest, msg, view, REJECT)
    return steps if isinstance(steps, RespondResult) else _decided(REJECT, steps, msg, reason.strip())


def context(msg: MessageReceived, view: ChatView) -> str:
    """For the model: which waiting plan a reply is about, so "skip step 2" has its plan."""
    replied = replied_plan(msg, view)
    held = [s for s in replied or [] if s.status == State.AWAITING]
    if not held:
        return ""
    return (f"(This replies to your message about the plan {steps_text(held)}, which awaits approval: to change it, "
            "reject it and create the changed plan.)")


