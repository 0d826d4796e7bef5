"""The shipped deployment: rendered NATS and supervisord configs, and a real 3-node cluster from them."""

from __future__ import annotations

import configparser
import contextlib
import importlib.util
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from services.executor.slots import Pool, pools_for
from valor import bus
from valor.natsserver import free_port, server_binary

ROOT = Path(__file__).resolve().parent.parent


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"deploy_{name}", ROOT / "deploy" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


render = load("render")
health = load("health")


def free_ports() -> render.Ports:
    ports = iter({free_port() for _ in range(20)})
    return render.Ports(*(tuple(next(ports) for _ in range(3)) for _ in range(3)))


@pytest.fixture
def rendered(tmp_path):
    ports = free_ports()
    var = tmp_path / "var"
    paths = render.render_nats(var, ports)
    return var, ports, {p.stem: p.read_text() for p in paths}


def routes_of(conf: str) -> set[int]:
    block = re.search(r"routes: \[(.*?)\]", conf, re.S).group(1)
    return {int(p) for p in re.findall(r"nats://127\.0\.0\.1:(\d+)", block)}


def test_ports_count_up_from_each_base():
    ports = render.Ports.from_bases(5222, 7222, 9222)
    assert ports.client == (5222, 5223, 5224)
    assert ports.cluster == (7222, 7223, 7224)
    assert ports.monitor == (9222, 9223, 9224)
    assert ports.nats_url == "nats://127.0.0.1:5222,nats://127.0.0.1:5223,nats://127.0.0.1:5224"


def test_every_node_fsyncs_every_write_to_its_own_file_store(rendered):
    var, _, confs = rendered
    assert sorted(confs) == ["n1", "n2", "n3"]
    for name, conf in confs.items():
        assert re.search(r"(?m)^\s*sync_interval: always$", conf), name
        assert f'store_dir: "{var / "nats" / name}"' in conf
        assert (var / "nats" / name).is_dir()
        assert "${" not in conf


def test_each_node_routes_to_the_other_two(rendered):
    _, ports, confs = rendered
    for i, name in enumerate(["n1", "n2", "n3"]):
        assert f"listen: 127.0.0.1:{ports.cluster[i]}" in confs[name]
        assert routes_of(confs[name]) == set(ports.cluster) - {ports.cluster[i]}
        assert f"port: {ports.client[i]}" in confs[name]
        assert f"http: 127.0.0.1:{ports.monitor[i]}" in confs[name]


def test_the_single_node_config_is_as_durable():
    conf = (ROOT / "deploy" / "nats" / "single.conf").read_text()
    assert re.search(r"(?m)^\s*sync_interval: always$", conf)
    assert 'store_dir: "var/nats/single"' in conf


def test_nats_server_accepts_every_shipped_config(rendered, tmp_path):
    _, _, confs = rendered
    paths = [tmp_path / "var" / "nats" / f"{n}.conf" for n in confs] + [
        ROOT / "deploy" / "nats" / "single.conf"
    ]
    for path in paths:
        check = subprocess.run(
            [server_binary(), "-t", "-c", str(path)], cwd=tmp_path, capture_output=True, text=True
        )
        assert check.returncode == 0, f"{path}: {check.stdout}{check.stderr}"


def supervisor_programs(text: str) -> dict[str, dict[str, str]]:
    parser = configparser.RawConfigParser(inline_comment_prefixes=(";",))
    parser.read_string(text)
    return {s.split(":", 1)[1]: dict(parser[s]) for s in parser.sections() if s.startswith("program:")}


def test_supervisord_runs_only_the_services_that_exist(tmp_path):
    root = tmp_path / "checkout"
    for name in ("scheduler", "executor"):
        (root / "services" / name).mkdir(parents=True)
        (root / "services" / name / "__main__.py").write_text("")
    (root / "services" / "ingest").mkdir(parents=True)  # a package without a __main__ yet
    var, venv = root / "var", root / ".venv"
    text = render.render_supervisord(root, var, venv, render.Ports.from_bases(4222, 6222, 8222)).read_text()
    assert "${" not in text
    programs = supervisor_programs(text)
    assert sorted(programs) == ["analytics", "executor", "nats-1", "nats-2", "nats-3", "scheduler"]
    assert programs["nats-2"]["command"] == f"{venv}/bin/nats-server -c {var}/nats/n2.conf"
    assert programs["scheduler"]["numprocs"] == "2"
    assert programs["executor"]["numprocs"] == "2"
    assert programs["executor"]["command"].endswith(" --id executor-%(process_num)s")
    argv = programs["executor"]["command"].split()
    pools = pools_for(argv[argv.index("--slots") + 1], argv[argv.index("--queues") + 1].split(","))
    assert Pool(("respond",), 2) in pools  # replies never wait behind background work
    assert {q for p in pools for q in p.queues} == {"default", "respond", "code"}
    assert f'VALOR_RUN_DIR="{var}/run/tasks"' in programs["executor"]["environment"]  # where make down looks
    for name in ("scheduler", "executor"):
        env = programs[name]["environment"]
        assert 'VALOR_NATS_URL="nats://127.0.0.1:4222,nats://127.0.0.1:4223,nats://127.0.0.1:4224"' in env
        assert 'VALOR_REPLICAS="3"' in env
    for p in programs.values():
        assert (p["autorestart"], p["stopasgroup"], p["killasgroup"]) == ("true", "true", "true")
        assert p["stdout_logfile"].startswith(f"{var}/log/")


async def test_the_rendered_cluster_replicates_streams_three_ways(rendered):
    var, ports, _ = rendered
    procs = []
    try:
        for name in ("n1", "n2", "n3"):
            log = open(var / f"{name}.log", "wb")
            procs.append(
                subprocess.Popen(
                    [server_binary(), "-c", str(var / "nats" / f"{name}.conf")], stdout=log, stderr=log
                )
            )
            log.close()
        deadline = time.monotonic() + 30
        while not all(health.node_health(p) == "ok" for p in ports.monitor):
            assert all(p.poll() is None for p in procs), "a nats-server exited; see its log in " + str(var)
            assert time.monotonic() < deadline, {p: health.node_health(p) for p in ports.monitor}
            time.sleep(0.2)

        nc = await bus.connect(ports.nats_url, name="test-deploy")
        try:
            js = nc.jetstream(timeout=10)
            await bus.ensure_streams(js, 3)
            ack = await js.publish(
                "promise.1.created",
                b'{"type":"created","id":1,"title":"t"}',
                headers={bus.MSG_ID: "1:created"},
            )
            assert (ack.stream, ack.seq) == ("PROMISES", 1)
            info = await js.stream_info("PROMISES")
            assert info.config.num_replicas == 3
            assert len(info.cluster.replicas) == 2
        finally:
            await nc.close()
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def test_make_down_stops_the_task_groups_executors_recorded(tmp_path, capsys):
    # A task's program runs in a session of its own, out of supervisord's reach; an executor
    # killed before it could stop it left it running, recorded under var/run/tasks/.
    from services.executor import groups

    var = tmp_path / "var"
    leader = subprocess.Popen(["sh", "-c", "sleep 60 & wait"], start_new_session=True)
    try:
        record = groups.record_of(leader.pid, promise=12, attempt=1, workspace="/srv/project")
        path = groups.write(record, var / "run" / "tasks")
        health.main(["down", "--var", str(var), "--venv", str(tmp_path / ".venv")])
        assert leader.wait(5) == -signal.SIGTERM  # as for a timeout: Claude Code ends its tools itself
        assert groups.members(record, groups.processes()) == [] and not path.exists()
        assert "down: stopped task group" in capsys.readouterr().out
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(leader.pid, signal.SIGKILL)
        leader.wait()


def test_make_up_calls_services_healthy_only_once_none_restarted_for_the_settle_time():
    up = health.parse_status("nats:n1            RUNNING   pid 101, uptime 0:00:09\n"
                             "executor:executor-0 RUNNING   pid 202, uptime 0:00:03\n")
    assert up == {"nats:n1": ("RUNNING", "101"), "executor:executor-0": ("RUNNING", "202")}
    since = health.steady({}, None, up, now=100.0)
    assert since == 100.0
    assert health.steady(up, since, up, now=105.0) == 100.0  # the same processes: counting on
    # executor-0 exited (a JetStream timeout at start) and supervisord restarted it: the count starts anew
    restarted = {**up, "executor:executor-0": ("RUNNING", "303")}
    assert health.steady(up, since, restarted, now=112.0) == 112.0
    starting = health.parse_status("executor:executor-0 STARTING\nnats:n1 RUNNING pid 101, uptime 0:00:20\n")
    assert health.steady(restarted, 112.0, starting, now=113.0) is None
