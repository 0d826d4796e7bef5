"""Whether to tell a chat that what it sent cannot be stored: once per outage (decision 77).

While two of three nodes are gone, a message ingest accepted cannot be stored on CHAT,
so nothing downstream knows of it and its sender would meet silence.  Ingest holds the
message (its publish retries until a node returns) and tells the chat once: from a
store refused for lack of a quorum until a store for that chat is accepted again.
A store refused for any other reason (a stream electing its leader after one node
was lost, a slow disk) is waited out without a word.

Here with plain values; the ingest (``service.py``) asks the cluster, sends and stores.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

# A quorum answer is reused this long: counting the nodes opens a connection to each,
# and every held message's retry asks.
QUORUM_CHECK_EVERY = 2.0
# The messages last replied to, never again: a message read live and from history is held by two
# retries, and one may be refused again in the next outage after the other stored it.
TOLD_ABOUT = 64


@dataclass(frozen=True)
class Outage:
    told: frozenset[int] = frozenset()  # chats told since their last accepted store
    checked_at: float | None = None  # when the cluster was last asked
    nodes: tuple[int, int] | None = None  # (up, total) when that answer was "no quorum"
    told_about: tuple[tuple[int, int | None], ...] = ()  # (chat, message) replied to, the newest last


def check_due(state: Outage, now: float) -> bool:
    """Ask the cluster again (the last answer is too old, or the clock went back)?"""
    return state.checked_at is None or not state.checked_at <= now < state.checked_at + QUORUM_CHECK_EVERY


def checked(state: Outage, now: float, nodes: tuple[int, int] | None) -> Outage:
    """The cluster's answer: ``nodes`` (up, total) when it has no quorum, else None."""
    return replace(state, checked_at=now, nodes=nodes)


def refused(state: Outage, chat_id: int, message_id: int | None) -> tuple[Outage, str | None]:
    """A message was refused a store (the cluster asked, ``checked``): the notice to send now in reply, if any.

    ``message_id`` None: a console line whose id could not be read yet (there is nothing to reply to)."""
    if state.nodes is None or chat_id in state.told or (chat_id, message_id) in state.told_about:
        return state, None
    return replace(state, told=state.told | {chat_id},
                   told_about=(*state.told_about, (chat_id, message_id))[-TOLD_ABOUT:]), notice(*state.nodes)


def stored(state: Outage, chat_id: int) -> Outage:
    """A store for ``chat_id`` was accepted: the cluster writes again, its outage is over."""
    return replace(state, told=state.told - {chat_id}, checked_at=None, nodes=None)


def notice(up: int, total: int) -> str:
    # Says "holding", not "nothing is lost": the message is not acknowledged yet, and a bot's
    # or the console's held message would not survive ingest dying before a node returns.
    return (f"⚠️ I can't take messages in right now: the cluster has no quorum ({up} of {total} nodes). "
            "I'm holding what you sent and will act on it as soon as a node returns.")
