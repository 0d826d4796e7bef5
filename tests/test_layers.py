"""Imports point down: services → valor → promises → schemas (decision 64).  Pure: reads the sources.

A service may import its own package, ``valor``, ``promises`` and ``schemas``,
never another service; ``valor`` never imports a service; ``promises`` only
``schemas``; ``schemas`` nothing of the project.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROJECT = ("schemas", "promises", "valor", "services")
BELOW = {"schemas": set(), "promises": {"schemas"}, "valor": {"schemas", "promises"},
         "services": {"schemas", "promises", "valor"}}
# Nothing known: the Telegram account the notifier shares with ingest is valor/telegram.py's.
KNOWN: dict[str, list[str]] = {}


def imported(path: Path, root: Path = ROOT) -> set[str]:
    """The project modules ``path`` imports, as dotted names (relative imports resolved)."""
    package = path.relative_to(root).with_suffix("").parts[:-1]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else ()
            module = ".".join([*base, *([node.module] if node.module else [])])
            out |= {module} if node.module else {f"{module}.{alias.name}" for alias in node.names}
    return {m for m in out if m.split(".")[0] in PROJECT}


def wrong_way(path: Path, root: Path = ROOT) -> list[str]:
    parts = path.relative_to(root).parts
    layer = parts[0]
    own = ".".join(parts[:2]) if layer == "services" else layer  # a service: services.<name>
    return sorted(m for m in imported(path, root)
                  if not (m == own or m.startswith(own + ".") or m.split(".")[0] in BELOW[layer]))


def test_every_import_points_down():
    sources = [p for layer in PROJECT for p in (ROOT / layer).rglob("*.py")]
    assert len(sources) > 100
    found = {str(p.relative_to(ROOT)): bad for p in sources if (bad := wrong_way(p))}
    assert found == KNOWN


def test_the_check_sees_an_arrow_pointing_up(tmp_path):
    """The check can fail: a domain module importing a service, a service importing another."""
    (tmp_path / "promises").mkdir()
    (tmp_path / "services" / "notifier").mkdir(parents=True)
    up = tmp_path / "promises" / "story.py"
    up.write_text("from services.scheduler import decide\nfrom . import evidence\nimport schemas.events\n")
    sideways = tmp_path / "services" / "notifier" / "texts.py"
    sideways.write_text("from services.executor.respond import approval\nfrom .board import Board\n"
                        "from valor import budget\n")
    assert wrong_way(up, tmp_path) == ["services.scheduler"]
    assert wrong_way(sideways, tmp_path) == ["services.executor.respond"]
