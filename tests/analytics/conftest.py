"""Fixtures for the analytics tests: the real DuckDB CLI from PyPI, the documented queries."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

# The CLI users install: `pip install duckdb-cli==1.5.6` (embeds DuckDB 1.5.6).
DUCKDB_CLI = "duckdb-cli==1.5.6"
DOC = Path(__file__).resolve().parents[2] / "docs" / "analytics.md"


@pytest.fixture(scope="session")
def duckdb_cli() -> Path:
    """The `duckdb` command of the venv, installed from PyPI when missing."""
    exe = Path(sys.executable).parent / "duckdb"
    if not exe.exists():
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", DUCKDB_CLI], check=True, timeout=300)
    return exe


def cli_rows(exe: Path, db: Path, sql: str, attempts: int = 20) -> list[dict]:
    """Rows of `duckdb -readonly -json DB SQL`, retried while a sync holds the file (as docs/analytics.md says)."""
    for _ in range(attempts):
        out = subprocess.run([str(exe), "-readonly", "-json", str(db), sql], capture_output=True, text=True,
                             timeout=30)
        if out.returncode == 0:
            return json.loads(out.stdout) if out.stdout.strip() else []
        if "lock" not in out.stderr.lower():
            raise AssertionError(out.stderr)
        time.sleep(0.1)
    raise AssertionError(f"still locked after {attempts} tries: {out.stderr}")


def doc_queries() -> dict[str, str]:
    """`### `name` — ...` followed by a ```sql block, from docs/analytics.md."""
    text = DOC.read_text()
    found = re.findall(r"^### `(\w+)`[^\n]*\n(?:(?!^###).)*?```sql\n(.*?)```", text, re.M | re.S)
    return {name: sql.strip() for name, sql in found}
