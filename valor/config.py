"""``valor.toml``: task types, chats and their workspaces, the shell allowlist, the agent.

Loaded and validated once at start; an error names the bad key
(``types.code.timeout: Expected `float`, got `str```).  Every section has
defaults, so Valor runs without a file.  The path is ``$VALOR_CONFIG``, else
``./valor.toml`` when it exists.
"""

from __future__ import annotations

import os
import re
import string
import tomllib
from pathlib import Path

import msgspec

HANDLERS = ("noop", "echo", "sleep", "fail", "shell", "respond", "claude")
PERMISSION_MODES = ("default", "acceptEdits", "plan", "bypassPermissions", "auto", "manual", "dontAsk")


class ConfigError(ValueError):
    pass


class Strict(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    pass


class Sandbox(Strict):
    """Claude Code's sandbox for the Bash commands of a task (bubblewrap on Linux).

    Inside it a command may write only the workspace (and ``allow_write``),
    reach only the ``network`` domains, and never read Valor's secrets or the
    operator's credentials (``deny_read`` adds paths to those).  Commands run
    without asking, since the operating system holds the boundary; a command
    that would need to leave it is refused, never run unsandboxed.
    """

    enabled: bool = True
    network: list[str] = []  # domains sandboxed commands may reach, e.g. "pypi.org", "*.github.com"
    allow_write: list[str] = []  # paths beyond the workspace
    deny_read: list[str] = []  # paths beyond Valor's own secrets and the home's credentials


class ChatSandbox(Strict):
    """A chat's additions to its task types' sandbox (a project that needs its own registry, say)."""

    enabled: bool | None = None  # None: as the task type says
    network: list[str] = []
    allow_write: list[str] = []
    deny_read: list[str] = []


# What counts as a check (a test run) in a command: its exit code is the work's verdict.  A runner in
# command position (``pytest``, ``python -m unittest``, ``.venv/bin/pytest``, ``&& npm test``), not a command
# that only mentions one (``pip install pytest-cov``, ``cat test_app.py``).
DEFAULT_CHECKS = (
    r"(?:^|[;&|(]|\s-m|/|\bnpx|\bexec)\s*(pytest|py\.test|unittest|nose2|tox|nox|jest|vitest|mocha|rspec|phpunit"
    r"|ctest)(?=\s|$)"
    r"|\b(npm|yarn|pnpm|bun)\s+(run\s+)?test\b|\b(go|cargo|dotnet|mix|deno|zig)\s+test\b"
    r"|\bmake\s+(test|check)\b|\b(python[\d.]*|node|bash|sh|ruby)\s+(\S*/)?(tests?|test_\w+|\w+_test)\.(py|sh|js|ts|rb)\b"
)
CHECK_FAILURES = ("report", "fail")
# How a plan's steps are told in a chat: one checklist message edited in place and
# one final reply for the whole plan, or a status message and a result reply per step.
NOTICE_MODES = ("checklist", "each")


class TaskType(Strict):
    """How one task type runs; a submitted task may override queue, timeout and retries."""

    handler: str = ""  # defaults to the type's own name
    queue: str = "default"
    timeout: float | None = None  # seconds per attempt
    retries: int = 0
    backoff: float = 1.0
    backoff_factor: float = 2.0
    backoff_max: float = 300.0
    jitter: float = 0.1
    prompt: str = "{title}\n\n{input}"  # Claude Code: {title} {input} {deps} {workspace}
    permission_mode: str | None = None  # Claude Code's --permission-mode
    allowed_tools: list[str] | None = None  # Claude Code's --allowedTools
    sandbox: Sandbox = Sandbox()  # Claude Code: where its Bash commands may write, read and connect
    checks: str = DEFAULT_CHECKS  # Claude Code: a regex; matching commands are the work's checks
    failed_check: str = "report"  # Claude Code: a last check that failed is reported, or fails the attempt
    concurrency_key: str | None = None  # template: {workspace} {chat_id} {type}
    concurrency_limit: int = 1
    notify: str | None = None  # as a plan step: "each" (messages of its own) or "checklist"; None: as the plan
    max_cost: float | None = None  # USD one attempt may spend (Claude Code, the LLM agent); None: no cap


class Queue(Strict):
    """How the scheduler feeds one queue."""

    # Work items handed to WORK beyond the free slots, as a multiple of the queue's
    # slots.  0 keeps priority order exact: nothing waits in WORK, so the scheduler
    # hands out the best ready promise each time a slot frees.  1.0 lets every slot
    # have its next item waiting: executors never idle for a scheduler round (more
    # than half again the throughput of short tasks), but the items already waiting
    # run in arrival order, not priority order.
    dispatch_ahead: float = 0.0


class Chat(Strict):
    workspace: str | None = None  # the project directory its code tasks run in
    sandbox: ChatSandbox = ChatSandbox()
    work_group: bool = False  # a group where every message is for Valor, mention or not
    daily_budget: float | None = None  # USD; None: as ``[budgets] chat_daily`` says
    monthly_budget: float | None = None


class Budgets(Strict):
    """What a chat and a user may spend per day and per month, in USD (decision 49).

    Off by default (None: no budget).  A plan a chat asks for while one of its
    budgets is spent is held for approval, saying how much is left; ``owners``
    (user ids) may raise or reset a chat's budget from the chat (``/budget``).
    Days and months are UTC.
    """

    chat_daily: float | None = None
    chat_monthly: float | None = None
    user_daily: float | None = None
    user_monthly: float | None = None
    owners: list[int] = []


# No interpreters by default ("python3 -c ..." would make the allowlist meaningless), and no
# file readers: a shell task must not read var/secrets.
DEFAULT_SHELL_ALLOW = ("echo", "true", "false", "ls", "pytest", "git", "sleep", "uname", "date", "wc")


class Shell(Strict):
    allow: list[str] = msgspec.field(default_factory=lambda: list(DEFAULT_SHELL_ALLOW))


class Agent(Strict):
    model: str = "claude-sonnet-5-5"
    max_tokens: int = 2048
    history: int = 20  # recent chat messages given to the agent as context


DAY = 24 * 3600.0


class Approval(Strict):
    """When a plan a chat asked for waits for the user's go before any of it runs (decision 45).

    Off by default.  A plan waits when it has more than ``max_steps`` steps or a
    task of one of ``types``; unanswered, it is cancelled after ``expire_after``
    seconds (0: it waits until answered).
    """

    max_steps: int = 0  # 0: any number of steps runs at once
    types: list[str] = []  # e.g. ["code"]: plans that change code wait
    expire_after: float = DAY


class Schedules(Strict):
    """What a schedule made from a chat may ask (decision 51).

    A chat (or its LLM agent misreading "every second") may not schedule runs
    closer than ``min_interval`` seconds; 0 lifts the floor.  The CLI is the
    operator's and is not held to it.
    """

    min_interval: float = 60.0


class Telegram(Strict):
    """Who may talk to Valor, and how fast Valor may talk back."""

    allow_users: list[int | str] = []  # user ids or usernames (with or without @)
    allow_chats: list[int] = []  # groups and channels Valor listens in (private chats: allow_users)
    mention_names: list[str] = []  # words that count as mentioning Valor in a group, besides @username
    catchup_horizon: float = 7 * DAY  # messages older than this are never caught up
    catchup_limit: int = 200  # messages read per chat per backfill or reconcile
    reconcile_interval: float = 180.0  # seconds between history reconciles
    dialogs_limit: int = 200  # most recent dialogs scanned for allowed chats
    edit_interval: float = 3.0  # seconds between edits of one message
    chat_interval: float = 1.0  # seconds between messages to one chat
    group_per_minute: int = 20  # messages per minute to one group
    notice_horizon: float = DAY  # notices about events older than this are not sent any more
    plan_notices: str = "checklist"  # a plan's steps: one checklist and one final reply, or "each" step its own
    console_chat: int = 1  # the chat id of the local console
    # A photo or document bigger than this is not saved into the chat's workspace
    # (the message says so); the console's /attach obeys it too.
    attachment_max_bytes: int = 20 * 1024 * 1024
    # A notice longer than this (a long result) is one message: its beginning, and the whole as a document.
    document_after_chars: int = 3 * 4096


class Config(Strict):
    types: dict[str, TaskType] = {}
    queues: dict[str, Queue] = {}
    chats: dict[str, Chat] = {}  # chat id (as a string) -> settings
    workspace: str = "var/workspace"  # for chats without their own
    shell: Shell = Shell()
    agent: Agent = Agent()
    telegram: Telegram = Telegram()
    approval: Approval = Approval()
    budgets: Budgets = Budgets()
    schedules: Schedules = Schedules()

    def task_type(self, name: str) -> TaskType | None:
        return self.types.get(name)

    def queue(self, name: str) -> Queue:
        return self.queues.get(name) or _DEFAULT_QUEUE

    def workspace_for(self, chat_id: int | None) -> str:
        chat = self.chats.get(str(chat_id)) if chat_id is not None else None
        return (chat.workspace if chat and chat.workspace else None) or self.workspace


_DEFAULT_QUEUE = Queue()
_READ_ONLY = "plan"
# Package registries: a code task can install into the workspace (a venv, node_modules) and nothing else.
REGISTRIES = ["pypi.org", "files.pythonhosted.org", "registry.npmjs.org"]
BUILTIN_TYPES: dict[str, TaskType] = {
    "noop": TaskType(),
    "echo": TaskType(),
    "sleep": TaskType(),
    "fail": TaskType(),
    "shell": TaskType(timeout=600),
    # The agent answers on its own queue so background work never delays a reply.
    "respond": TaskType(queue="respond", timeout=300, retries=2, backoff=2.0),
    "code": TaskType(handler="claude", queue="code", timeout=1800, retries=1, backoff=30,
                     permission_mode="acceptEdits", concurrency_key="workspace:{workspace}",
                     sandbox=Sandbox(network=REGISTRIES),
                     prompt="{title}\n\n{input}\n\nResults of the steps before this one:\n{deps}"),
    "search": TaskType(handler="claude", queue="code", timeout=600, retries=1, backoff=30,
                       permission_mode=_READ_ONLY, prompt="Search and report: {title}\n\n{input}"),
    "analysis": TaskType(handler="claude", queue="code", timeout=900, retries=1, backoff=30,
                         permission_mode=_READ_ONLY, prompt="Analyse: {title}\n\n{input}\n\n{deps}"),
    "code_review": TaskType(handler="claude", queue="code", timeout=900, retries=1, backoff=30,
                            permission_mode=_READ_ONLY, allowed_tools=["Read", "Grep", "Glob"],
                            prompt="Review, without changing anything: {title}\n\n{input}"),
}


def _validate(config: Config) -> Config:
    for name, t in config.types.items():
        where = f"types.{name}"
        if t.handler not in HANDLERS:
            raise ConfigError(f"{where}.handler: unknown handler '{t.handler}'; use one of {', '.join(HANDLERS)}")
        if t.permission_mode is not None and t.permission_mode not in PERMISSION_MODES:
            raise ConfigError(f"{where}.permission_mode: '{t.permission_mode}' is not one of {', '.join(PERMISSION_MODES)}")
        if t.timeout is not None and t.timeout <= 0:
            raise ConfigError(f"{where}.timeout: must be positive")
        if t.retries < 0:
            raise ConfigError(f"{where}.retries: must not be negative")
        if t.max_cost is not None and t.max_cost <= 0:
            raise ConfigError(f"{where}.max_cost: must be positive (leave it out for no cap)")
        if t.concurrency_limit < 1:
            raise ConfigError(f"{where}.concurrency_limit: must be at least 1")
        if t.concurrency_key is not None:
            _check_key_template(t.concurrency_key, f"{where}.concurrency_key")
        if t.failed_check not in CHECK_FAILURES:
            raise ConfigError(f"{where}.failed_check: '{t.failed_check}' is not one of {', '.join(CHECK_FAILURES)}")
        try:
            re.compile(t.checks)
        except re.error as exc:
            raise ConfigError(f"{where}.checks: not a valid regular expression: {exc}") from None
        if t.notify is not None and t.notify not in NOTICE_MODES:
            raise ConfigError(f"{where}.notify: '{t.notify}' is not one of {', '.join(NOTICE_MODES)}")
        _check_sandbox(t.sandbox, f"{where}.sandbox")
    for name, q in config.queues.items():
        if not 0 <= q.dispatch_ahead <= 100:
            raise ConfigError(f"queues.{name}.dispatch_ahead: must be between 0 and 100")
    for chat_id, chat in config.chats.items():
        if not chat_id.lstrip("-").isdigit():
            raise ConfigError(f"chats.{chat_id}: chat ids are integers")
        _check_sandbox(chat.sandbox, f"chats.{chat_id}.sandbox")
    tg = config.telegram
    for key in ("catchup_horizon", "reconcile_interval", "notice_horizon"):
        if getattr(tg, key) <= 0:
            raise ConfigError(f"telegram.{key}: must be positive")
    for key in ("edit_interval", "chat_interval"):
        if getattr(tg, key) < 0:
            raise ConfigError(f"telegram.{key}: must not be negative")
    if tg.plan_notices not in NOTICE_MODES:
        raise ConfigError(f"telegram.plan_notices: '{tg.plan_notices}' is not one of {', '.join(NOTICE_MODES)}")
    if tg.document_after_chars < 4096:  # a text edited in place (a status, a checklist) must stay a text
        raise ConfigError("telegram.document_after_chars: must be at least 4096 (one message)")
    if tg.attachment_max_bytes < 0:
        raise ConfigError("telegram.attachment_max_bytes: must not be negative")
    for key in ("catchup_limit", "dialogs_limit", "group_per_minute"):
        if getattr(tg, key) < 1:
            raise ConfigError(f"telegram.{key}: must be at least 1")
    for user in tg.allow_users:
        if isinstance(user, str) and not user.lstrip("@").replace("_", "").isalnum():
            raise ConfigError(f"telegram.allow_users: '{user}' is neither a user id nor a username")
    _check_approval(config)
    _check_budgets(config)
    if config.schedules.min_interval < 0:
        raise ConfigError("schedules.min_interval: must not be negative (0: no minimum)")
    for program in config.shell.allow:
        if not program or any(c.isspace() for c in program):
            raise ConfigError(f"shell.allow: '{program}' is not a program name")
    return config


def _check_approval(config: Config) -> None:
    rules = config.approval
    if rules.max_steps < 0:
        raise ConfigError("approval.max_steps: must not be negative (0: no limit)")
    if rules.expire_after < 0:
        raise ConfigError("approval.expire_after: must not be negative (0: never)")
    for name in rules.types:
        if name not in config.types:
            raise ConfigError(f"approval.types: unknown task type '{name}'")


def _check_budgets(config: Config) -> None:
    b = config.budgets
    for key in ("chat_daily", "chat_monthly", "user_daily", "user_monthly"):
        if (value := getattr(b, key)) is not None and value < 0:
            raise ConfigError(f"budgets.{key}: must not be negative (leave it out for no budget)")
    for chat_id, chat in config.chats.items():
        for key in ("daily_budget", "monthly_budget"):
            if (value := getattr(chat, key)) is not None and value < 0:
                raise ConfigError(f"chats.{chat_id}.{key}: must not be negative (leave it out for the default)")


_DOMAIN = re.compile(r"(\*\.)?[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*")


def _check_sandbox(sandbox: Sandbox | ChatSandbox, where: str) -> None:
    for domain in sandbox.network:
        if not _DOMAIN.fullmatch(domain):
            raise ConfigError(f"{where}.network: '{domain}' is not a domain (e.g. pypi.org or *.github.com)")
    for key in ("allow_write", "deny_read"):
        for path in getattr(sandbox, key):
            if not path.startswith(("/", "~")):
                raise ConfigError(f"{where}.{key}: '{path}' is not an absolute path")


KEY_PLACEHOLDERS = ("workspace", "chat_id", "type")


def _check_key_template(template: str, where: str) -> None:
    """Fail at start, not when the first task of that type is created (the scheduler would choke on it)."""
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as exc:
        raise ConfigError(f"{where}: not a valid template: {exc}") from None
    for field in fields:
        if field not in KEY_PLACEHOLDERS:
            raise ConfigError(f"{where}: unknown placeholder {{{field}}}; use {{workspace}}, {{chat_id}} or {{type}}")


def parse(text: str, source: str = "valor.toml") -> Config:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    # Tables keyed by name are converted one by one so an error names the key.
    types = dict(BUILTIN_TYPES)
    for name, fields in _table(raw.pop("types", {}), "types", source).items():
        base = msgspec.to_builtins(BUILTIN_TYPES.get(name, TaskType()))  # a named type extends its built-in
        types[name] = _convert({**base, **_table(fields, f"types.{name}", source)}, TaskType, f"types.{name}", source)
    chats = {str(k): _convert(v, Chat, f"chats.{k}", source)
             for k, v in _table(raw.pop("chats", {}), "chats", source).items()}
    queues = {str(k): _convert(v, Queue, f"queues.{k}", source)
              for k, v in _table(raw.pop("queues", {}), "queues", source).items()}
    config = _convert(raw, Config, "", source)
    types = {name: t if t.handler else msgspec.structs.replace(t, handler=name) for name, t in types.items()}
    try:
        return _validate(msgspec.structs.replace(config, types=types, chats=chats, queues=queues))
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def _table(value, where: str, source: str) -> dict:
    if not isinstance(value, dict):
        raise ConfigError(f"{source}: {where}: expected a table")
    return value


def _convert(value, cls, where: str, source: str):
    try:
        return msgspec.convert(value, cls)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{source}: {_keyed(str(exc), where)}") from None


def _keyed(message: str, where: str) -> str:
    """msgspec says ``... - at `$.timeout```; lead with the full key instead."""
    text, _, path = message.partition(" - at `$")
    key = ".".join(p for p in (where, path.rstrip("`").lstrip(".")) if p)
    if "unknown field" in text:
        field = text.split("`")[1]
        key, text = ".".join(p for p in (key, field) if p), "unknown key"
    return f"{key}: {text}" if key else text


DEFAULT = parse("")


def config_path() -> Path | None:
    env = os.environ.get("VALOR_CONFIG")
    if env:
        return Path(env)
    here = Path("valor.toml")
    return here if here.exists() else None


def load(path: str | os.PathLike | None = None) -> Config:
    path = Path(path) if path else config_path()
    if path is None:
        return parse("")
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    return parse(text, str(path))
