"""Words in a chat reply that the domain itself acts on, whoever reads the reply first.

The scheduler turns "run them" in reply to a skipped-messages summary into the
skipped requests (decision 54); the respond task answers the same reply without a
model.  Both must read the words the same way, so they live here, below both.
"""

from __future__ import annotations

RUN_THEM = frozenset({"run them", "run them all", "run all", "run all of them", "run those", "do them",
                      "do them all", "run"})


def runs_them(text: str) -> bool:
    """The whole text asks to run what a summary skipped ("Run them!", "please run them all")."""
    words = " ".join(text.lower().split()).strip(" .!?,;:…").split()
    words = [w for w in words if w not in ("please", "pls", "now") and not w.startswith("@")]
    return " ".join(words).strip(" .!?,;:…") in RUN_THEM
