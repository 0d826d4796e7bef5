"""Syncing: incremental by stream sequence, rebuildable, readable by the PyPI CLI while it runs."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from schemas.events import Created, Dispatched, Started, Succeeded
from valor import analytics, bus
from valor.client import ValorClient

from .conftest import cli_rows

T0 = 1_780_000_000.0


async def publish(js, *events) -> None:
    for e in events:
        await bus.publish_event(js, e, f"{e.id}:{type(e).__name__}:{getattr(e, 'attempt', 0)}")


def table(db: Path, sql: str) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


async def test_a_second_sync_copies_only_new_events_and_refreshes_the_dependents_they_free(nc, js, tmp_path):
    db = tmp_path / "a.duckdb"
    await publish(js, Created(id=1, title="first", task="echo", at=T0),
                  Created(id=2, title="second", task="echo", depends_on=[1], at=T0),
                  Dispatched(id=1, attempt=1, at=T0 + 1))
    first = await analytics.sync(nc, db)
    assert first.copied["PROMISES"] == 3
    assert table(db, "SELECT id, state FROM promises ORDER BY id") == [(1, "queued"), (2, "waiting")]

    await publish(js, Started(id=1, attempt=1, executor="x", at=T0 + 2),
                  Succeeded(id=1, attempt=1, duration=0.5, at=T0 + 3))
    second = await analytics.sync(nc, db)
    assert second.copied["PROMISES"] == 2 and second.last_seq["PROMISES"] == 5
    assert second.promises == 2  # #1 and #2, whose only dependency just succeeded
    assert table(db, "SELECT seq FROM events ORDER BY seq") == [(1,), (2,), (3,), (4,), (5,)]
    assert table(db, "SELECT id, state, attempts, duration, turnaround FROM promises ORDER BY id") == [
        (1, "succeeded", 1, 1.0, 3.0), (2, "queued", 0, None, None)]
    assert table(db, "SELECT promise_id, attempt, executor, outcome, duration FROM attempts") == [
        (1, 1, "x", "succeeded", 0.5)]
    full = await ValorClient(nc).projection()
    assert {p.id: p.state for p in full.promises.values()} == dict(table(db, "SELECT id, state FROM promises"))

    third = await analytics.sync(nc, db)
    assert third.copied == {"PROMISES": 0, "CHAT": 0, "DLQ": 0} and third.promises == 0


async def test_deleting_the_file_rebuilds_the_same_tables_from_the_log(nc, js, tmp_path):
    db = tmp_path / "a.duckdb"
    await publish(js, Created(id=1, title="a", task="echo", at=T0), Dispatched(id=1, attempt=1, at=T0 + 1))
    await analytics.sync(nc, db)
    await publish(js, Started(id=1, attempt=1, executor="x", at=T0 + 2), Succeeded(id=1, attempt=1, at=T0 + 3))
    await analytics.sync(nc, db)
    dump = "SELECT * FROM {} ORDER BY ALL"
    before = {t: table(db, dump.format(t)) for t in ("events", "promises", "attempts")}
    db.unlink()
    report = await analytics.sync(nc, db)
    assert report.copied["PROMISES"] == 4
    assert {t: table(db, dump.format(t)) for t in before} == before


async def test_a_recreated_stream_is_copied_again_from_its_start(nc, js, tmp_path):
    db = tmp_path / "a.duckdb"
    await publish(js, Created(id=1, title="a", at=T0), Created(id=2, title="b", at=T0))
    await analytics.sync(nc, db)
    await js.delete_stream("PROMISES")
    await bus.ensure_streams(js, 1)
    await publish(js, Created(id=7, title="new log", at=T0))
    report = await analytics.sync(nc, db)
    assert report.rebuilt == ["PROMISES"]
    assert table(db, "SELECT id, title FROM promises") == [(7, "new log")]


async def test_a_file_in_duckdb_2_storage_format_is_rebuilt_in_one_the_pypi_cli_reads(nc, js, tmp_path, duckdb_cli):
    db = tmp_path / "a.duckdb"
    con = duckdb.connect(str(db))  # the 2.x package's default format, which the 1.5 CLI refuses
    con.execute("CREATE TABLE junk AS SELECT 1 AS x")
    con.close()
    await publish(js, Created(id=1, title="a", at=T0))
    await analytics.sync(nc, db)
    rows = cli_rows(duckdb_cli, db, "select tags['storage_version'] as v from duckdb_databases() "
                                    "where database_name = current_database()")
    assert rows == [{"v": analytics.STORAGE_VERSION + "+"}]
    assert cli_rows(duckdb_cli, db, "select id, title from promises") == [{"id": 1, "title": "a"}]
    assert cli_rows(duckdb_cli, db, "select count(*) as n from duckdb_tables() where table_name = 'junk'") == [
        {"n": 0}]


async def test_a_reader_holding_the_file_makes_a_sync_wait_then_give_up_naming_it(nc, js, tmp_path, duckdb_cli):
    db = tmp_path / "a.duckdb"
    await publish(js, Created(id=1, title="a", at=T0))
    await analytics.sync(nc, db)
    reader = subprocess.Popen([str(duckdb_cli), "-readonly", "-noheader", "-list", str(db)], text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        await publish(js, Created(id=2, title="b", at=T0))
        # The session's answer says it has the file open.  (Probing with a write
        # open instead races the CLI's start: holding the lock then makes it exit.)
        reader.stdin.write("select 'open' from promises limit 1;\n")
        reader.stdin.flush()
        if (line := await asyncio.to_thread(reader.stdout.readline)) != "open\n":
            pytest.fail(f"the DuckDB CLI answered {line!r}: {reader.communicate(timeout=10)[1]}")
        with pytest.raises(analytics.Locked, match=f"{db} is held by another process"):
            await analytics.sync(nc, db, lock_wait=0.3)
    finally:
        if reader.returncode is None:
            reader.communicate(".quit\n", timeout=10)
    report = await analytics.sync(nc, db)
    assert report.copied["PROMISES"] == 1  # nothing was lost while it waited


async def test_valor_analytics_every_keeps_syncing_while_the_cli_reads(nats_server, nc, js, tmp_path, duckdb_cli):
    db = tmp_path / "a.duckdb"
    env = dict(os.environ, VALOR_NATS_URL=nats_server.url)
    valor = str(Path(sys.executable).parent / "valor")
    assert subprocess.run([valor, "analytics", "--db", str(db), "--once", "--every", "1"], env=env,
                          capture_output=True, timeout=30).returncode == 2
    follower = subprocess.Popen([valor, "analytics", "--db", str(db), "--every", "0.1"], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 10
        while not db.exists():  # its first sync creates the file
            assert time.monotonic() < deadline and follower.poll() is None, follower.stderr
            await asyncio.sleep(0.05)
        for i in range(1, 6):
            await publish(js, Created(id=i, title=f"p{i}", at=T0))
            deadline = time.monotonic() + 10
            while cli_rows(duckdb_cli, db, "select count(*) as n from promises") != [{"n": i}]:
                assert time.monotonic() < deadline, follower.stderr
                await asyncio.sleep(0.05)
        for _ in range(10):  # reads racing the writer's rounds; each succeeds, at worst after a retry
            assert cli_rows(duckdb_cli, db, "select max(id) as top from promises") == [{"top": 5}]
    finally:
        follower.send_signal(signal.SIGINT)
        out, err = follower.communicate(timeout=10)
    assert follower.returncode == 0, err
    assert out.splitlines()[0].startswith("synced PROMISES +")
