"""The docs cite only files that exist: a renamed or deleted module must take its citations with it.

Every backquoted name in README.md and docs/*.md that looks like a file or a
folder of the checkout (``services/scheduler/intake.py``, ``respond/show.py``,
``projection.py``, ``schemas/json/``) must be the tail of a path git tracks.
Paths a running installation makes (``var/…``, ``~/.config/…``) and
placeholders (``<id>``, ``*``) are not files of the checkout.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LOOKS_LIKE_A_FILE = re.compile(r"\.(py|md|toml|tmpl|conf|json|html|sh|txt|yml|yaml)$|/$")
# Made at run time (result-12.txt is a document Valor sends), rendered for hosts by deploy/render.py
# (etc/valor/…, auth.conf, the operator's ca/, secrets/, tls/), or the user's own: never in the checkout.
NOT_IN_CHECKOUT = ("var/", "~", "$", "/", "inbox/", "valor.toml", "./valor.toml", "result-",
                   "etc/", "auth.conf", "ca/", "secrets/", "tls/")


def cited(text: str) -> list[str]:
    names = [m.group(1) for m in re.finditer(r"`([^`\s]+)`", text)]
    return [n for n in names if LOOKS_LIKE_A_FILE.search(n) and not re.search(r"[<>*{}]", n)
            and not n.startswith(NOT_IN_CHECKOUT) and "://" not in n]


def tracked() -> set[str]:
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    dirs = {"/".join(f.split("/")[:i]) + "/" for f in files for i in range(1, f.count("/") + 1)}
    return set(files) | dirs


def exists(name: str, paths: set[str]) -> bool:
    """A full path, or the tail of one (``respond/show.py``, ``intake.py``), as the docs name modules near others."""
    return name in paths or any(p.endswith("/" + name) for p in paths)


def test_cited_names_are_recognised():
    assert cited("see `services/scheduler/intake.py`, `var/log/x.log`, `<id>.py`, `make up`") == [
        "services/scheduler/intake.py"]


def test_every_file_the_docs_cite_exists():
    paths = tracked()
    missing = [f"{doc.relative_to(ROOT)}: {name}" for doc in DOCS for name in cited(doc.read_text())
               if not exists(name, paths)]
    assert not missing, "docs cite files that do not exist:\n" + "\n".join(missing)
