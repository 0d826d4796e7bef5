"""The files for real hosts (deploy/hosts.py): what each host gets, that nothing drifts from make up, and
that the tools accept them (nats-server -t, systemd-analyze verify, docker compose config)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import certs
import hosts
import pytest
import render

from valor.natsserver import server_binary

from .conftest import ROOT

NODE_HOSTS = [("h1", "10.0.0.1"), ("h2", "10.0.0.2"), ("h3", "h3.example.net")]
PORTS = render.Ports.from_bases(4222, 6222, 8222)


@pytest.fixture(scope="module")
def systemd_out(tmp_path_factory) -> Path:
    """Three node hosts and one executor host, with this checkout as the prefix so executables exist."""
    out = tmp_path_factory.mktemp("systemd")
    hosts.render_systemd(out, ROOT, NODE_HOSTS, [("h4", "10.0.0.4")], PORTS, 9100, prefix=ROOT)
    return out


@pytest.fixture(scope="module")
def compose_out(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("compose")
    hosts.render_compose(out, ROOT, render.Ports.from_bases(14222, 16222, 18222), 9100)
    return out


def etc(out: Path, host: str) -> Path:
    return out / host / "etc" / "valor"


def units(out: Path, host: str) -> list[str]:
    return (etc(out, host) / "units").read_text().split()


def unit_file(out: Path, host: str, unit: str) -> str:
    return (out / host / "etc/systemd/system" / re.sub(r"@\d+\.service$", "@.service", unit)).read_text()


def passwords(out: Path) -> dict[str, str]:
    return {p.stem.removeprefix("nats-"): p.read_text().strip() for p in (out / "secrets").glob("nats-*.password")}


def shipped_programs(prefix: Path, id_prefix: str = "${VALOR_HOST}-") -> dict[str, hosts.Program]:
    text = render.supervisord_text(prefix, prefix / "var", prefix / ".venv", "URL", None, Path("/s"),
                                   executor_id_prefix=id_prefix)
    return {p.name: p for p in hosts.programs(text)}


def test_every_program_make_up_runs_has_a_unit_with_the_same_command(systemd_out):
    """Drift: the units are made from deploy/supervisord.conf, so a change there shows here."""
    programs = shipped_programs(ROOT)
    assert set(programs) >= {"scheduler", "executor", "ingest", "notifier", "analytics"}
    everywhere = {u for h in ("h1", "h2", "h3", "h4") for u in units(systemd_out, h)}
    for name, program in programs.items():
        placed = [u for u in everywhere if re.fullmatch(rf"valor-{name}(@\d+)?\.service", u)]
        assert placed, f"{name} runs nowhere"
        text = unit_file(systemd_out, "h1" if name != "executor" else "h4", placed[0])
        assert f"ExecStart={program.command.replace('%(process_num)s', '%i')}\n" in text
        assert f"Environment=VALOR_NATS_USER={program.user}\n" in text
        assert f"LoadCredential=nats-password:/etc/valor/secrets/nats-{program.user}.password" in text


def test_the_scheduler_and_its_standby_run_on_different_hosts_and_executors_everywhere(systemd_out):
    assert "valor-scheduler@0.service" in units(systemd_out, "h1")
    assert "valor-scheduler@1.service" in units(systemd_out, "h2")
    for host in ("h1", "h2", "h3", "h4"):
        assert "valor-executor@0.service" in units(systemd_out, host)
    assert units(systemd_out, "h4") == ["valor-executor@0.service"]
    assert "--id ${VALOR_HOST}-executor-%i" in unit_file(systemd_out, "h4", "valor-executor@0.service")
    assert "VALOR_HOST=h4\n" in (etc(systemd_out, "h4") / "valor.env").read_text()


def test_each_host_gets_only_the_passwords_of_what_it_runs(systemd_out):
    def held(host):
        return sorted(p.name for p in (etc(systemd_out, host) / "secrets").iterdir())

    assert held("h4") == ["nats-executor.password"]
    assert held("h3") == ["nats-executor.password"]
    assert held("h2") == ["nats-executor.password", "nats-scheduler.password"]
    assert "nats-admin.password" in held("h1")  # it creates the streams
    for host in ("h1", "h2", "h3", "h4"):
        for p in (etc(systemd_out, host) / "secrets").iterdir():
            assert p.stat().st_mode & 0o077 == 0, p
            assert p.read_text() == (systemd_out / "secrets" / p.name).read_text()
    assert not (etc(systemd_out, "h4") / "auth.conf").exists()  # an executor host holds no one else's password
    assert not list((etc(systemd_out, "h4") / "tls").glob("*key*"))


def test_no_password_is_written_outside_the_secret_files(systemd_out, compose_out):
    for out in (systemd_out, compose_out):
        secret = passwords(out)
        assert len(secret) == 6
        for path in out.rglob("*"):
            if path.is_file() and "secrets" not in path.parts and path.name != "auth.conf" \
                    and not path.name.endswith("key.pem"):
                text = path.read_text()
                for user, value in secret.items():
                    assert value not in text, f"{user}'s password in {path}"


def test_node_configs_are_durable_and_speak_tls_on_clients_and_routes(systemd_out):
    url = "tls://10.0.0.1:4222,tls://10.0.0.2:4222,tls://h3.example.net:4222"
    for name, address in NODE_HOSTS:
        conf = (etc(systemd_out, name) / "nats.conf").read_text()
        assert re.search(r"(?m)^\s*sync_interval: always$", conf)
        assert f'store_dir: "/var/lib/valor/nats/{name}"' in conf
        client_tls, cluster = conf.split("cluster {")
        assert f'cert_file: "tls/{name}.pem"' in client_tls and "verify" not in client_tls
        assert re.search(r"tls \{[^}]*verify: true", cluster)  # only a node the CA signed may join
        routes = set(re.findall(r"nats://([\w.-]+):6222", cluster))
        assert routes == {a for n, a in NODE_HOSTS if n != name}
        assert f"VALOR_NATS_URL={url}\n" in (etc(systemd_out, name) / "valor.env").read_text()
        # the certificate names the address the other nodes and the clients dial
        san = subprocess.run(["openssl", "x509", "-noout", "-ext", "subjectAltName", "-in",
                              str(etc(systemd_out, name) / "tls" / f"{name}.pem")], capture_output=True, text=True)
        assert address in san.stdout


def test_rendering_again_keeps_the_passwords_and_the_ca(tmp_path):
    hosts.render_systemd(tmp_path, ROOT, NODE_HOSTS, [], PORTS, 9100)
    before = passwords(tmp_path), (tmp_path / "ca" / "ca.pem").read_text()
    hosts.render_systemd(tmp_path, ROOT, NODE_HOSTS, [], PORTS, 9100)
    assert (passwords(tmp_path), (tmp_path / "ca" / "ca.pem").read_text()) == before


def test_bad_host_lists_get_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="three NATS hosts"):
        hosts.render_systemd(tmp_path, ROOT, NODE_HOSTS[:2], [], PORTS, 9100)
    with pytest.raises(ValueError, match="must differ"):
        hosts.render_systemd(tmp_path, ROOT, NODE_HOSTS, [("h1", "10.0.0.9")], PORTS, 9100)
    with pytest.raises(ValueError, match="letters, digits"):
        hosts.parse_hosts("h.1=10.0.0.1")
    assert render.main(["--target", "systemd", "--out", str(tmp_path), "--hosts", "a,b"]) == 2


def check_config(path: Path, cwd: Path) -> None:
    check = subprocess.run([server_binary(), "-t", "-c", str(path)], cwd=cwd, capture_output=True, text=True)
    assert check.returncode == 0, f"{path}: {check.stdout}{check.stderr}"


def test_nats_server_accepts_every_rendered_node_config(systemd_out, compose_out, tmp_path):
    for tls in (False, True):  # make up, plain and NATS_TLS=1
        var = tmp_path / f"var-{tls}"
        render.render_auth(var)
        for path in render.render_nats(var, PORTS, auth=True, tls=tls):
            assert ("tls {" in path.read_text()) is tls
            check_config(path, tmp_path)
    for name, _ in NODE_HOSTS:  # nats-server runs in /etc/valor on a host (WorkingDirectory=)
        check_config(etc(systemd_out, name) / "nats.conf", etc(systemd_out, name))
    for name in render.NODES:
        check_config(compose_out / "nodes" / name / "nats.conf", compose_out / "nodes" / name)


def test_systemd_accepts_every_unit(systemd_out, tmp_path):
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed here")
    # a template is checked as an instance, so %i and the executable paths are resolved
    for unit in sorted({u for h in ("h1", "h2", "h3", "h4") for u in units(systemd_out, h)}):
        host = next(h for h in ("h1", "h2", "h3", "h4") if unit in units(systemd_out, h))
        (tmp_path / unit).write_text(unit_file(systemd_out, host, unit))
    files = sorted(str(p) for p in tmp_path.iterdir())
    assert len(files) == 8  # nats, streams, scheduler@0, @1, executor@0, ingest, notifier, analytics
    check = subprocess.run(["systemd-analyze", "verify", "--man=no", *files], capture_output=True, text=True)
    if "Failed to initialize" in check.stderr or "System has not been booted" in check.stderr:
        pytest.skip(f"systemd-analyze cannot run here: {check.stderr.strip()[:200]}")
    assert check.returncode == 0 and not check.stderr.strip(), check.stderr  # warnings go to stderr with rc 0


def test_a_broken_unit_is_caught_by_the_same_check(tmp_path):
    """The check above can fail: systemd-analyze reports an unknown key on stderr."""
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed here")
    bad = tmp_path / "valor-bad.service"
    bad.write_text("[Service]\nExecStart=/bin/true\nRestart=sometimes\n")
    check = subprocess.run(["systemd-analyze", "verify", "--man=no", str(bad)], capture_output=True, text=True)
    assert "restart specifier" in check.stderr


def compose_command() -> list[str] | None:
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    return ["docker-compose"] if shutil.which("docker-compose") else None


def test_docker_compose_accepts_the_compose_file(compose_out):
    command = compose_command()
    if command is None:
        pytest.skip("neither `docker compose` nor `docker-compose` is installed here")
    check = subprocess.run([*command, "-f", str(compose_out / "compose.yaml"), "config"], cwd=compose_out,
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    for name in ("nats-1", "nats-2", "nats-3", "streams", "scheduler-0", "scheduler-1", "executor-0",
                 "executor-1", "ingest", "notifier", "analytics"):
        assert re.search(rf"(?m)^  {name}:$", check.stdout), name


def test_compose_runs_every_program_with_its_own_password_file(compose_out):
    services = hosts.compose_data(compose_out, ROOT, render.Ports.from_bases(14222, 16222, 18222), 9100)["services"]
    for name, program in shipped_programs(Path("/opt/valor"), "").items():
        for n in range(program.numprocs):
            service = services[f"{name}-{n}" if program.numprocs > 1 else name]
            assert service["command"] == program.command.replace("%(process_num)s", str(n)).split()
            assert service["environment"]["VALOR_NATS_PASSWORD_FILE"] == f"/run/secrets/nats-{program.user}"
            assert service["secrets"] == ["nats-ca", f"nats-{program.user}"]
            assert service["environment"]["VALOR_NATS_URL"] == "tls://n1:14222,tls://n2:14222,tls://n3:14222"
            assert service["depends_on"] == {"streams": {"condition": "service_completed_successfully"}}
    for i, node in enumerate(render.NODES):
        assert services[f"nats-{i + 1}"]["volumes"][1] == f"{node}-store:/var/lib/valor"  # a store of its own


def test_certificates_are_made_once_and_again_when_the_addresses_change(tmp_path):
    cert, key = certs.ensure_cert(tmp_path, "n1", ["10.0.0.1", "n1.example.net"])
    assert key.stat().st_mode & 0o077 == 0 and (tmp_path / "ca-key.pem").stat().st_mode & 0o077 == 0
    verify = subprocess.run(["openssl", "verify", "-CAfile", str(tmp_path / "ca.pem"), str(cert)],
                            capture_output=True, text=True)
    assert verify.returncode == 0, verify.stderr
    first = cert.read_text()
    assert certs.ensure_cert(tmp_path, "n1", ["10.0.0.1", "n1.example.net"])[0].read_text() == first
    certs.ensure_cert(tmp_path, "n1", ["10.0.0.2"])
    assert cert.read_text() != first
    assert certs.san(["10.0.0.2", "::1", "h"]) == "IP:10.0.0.2,IP:::1,DNS:h"
    with pytest.raises(certs.CertError, match="NAME=ADDRESS"):
        certs.parse_spec("n1")
