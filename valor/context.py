"""The cluster ``make up`` started, recorded in one fixed place so the CLI finds it from any directory.

Like the ``nats`` CLI's contexts: ``make up`` (deploy/render.py) writes the
cluster's URL, the CLI's NATS user and the path of that user's password *file*
(never the password) to ``$VALOR_CONTEXT``, else
``$XDG_CONFIG_HOME/valor/context.json``, else ``~/.config/valor/context.json``.
``make down`` leaves it: it only names files, and a CLI that then cannot reach
the URL says that the cluster of that checkout is down.  The last ``make up``
wins; ``VALOR_NATS_URL`` / ``VALOR_NATS_USER`` / ``VALOR_SECRETS`` override it.

Standard library only: deploy/render.py imports it before anything else is installed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

FILE_NAME = "context.json"


class ContextError(Exception):
    """The context file exists but cannot be used; the message names the file and what is wrong."""


@dataclass(frozen=True)
class Context:
    url: str
    user: str
    password_file: str
    root: str  # the checkout whose make up wrote it: where to run make up again
    path: Path  # the file it was read from
    ca: str = ""  # the CA file that signed the cluster's TLS certificates (make up NATS_TLS=1), else ""


def context_path(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    if env.get("VALOR_CONTEXT"):
        return Path(env["VALOR_CONTEXT"]).expanduser()
    config = env.get("XDG_CONFIG_HOME") or str(Path(env.get("HOME") or Path.home()) / ".config")
    return Path(config).expanduser() / "valor" / FILE_NAME


def read(environ: Mapping[str, str] | None = None) -> Context | None:
    """The recorded cluster, or None when no ``make up`` wrote one."""
    path = context_path(environ)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ContextError(f"cannot read the Valor context {path}: {exc}; run `make up` to rewrite it") from None
    fields = ("url", "user", "password_file")
    if not isinstance(data, dict) or not all(isinstance(data.get(f), str) and data[f] for f in fields):
        raise ContextError(f"the Valor context {path} lacks {', '.join(fields)}; run `make up` to rewrite it")
    return Context(url=data["url"], user=data["user"], password_file=data["password_file"],
                   root=str(data.get("root", "")), path=path, ca=str(data.get("ca") or ""))


def write(path: Path, url: str, user: str, password_file: Path, root: Path, ca: Path | None = None) -> Path:
    """Record the cluster; the file names the password file (and the CA file), so it holds nothing secret."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    data = {"url": url, "user": user, "password_file": str(password_file), "root": str(root)}
    if ca is not None:
        data["ca"] = str(ca)
    text = json.dumps(data, indent=2)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(text + "\n")
    os.replace(tmp, path)  # a CLI reading meanwhile sees the old file or the new one, never half
    return path
