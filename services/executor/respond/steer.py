"""Steering a promise by replying to Valor's message about it.  Pure.

Which promise: the one whose "Promised", status or result message the reply
answers, read from the notifier's ``notified`` records (``ChatView.about``).
The agent's own answer ("Promised: #12 code …") is about the promises it
created: several for a plan, and "#13 …" picks one of them.

What to do is the reply's text (``gestures.py``): stop, retry and why act on
the promise like ``/cancel``, ``/retry`` and ``/why``; any other text adds
instructions:

- to a Claude Code task not started yet, or waiting to retry: they join its
  input (the scheduler records ``instructions_added``, the work item carries
  them, ``/why`` shows them);
- to one running: the executor running it writes them into the live session
  and records ``instructions_delivered``;
- to one that ended: a follow-up promise continues its session (decision 36);
- to an open task of another type: refused with the reason, its input is not
  text a model reads.

``steer`` returns None when the reply is not about a promise it can act on (a
message Valor sent about nothing, the agent's answer that created nothing,
instructions to an ended task without a session): the agents answer it as any
other message.  A message that replies to nothing never steers: it is a new
request, queued behind nothing it could interrupt.
"""

from __future__ import annotations

from promises.continuation import is_claude
from promises.projection import Promise
from promises.states import State
from promises.story import explain, short
from schemas.commands import RespondCommand, RespondResult
from schemas.events import MessageReceived
from valor.config import Config

from . import attached, gestures
from .commands import cancel_one, continuation, is_command, label, retry_one
from .view import ChatView


def steer(msg: MessageReceived, view: ChatView | None, config: Config) -> RespondResult | None:
    if msg.reply_to is None or view is None or is_command(msg.text):
        return None
    about = view.about(msg.reply_to)
    targets = promises_about(about, view) if about is not None else []
    if not targets:
        return None
    gesture = gestures.parse(msg.text)
    if gesture.pick is not None:
        picked = [p for p in targets if p.id == gesture.pick]
        if not picked:
            return RespondResult(reply=f"#{gesture.pick} is not one of the promises that message is about "
                                       f"({ids(targets)}).")
        targets = picked
    match gesture.kind:
        case gestures.CANCEL:
            return cancel(targets, msg, view)
        case gestures.RETRY:
            return retry(targets, view)
        case gestures.WHY:
            return RespondResult(reply="\n\n".join(explain(view.events.get(p.id, [])) for p in targets))
    if any(p.status == State.AWAITING for p in targets):
        return None  # "skip step 2" to a plan that waits is an edit of the plan: the agents' (decision 45)
    return instruct(targets, gesture.text, msg, config)


def promises_about(about: Promise, view: ChatView) -> list[Promise]:
    """The promises a message about ``about`` steers: the agent's answer means what it created."""
    if about.spec.task != "respond":
        return [about]
    children = sorted((about.children or {}).values())
    return [p for pid in children if (p := view.get(pid)) is not None]


def ids(promises: list[Promise]) -> str:
    return ", ".join(f"#{p.id}" for p in promises)


def combined(results: list[RespondResult]) -> RespondResult:
    return RespondResult(reply="\n".join(r.reply for r in results),
                         commands=[c for r in results for c in r.commands])


def cancel(targets: list[Promise], msg: MessageReceived, view: ChatView) -> RespondResult:
    """Cancel the open ones; a step waiting for another open one goes with it (the scheduler's cascade)."""
    open_ = [p for p in targets if not p.terminal]
    if not open_:
        if len(targets) == 1:
            return cancel_one(targets[0], "", msg, view)
        return RespondResult(reply=f"{ids(targets)} have all ended; there is nothing to cancel.")
    open_ids = {p.id for p in open_}
    roots = [p for p in open_ if not open_ids.intersection(p.spec.depends_on)]
    return combined([cancel_one(p, "", msg, view) for p in roots])


def retry(targets: list[Promise], view: ChatView) -> RespondResult:
    """Retry each one that can be; the others say why not."""
    return combined([retry_one(p, view) for p in targets])


def instruct(targets: list[Promise], text: str, msg: MessageReceived, config: Config) -> RespondResult | None:
    text = "\n\n".join(part for part in (text, attached.lines(msg)) if part)
    if len(targets) > 1:
        return RespondResult(reply=f"That message is about {len(targets)} promises ({ids(targets)}); start your "
                                   f"reply with the one you mean, e.g. #{targets[0].id} {text or 'stop'}")
    p = targets[0]
    if not text:
        return RespondResult(reply=f"What about {label(p)}? Reply stop, retry or why, or what it should do.")
    if p.terminal:
        # Continuing needs a session; an ended task without one leaves the message to the agents.
        return continuation(p, text, msg, config) if is_claude(p, config) else None
    if not is_claude(p, config):
        return RespondResult(reply=f"#{p.id} is a {p.spec.task} task: its input is fixed, so it takes no "
                                   "instructions. Reply stop to cancel it, or send a new request.")
    if p.state == State.RUNNING:
        reply = f"Passing that to {label(p)} while it runs: {short(text, 80)}"
    elif p.state == State.RETRYING:
        reply = f"Added to {label(p)} for its next attempt: {short(text, 80)}"
    else:
        reply = f"Added to {label(p)} before it starts: {short(text, 80)}"
    if gestures.begins_like_one(text):
        reply += "\n(To cancel it instead, reply just: stop)"
    return RespondResult(reply=reply, commands=[RespondCommand(verb="instruct", id=p.id, text=text)])
