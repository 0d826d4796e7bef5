"""The dashboard's JSON endpoints over plain HTTP, against a real stack."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner

from schemas.commands import NewPromise
from tests.cli.conftest import EXECUTOR_ID
from valor.cli import main
from valor.natsserver import free_port


def error_of(web, path: str, method: str = "GET") -> tuple[int, dict]:
    request = urllib.request.Request(web.url + path, method=method, data=b"{}" if method != "GET" else None)
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=5)
    return caught.value.code, json.loads(caught.value.read())


def test_promises_lists_the_known_history_newest_first(web, history):
    listed = web.get("/api/promises")
    states = {p["id"]: p["state"] for p in listed["promises"]}
    assert {pid: states[pid] for pid in history.states()} == history.states()
    ids = [p["id"] for p in listed["promises"]]
    assert ids == sorted(ids, reverse=True)
    assert listed["seq"] >= 1 and listed["total"] >= 5
    assert {"echo", "fail", "sleep"} <= set(listed["types"])
    join = next(p for p in listed["promises"] if p["id"] == history.join)
    assert join["depends_on"] == [history.a, history.b] and join["type"] == "echo"


def test_promises_filter_by_state_and_type(web, history):
    failed = web.get("/api/promises?state=failed")["promises"]
    assert history.boom in [p["id"] for p in failed] and {p["state"] for p in failed} == {"failed"}
    sleeps = web.get("/api/promises?type=sleep&state=cancelled")["promises"]
    assert [p["id"] for p in sleeps if p["id"] == history.nap] == [history.nap]
    assert all(p["type"] == "sleep" for p in sleeps)
    assert web.get("/api/promises?chat=424242")["promises"] == []
    assert len(web.get("/api/promises?limit=2")["promises"]) == 2


def test_one_promise_has_its_timeline_and_its_join_graph(web, history):
    join = web.get(f"/api/promises/{history.join}")
    assert join["state"] == "succeeded"
    assert [t["type"] for t in join["timeline"]] == ["created", "dispatched", "started", "succeeded"]
    assert join["timeline"][-1]["text"].startswith("succeeded on attempt 1 in ")
    assert join["headline"] == f'#{history.join} echo "join them": succeeded on attempt 1'
    assert [e["type"] for e in join["events"]] == ["created", "dispatched", "started", "succeeded"]
    graph = join["graph"]
    assert {(n["id"], n["layer"]) for n in graph["nodes"]} == {(history.a, 0), (history.b, 0), (history.join, 1)}
    assert sorted((e["from"], e["to"]) for e in graph["edges"]) == [(history.a, history.join), (history.b, history.join)]


def test_unknown_promise_bad_id_and_unknown_path_answer_json_errors(web, history):
    assert error_of(web, "/api/promises/999999") == (404, {"error": "no promise #999999"})
    assert error_of(web, "/api/promises/abc") == (400, {"error": "promise id must be an integer, not 'abc'"})
    assert error_of(web, "/api/nothing") == (404, {"error": "nothing at /api/nothing"})


def test_a_request_naming_another_host_is_refused(web, history):
    """DNS rebinding: a page on evil.example whose name now points at 127.0.0.1 reads nothing."""
    request = urllib.request.Request(web.url + "/api/promises", headers={"Host": "evil.example:8765"})
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=5)
    assert caught.value.code == 403
    request = urllib.request.Request(web.url + "/api/promises", headers={"Host": "localhost:8765"})
    with urllib.request.urlopen(request, timeout=5) as answer:
        assert answer.status == 200


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
def test_the_dashboard_accepts_no_writes(web, method):
    assert error_of(web, "/api/promises", method) == (405, {"error": "read-only: only GET"})


def test_status_has_streams_consumers_executors_and_live_counts(web, history):
    status = web.get("/api/status")
    assert EXECUTOR_ID in status["executors"]
    executor = status["executors"][EXECUTOR_ID]
    assert executor["queues"] == ["default", "respond"] and executor["slots"] == 5
    assert [(p["queues"], p["slots"]) for p in executor["pools"]] == [(["default"], 4), (["respond"], 1)]
    assert status["streams"]["PROMISES"]["messages"] >= 1
    for consumer in status["streams"]["WORK"]["consumers"].values():
        assert {"num_pending", "num_ack_pending"} <= consumer.keys()
    assert status["promises"]["succeeded"] >= 3
    assert status["scheduler"] and status["errors"] == []


def test_the_page_is_served_whole_with_nothing_from_elsewhere(web):
    with urllib.request.urlopen(web.url + "/", timeout=5) as answer:
        html = answer.read().decode()
        assert answer.headers["Content-Type"] == "text/html; charset=utf-8"
        assert "default-src 'self'" in answer.headers["Content-Security-Policy"]
    assert "http://" not in html.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in html


def sse_messages(stream):
    """``(event, id, data)`` for each message of a Server-Sent Events stream, headers already read."""
    fields: dict[str, str] = {}
    for raw in stream:
        line = raw.decode().rstrip("\r\n")
        if line == "":
            if "data" in fields:
                yield fields.get("event", "message"), fields.get("id"), json.loads(fields["data"])
            fields = {}
        elif not line.startswith(":"):
            key, _, value = line.partition(":")
            fields[key] = value.removeprefix(" ")


def test_events_stream_pushes_a_promise_as_it_moves(web, stack, client, history):
    seq = web.get("/api/promises?limit=1")["seq"]
    host, port = web.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=15) as sock:
        sock.sendall(f"GET /api/events?since={seq} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        stream = sock.makefile("rb")
        head = [stream.readline() for _ in range(2)]
        assert head == [b"HTTP/1.1 200 OK\r\n", b"Content-Type: text/event-stream\r\n"]
        while stream.readline() != b"\r\n":
            pass
        # Held running until the stream has shown it so: a sleep could end unseen on a busy machine.
        pid = stack.call(client.submit(NewPromise(title="pushed", type="held", input="pushed")))["0"]
        seen: list[str] = []
        for event, last_id, data in sse_messages(stream):
            assert event == "promises" and int(last_id) == data["seq"] > seq
            seen += [p["state"] for p in data["promises"] if p["id"] == pid]
            if seen[-1:] == ["running"]:
                stack.release("pushed")
            if "succeeded" in seen:
                break
    assert "running" in seen and seen[-1] == "succeeded", seen


def test_top_prints_the_status_and_recent_promises_each_refresh(stack, history):
    result = CliRunner().invoke(main, ["top", "--iterations", "2", "--interval", "0.2"],
                                env={"VALOR_NATS_URL": stack.url}, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    frames = result.stdout.split("valor top  ")[1:]
    assert len(frames) == 2
    for frame in frames:
        assert "scheduler  " in frame and EXECUTOR_ID in frame and "promises   " in frame
        assert "recent" in frame and f"#{history.join}" in frame
    assert "\x1b[" not in result.stdout  # not a terminal: no screen clearing


def test_status_watch_is_top(stack, history):
    result = CliRunner().invoke(main, ["status", "--watch", "--iterations", "1"],
                                env={"VALOR_NATS_URL": stack.url}, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("valor top  ") and "recent" in result.stdout


def test_valor_web_serves_on_the_port_it_is_given_and_stops_on_interrupt(stack, history):
    port = free_port()
    valor = Path(sys.executable).parent / "valor"
    proc = subprocess.Popen([str(valor), "web", "--port", str(port)],
                            env={"VALOR_NATS_URL": stack.url, "PATH": "/usr/bin:/bin"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line == f"valor web: http://127.0.0.1:{port}/  (Ctrl-C stops)\n", proc.stderr.read()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/promises/{history.join}", timeout=5) as answer:
            assert json.loads(answer.read())["state"] == "succeeded"
        proc.send_signal(2)
        assert proc.wait(10) == 0
        assert "Traceback" not in proc.stderr.read()
    finally:
        proc.kill()
        proc.wait()


def test_top_stops_cleanly_on_ctrl_c(stack, history):
    valor = Path(sys.executable).parent / "valor"
    proc = subprocess.Popen([str(valor), "top", "--interval", "0.2"], env={"VALOR_NATS_URL": stack.url},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().startswith("valor top  ")
        proc.send_signal(2)
        out, err = proc.communicate(timeout=10)
        assert proc.returncode == 0 and "Traceback" not in err and "KeyboardInterrupt" not in err, err
    finally:
        proc.kill()
        proc.wait()


def test_spend_answers_the_last_fourteen_days(web, history):
    shown = web.get("/api/spend")
    assert len(shown["by_day"]) == 14 and shown["by_day"][-1]["day"] == time.strftime("%Y-%m-%d", time.gmtime())
    assert shown["total"]["usd"] == sum(d["usd"] for d in shown["by_day"])
    assert web.get("/api/spend?chat=424242")["total"]["attempts"] == 0
