"""The DuckDB file: opened per sync, written in one transaction, checkpointed, closed.

DuckDB lets one process write a file, or many read it, never both.  Holding
no connection between syncs is what lets ``duckdb -readonly`` open the file
while Valor runs; a reader that holds it at the moment we want to write makes
us wait up to ``lock_wait`` seconds (then :class:`Locked`).

The file is written in storage format ``STORAGE_VERSION`` so that the DuckDB
CLI published on PyPI (``duckdb-cli`` 1.5.x) reads it: the ``duckdb`` 2.x
Python package would otherwise write format v2.0.0, which 1.5 refuses
("version number 69 ... can only read versions between 64 and 68").  A file
in another format, or with older tables, is deleted and rebuilt from the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import duckdb

from .tables import ALL_TABLES, COLUMNS, SCHEMA_VERSION, ddl

log = logging.getLogger("valor.analytics")

STORAGE_VERSION = "v1.5.0"  # read by DuckDB >= 1.5.0, hence by duckdb-cli 1.5.x from PyPI
STORAGE_TAG = STORAGE_VERSION + "+"  # how duckdb_databases().tags names it


class Locked(Exception):
    """Another process (a duckdb CLI session, another sync) holds the file."""


def _is_lock_error(exc: Exception) -> bool:
    return "lock" in str(exc).lower()


async def connect(path: Path, lock_wait: float = 5.0) -> duckdb.DuckDBPyConnection:
    """A writable connection, waiting while someone else holds the file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + lock_wait
    delay = 0.05
    while True:
        try:
            con = duckdb.connect(str(path), config={"storage_compatibility_version": STORAGE_VERSION})
        except duckdb.IOException as exc:
            if not _is_lock_error(exc):
                raise
            if time.monotonic() >= deadline:
                raise Locked(f"{path} is held by another process (a `duckdb` session or another "
                             f"`valor analytics`?) for over {lock_wait:g}s; close it and sync again") from None
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.5)
            continue
        if _usable(con):
            return con
        con.close()
        log.warning("rebuilding %s: written in another storage format or by an older Valor", path)
        for stale in (path, path.with_name(path.name + ".wal")):
            stale.unlink(missing_ok=True)


def _usable(con: duckdb.DuckDBPyConnection) -> bool:
    """The file is in our storage format and holds our tables (or is new and empty)."""
    tags = con.execute("SELECT tags FROM duckdb_databases() WHERE database_name = current_database()").fetchone()
    if (tags[0] or {}).get("storage_version", STORAGE_TAG) != STORAGE_TAG:
        return False
    tables = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    if not tables:
        return True
    if "meta" not in tables:
        return False
    row = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    return row is not None and row[0] == SCHEMA_VERSION


@contextlib.asynccontextmanager
async def writing(path: Path, lock_wait: float = 5.0):
    """One transaction on a freshly opened file; checkpointed and closed on the way out."""
    con = await connect(path, lock_wait)
    try:
        con.execute("BEGIN")
        try:
            if not con.execute("SELECT 1 FROM duckdb_tables() WHERE table_name = 'meta'").fetchall():
                for statement in ddl():
                    con.execute(statement)
                con.executemany("INSERT INTO meta VALUES (?, ?)",
                                [("schema_version", SCHEMA_VERSION), ("storage_version", STORAGE_VERSION)])
            yield con
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("CHECKPOINT")
    finally:
        con.close()


def cursors(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    return dict(con.execute("SELECT stream, last_seq FROM sync_state").fetchall())


def set_cursor(con: duckdb.DuckDBPyConnection, stream: str, last_seq: int, added: int, now: float) -> None:
    """Remember the last copied sequence; ``rows`` counts the rows copied from the stream so far."""
    before = con.execute("SELECT rows FROM sync_state WHERE stream = ?", [stream]).fetchone()
    rows = (before[0] if before and last_seq else 0) + added
    con.execute("DELETE FROM sync_state WHERE stream = ?", [stream])
    con.execute("INSERT INTO sync_state VALUES (?, ?, ?, make_timestamp(CAST(round(? * 1e6) AS BIGINT)))",
                [stream, last_seq, rows, now])


def insert(con: duckdb.DuckDBPyConnection, table: str, rows: Sequence[tuple]) -> None:
    """Column-wise bulk insert: one list parameter per column, zipped by ``unnest``."""
    if not rows:
        return
    columns = COLUMNS[table]
    inner, outer, params = [], [], []
    for i, ((name, kind), values) in enumerate(zip(columns, zip(*rows, strict=True), strict=True)):
        param_type = {"TIMESTAMP": "DOUBLE", "JSON": "VARCHAR"}.get(kind, kind)
        inner.append(f"unnest(?::{param_type}[]) AS c{i}")
        if kind == "TIMESTAMP":
            outer.append(f"make_timestamp(CAST(round(c{i} * 1e6) AS BIGINT)) AS {name}")
        elif kind == "JSON":
            outer.append(f"CAST(c{i} AS JSON) AS {name}")
        else:
            outer.append(f"c{i} AS {name}")
        params.append(list(values))
    con.execute(f"INSERT INTO {table} SELECT {', '.join(outer)} FROM (SELECT {', '.join(inner)})", params)


def delete_ids(con: duckdb.DuckDBPyConnection, table: str, column: str, ids: Sequence[int]) -> None:
    con.execute(f"DELETE FROM {table} WHERE {column} IN (SELECT unnest(?::BIGINT[]))", [list(ids)])


def wipe(con: duckdb.DuckDBPyConnection, tables: Iterator[str] | Sequence[str]) -> None:
    for table in tables:
        if table in ALL_TABLES:
            con.execute(f"DELETE FROM {table}")
