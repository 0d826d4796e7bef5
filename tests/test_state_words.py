"""A state's name is spelt in ``promises/states.py`` only (decision 64).  Pure: reads the sources.

Outside the domain a state is ``State.RUNNING``, never the word ``"running"``
compared with a state, passed as one or used as a key: the same words are
also event names (``succeeded``, ``cancelled``: subjects, message ids), which
stay words.
"""

from __future__ import annotations

import ast
from pathlib import Path

from promises.states import State

ROOT = Path(__file__).resolve().parent.parent
OUTSIDE = ("valor", "services", "bench")
WORDS = {s.value for s in State}


def _words(node: ast.AST) -> list[str]:
    """The state words ``node`` spells: a string, or a tuple, list or set of them."""
    items = node.elts if isinstance(node, ast.Tuple | ast.List | ast.Set) else [node]
    return [i.value for i in items if isinstance(i, ast.Constant) and i.value in WORDS]


def _names_a_state(node: ast.AST) -> bool:
    name = node.attr if isinstance(node, ast.Attribute) else node.id if isinstance(node, ast.Name) else ""
    return name.lower().endswith(("state", "status", "states"))


def spelt(source: str) -> list[tuple[int, str]]:
    """(line, word) for each state word used as a state: compared with one, passed as one, or a key beside one."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare) and any(_names_a_state(n) for n in [node.left, *node.comparators]):
            out += [(node.lineno, w) for n in [node.left, *node.comparators] for w in _words(n)]
        elif isinstance(node, ast.keyword) and node.arg is not None and _names_a_state(ast.Name(node.arg)):
            out += [(node.value.lineno, w) for w in _words(node.value)]
        elif isinstance(node, ast.Dict):
            keys = [w for k in node.keys if k is not None for w in _words(k)]
            if len(keys) >= 2:  # a table keyed by states (an emoji, a colour, a count each)
                out += [(node.lineno, w) for w in keys]
    return sorted(out)


def test_no_module_outside_the_domain_spells_a_state():
    found = {str(p.relative_to(ROOT)): hits for layer in OUTSIDE for p in (ROOT / layer).rglob("*.py")
             if (hits := spelt(p.read_text()))}
    assert found == {}


def test_the_check_sees_a_state_spelt_and_leaves_event_names_alone():
    source = '''
if p.state == "running": pass
if p.status in ("queued", "failing"): pass
client.promises(state="succeeded")
ICONS = {"running": "⏳", "failed": "❌"}
subject = subjects.promise(7, "cancelled")
msg_id = msg_id_for_event(7, "failed")
if p.state == State.RUNNING: pass
'''
    assert spelt(source) == [(2, "running"), (3, "failing"), (3, "queued"), (4, "succeeded"), (5, "failed"),
                             (5, "running")]
