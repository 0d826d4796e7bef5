"""The handler table: each task type of valor.toml bound to the code that runs it.

Production builds it here from the configuration; tests pass their own
handlers to ``Executor`` instead (they are laid over this table).
"""

from __future__ import annotations

from nats.aio.client import Client

from valor.config import Config

from .claude import claude_handler
from .context import Handler
from .respond import respond_handler
from .shell import shell_handler
from .tasks import builtin_handlers


def handlers_for(config: Config, nc: Client) -> dict[str, Handler]:
    builtins = builtin_handlers()
    table: dict[str, Handler] = {}
    for name, t in config.types.items():
        match t.handler:
            case "claude":
                table[name] = claude_handler(name, t, config)
            case "respond":
                table[name] = respond_handler(config, nc)
            case "shell":
                table[name] = shell_handler(config.shell.allow)
            case builtin:
                table[name] = builtins[builtin]
    return table
