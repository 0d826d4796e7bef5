"""Run a rendered systemd unit the way systemd would, without systemd: for tests of the host files.

A host's tree from ``render.py --target systemd`` (``<out>/<host>/etc/...``) is
used in place: paths under /etc/valor in the unit point into that tree.  From
the unit's [Service] section it takes WorkingDirectory, EnvironmentFile,
Environment (with %i and %d), LoadCredential (the file is copied into a private
credentials directory, as systemd does) and ExecStart (with ${VAR} from the
environment), and gives the process to start.  The network-namespace tests
(tests/net/) run the same units inside each simulated host.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path

ETC = "/etc/valor"
SYSTEMD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"  # what systemd gives a service


@dataclass(frozen=True)
class Process:
    argv: list[str]
    env: dict[str, str]
    cwd: Path


def _unquote(value: str) -> str:
    return value[1:-1] if len(value) >= 2 and value[0] == value[-1] == '"' else value


def service_settings(text: str) -> list[tuple[str, str]]:
    """(key, value) of the [Service] section, in order (a key may repeat)."""
    section, found = None, []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line
        elif section == "[Service]":
            key, _, value = line.partition("=")
            found.append((key.strip(), value.strip()))
    return found


def read_env_file(path: Path) -> dict[str, str]:
    env = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            env[key.strip()] = _unquote(value.strip())
    return env


def process(host: Path, unit: str, credentials: Path, base_env: dict[str, str] | None = None) -> Process:
    """The process of ``unit`` (``valor-executor@0.service``) on the host whose tree is ``host``.

    ``credentials`` is an empty directory that becomes the unit's %d.
    """
    instance = unit.split("@", 1)[1].removesuffix(".service") if "@" in unit else ""
    template = re.sub(r"@[^.]*\.service$", "@.service", unit)
    text = (host / "etc/systemd/system" / template).read_text()
    etc = str(host / ETC.lstrip("/"))

    def expand(value: str) -> str:
        return value.replace(ETC, etc).replace("%i", instance).replace("%d", str(credentials))

    env = {"PATH": SYSTEMD_PATH, **(base_env or {})}
    argv: list[str] = []
    cwd = Path("/")
    for key, value in service_settings(text):
        if key == "WorkingDirectory":
            cwd = Path(expand(value))
        elif key == "EnvironmentFile":
            env.update({k: expand(v) for k, v in read_env_file(Path(expand(value))).items()})
        elif key == "Environment":
            name, _, setting = _unquote(value).partition("=")
            env[name] = expand(setting)
        elif key == "LoadCredential":
            name, _, source = value.partition(":")
            credentials.mkdir(parents=True, exist_ok=True, mode=0o700)
            shutil.copyfile(expand(source), credentials / name)
            os.chmod(credentials / name, 0o400)
        elif key == "ExecStart":
            argv = [re.sub(r"\$\{(\w+)\}", lambda m: env.get(m.group(1), ""), expand(word))
                    for word in shlex.split(value)]
    if not argv:
        raise ValueError(f"{unit} has no ExecStart")
    return Process(argv, env, cwd)
