"""Where a Claude Code task may write, read and connect, as the CLI's settings and environment.  Pure.

The boundary is Claude Code's own sandbox (bubblewrap and socat on Linux):
every Bash command runs inside it, may write only the workspace and its
package caches, reach only the type's network domains, and never read Valor's
state (``var/``: NATS passwords, Telegram sessions; ``.env``) or the
operator's credentials (``~/.ssh`` and the like).  Because the operating
system holds that line, commands run without asking, compound ones included;
a command that cannot run sandboxed is refused, never run outside it, and a
machine without the sandbox's tools fails the attempt saying what to install.
The file tools (Read, Edit, Write) are held to the workspace by the CLI in
``-p`` mode and denied the same secret paths by permission rules.

The CLI's environment is built from an allowlist: the API key it needs, its
own settings, locale and proxy; no Valor variable (NATS users, Telegram
credentials) reaches it.  The commands it runs see the same environment, API
key included: the CLI's ``CLAUDE_CODE_SUBPROCESS_ENV_SCRUB`` would hide the
key but also puts the CLI in a hardened mode that refuses writes to the
workspace (2.1.332), so it is not used.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from valor.config import ChatSandbox, Sandbox, TaskType

# Credentials in the operator's home that no task may read.
HOME_SECRETS = (".ssh", ".aws", ".azure", ".gnupg", ".kube", ".docker", ".config/gcloud", ".config/gh", ".netrc",
                ".git-credentials", ".npmrc", ".pypirc", ".claude", ".claude.json")
# What the CLI needs from the executor's environment; everything else stays behind.
PASS_ENV = ("PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TZ", "TERM", "TMPDIR",
            "NO_PROXY", "no_proxy", "HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy")
PASS_PREFIXES = ("LC_", "ANTHROPIC_", "CLAUDE_CODE_", "CLAUDE_CONFIG_DIR")
QUIET_ENV = {
    "DISABLE_TELEMETRY": "1",
    "DISABLE_AUTOUPDATER": "1",
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
}
READ_ONLY_MODE = "plan"


@dataclass(frozen=True)
class Places:
    """The paths a task's boundary is drawn with."""

    workspace: Path
    valor_home: Path  # the directory Valor runs from: its var/ and .env hold secrets
    home: Path  # the operator's home
    cache: Path  # this workspace's package caches (pip, npm): writable, kept between attempts
    secrets: tuple[Path, ...] = ()  # more paths no task may read (the CLI's config dir, password files)


def deny_read(sandbox: Sandbox, chat: ChatSandbox, places: Places,
              children: Callable[[Path], list[Path]] = lambda path: []) -> list[str]:
    """The paths no task may read; one that holds the workspace or its cache is denied around them.

    A deny rule on a directory also denies writing under it to the file tools
    (the CLI turns ``Edit`` rules into the sandbox's write rules), so
    ``var/`` cannot be denied whole when the workspace is ``var/workspace``:
    its other entries are, level by level down to the workspace (another
    chat's workspace beside it included).  ``children`` lists a directory.
    """
    denied = [places.valor_home / "var", places.valor_home / ".env",
              *(places.home / name for name in HOME_SECRETS), *places.secrets]
    denied += [Path(p).expanduser() for p in (*sandbox.deny_read, *chat.deny_read)]
    keep = (places.workspace, places.cache)
    return _unique(q for d in denied for q in _around(d, keep, children))


def _around(denied: Path, keep: tuple[Path, ...], children: Callable[[Path], list[Path]]) -> list[Path]:
    if denied in keep:
        return []  # the workspace itself is never denied (a path inside it may be)
    if not any(_under(k, denied) for k in keep):
        return [denied]
    return [q for child in children(denied) for q in _around(child, keep, children)]


def settings(task_type: TaskType, chat: ChatSandbox, places: Places,
             children: Callable[[Path], list[Path]] = lambda path: []) -> dict:
    """The ``--settings`` of one attempt: the sandbox, and permission rules for the file tools."""
    sandbox = task_type.sandbox
    denied = deny_read(sandbox, chat, places, children)
    rules = [f"{tool}(/{path}/**)" for path in denied for tool in ("Read", "Edit")]
    rules += [f"{tool}(/{path})" for path in denied for tool in ("Read", "Edit")]
    out: dict = {"permissions": {"deny": rules}}
    if not enabled(task_type, chat):
        out["sandbox"] = {"enabled": False}
        return out
    out["sandbox"] = {
        "enabled": True,
        "autoAllowBashIfSandboxed": True,
        "allowUnsandboxedCommands": False,
        "failIfUnavailable": True,
        "network": {"allowedDomains": _unique([*sandbox.network, *chat.network])},
        "filesystem": {
            "allowWrite": _unique([places.cache, *(Path(p).expanduser() for p in (*sandbox.allow_write,
                                                                                  *chat.allow_write))]),
            "denyRead": denied,
        },
    }
    return out


def enabled(task_type: TaskType, chat: ChatSandbox) -> bool:
    return task_type.sandbox.enabled if chat.enabled is None else chat.enabled


def options(task_type: TaskType, chat: ChatSandbox, places: Places,
            children: Callable[[Path], list[Path]] = lambda path: []) -> list[str]:
    """The CLI options that draw the boundary.

    Bash is allowed outright only inside the sandbox and not in a read-only
    type: some commands (package installs) would otherwise still ask, and in
    ``-p`` mode a question is a refusal.
    """
    tools = list(task_type.allowed_tools or [])
    if enabled(task_type, chat) and task_type.permission_mode != READ_ONLY_MODE and "Bash" not in tools:
        tools.append("Bash")
    argv = ["--settings", json.dumps(settings(task_type, chat, places, children), separators=(",", ":"))]
    return argv + (["--allowedTools", *tools] if tools else [])


def environment(environ: Mapping[str, str], places: Places, valor_bin: str | None = None) -> dict[str, str]:
    """The CLI's environment: the allowlisted part of ``environ``, quiet, with per-workspace caches.

    ``valor_bin`` (Valor's own virtualenv) is taken off ``PATH`` so ``python3``
    in a task is the system's, not the one that runs Valor.
    """
    env = {k: v for k, v in environ.items() if k in PASS_ENV or k.startswith(PASS_PREFIXES)}
    if valor_bin and "PATH" in env:
        env["PATH"] = ":".join(p for p in env["PATH"].split(":") if p and p.rstrip("/") != valor_bin.rstrip("/"))
    cache = str(places.cache)
    return {**env, **QUIET_ENV, "PIP_CACHE_DIR": f"{cache}/pip", "npm_config_cache": f"{cache}/npm"}


def _under(path: Path, parent: Path) -> bool:
    return path == parent or parent in path.parents


def _unique(paths) -> list[str]:
    return list(dict.fromkeys(str(p) for p in paths))
