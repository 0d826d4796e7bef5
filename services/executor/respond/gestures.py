"""What a reply to Valor's message about a promise asks for.  Pure: text in, a ``Gesture`` out.

The promise is named by the message the reply answers (``steer.py``); the
text says what to do with it:

- ``stop``, ``cancel``, ``abort``, ``never mind`` (or ❌, 🛑): cancel it;
- ``retry``, ``try again``, ``again``, ``rerun`` (or 🔁, 🔄): retry it;
- ``why``, ``why?``, ``what happened``, ``explain`` (or ❓, ``?``): explain it;
- anything else: instructions for it.

Only a whole message is a gesture, give or take case, end punctuation, a
"please" and an ``@valor_bot`` mention: "stop" cancels, "stop using tabs" is
an instruction, so instructions that begin with one of the words are never
taken for a gesture.  A leading ``#12`` picks one promise when the message
is about several (a plan's answer): "#12 stop", "#13 use pytest".
"""

from __future__ import annotations

import re
from dataclasses import dataclass

CANCEL, RETRY, WHY, INSTRUCT = "cancel", "retry", "why", "instructions"

WORDS: dict[str, frozenset[str]] = {
    CANCEL: frozenset({"stop", "cancel", "abort", "stop it", "cancel it", "abort it", "stop that", "cancel that",
                       "stop this", "cancel this", "never mind", "nevermind", "forget it", "❌", "🛑", "✖"}),
    RETRY: frozenset({"retry", "try again", "again", "rerun", "re-run", "run again", "run it again", "retry it",
                      "🔁", "🔄"}),
    WHY: frozenset({"why", "what happened", "explain", "how did it go", "❓", "?"}),
}
POLITE = frozenset({"please", "pls", "plz", "now"})
_PICK = re.compile(r"#(\d+)\b[\s:,.;-]*")
_MENTION = re.compile(r"(?<!\S)@\w+")
_ENDS = ".!,;:…"
_VARIATION = "\ufe0f"  # emoji presentation selector: "❌️" is "❌"


@dataclass(frozen=True)
class Gesture:
    kind: str  # CANCEL | RETRY | WHY | INSTRUCT
    text: str = ""  # the instructions as written (INSTRUCT), without a leading "#id"
    pick: int | None = None  # "#12 …": the one promise of several the reply means


def parse(text: str) -> Gesture:
    body = _MENTION.sub(" ", text).strip()
    pick = None
    if m := _PICK.match(body):
        pick, body = int(m[1]), body[m.end():].strip()
    kind = gesture_of(body)
    return Gesture(kind, pick=pick) if kind else Gesture(INSTRUCT, body, pick)


def gesture_of(text: str) -> str | None:
    """The gesture a whole text is, or None."""
    key = normalize(text)
    return next((kind for kind, words in WORDS.items() if key in words), None)


def begins_like_one(text: str) -> bool:
    """Instructions whose first word is a gesture word ("stop, wrong repo"): the reply says how to cancel."""
    first = normalize(text.split(None, 1)[0]) if text.strip() else ""
    return any(first in words for words in WORDS.values())


def normalize(text: str) -> str:
    text = " ".join(text.replace(_VARIATION, "").lower().split())
    if text and set(text) <= set("?"):
        return "?"
    words = text.strip(_ENDS + "?").split()
    while words and words[0].strip(_ENDS) in POLITE:
        words = words[1:]
    while words and words[-1].strip(_ENDS) in POLITE:
        words = words[:-1]
    return " ".join(words).strip(_ENDS + "?").strip()
