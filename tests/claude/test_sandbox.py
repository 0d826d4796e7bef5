"""The boundary of a Claude Code task drawn as the CLI's settings and options (pure, no CLI needed)."""

import json
from pathlib import Path

from services.executor.sandbox import Places, deny_read, environment, options, settings
from valor import config as valor_config
from valor.config import ChatSandbox

PLACES = Places(workspace=Path("/srv/valor/var/workspace"), valor_home=Path("/srv/valor"), home=Path("/home/op"),
                cache=Path("/srv/valor/var/cache/abc"), secrets=(Path("/home/op/.config/claude"),))
TYPES = valor_config.DEFAULT.types

VAR = {"/srv/valor/var": ["secrets", "sessions", "workspace", "cache", "log"],
       "/srv/valor/var/workspace": ["other-chat", "inbox-of-nobody"],
       "/srv/valor/var/cache": ["abc", "def"]}


def listing(path: Path) -> list[Path]:
    return [path / name for name in VAR.get(str(path), [])]


def test_commands_may_not_read_valor_state_or_the_home_credentials():
    denied = deny_read(TYPES["code"].sandbox, ChatSandbox(), PLACES, listing)
    assert denied[:6] == ["/srv/valor/var/secrets", "/srv/valor/var/sessions", "/srv/valor/var/cache/def",
                          "/srv/valor/var/log", "/srv/valor/.env", "/home/op/.ssh"]
    assert {"/home/op/.aws", "/home/op/.claude", "/home/op/.netrc", "/home/op/.config/claude"} <= set(denied)


def test_the_code_sandbox_writes_the_workspace_and_caches_reaches_the_registries_and_never_runs_outside():
    box = settings(TYPES["code"], ChatSandbox(), PLACES)["sandbox"]
    assert box["enabled"] and box["autoAllowBashIfSandboxed"] and box["failIfUnavailable"]
    assert box["allowUnsandboxedCommands"] is False
    assert box["network"] == {"allowedDomains": ["pypi.org", "files.pythonhosted.org", "registry.npmjs.org"]}
    assert box["filesystem"]["allowWrite"] == ["/srv/valor/var/cache/abc"]


def test_a_denied_directory_holding_the_workspace_is_denied_around_it_level_by_level():
    places = Places(workspace=Path("/srv/valor/var/workspace/chat-7"), valor_home=Path("/srv/valor"),
                    home=Path("/home/op"), cache=Path("/srv/valor/var/cache/abc"))
    denied = deny_read(TYPES["code"].sandbox, ChatSandbox(deny_read=["/srv/valor/var/workspace/chat-7/.env"]),
                       places, listing)
    # var/ itself would also forbid writing the workspace (deny rules reach the sandbox's write rules).
    assert "/srv/valor/var" not in denied
    assert denied[:6] == ["/srv/valor/var/secrets", "/srv/valor/var/sessions",
                          "/srv/valor/var/workspace/other-chat", "/srv/valor/var/workspace/inbox-of-nobody",
                          "/srv/valor/var/cache/def", "/srv/valor/var/log"]
    assert denied[-1] == "/srv/valor/var/workspace/chat-7/.env"  # inside the workspace may be denied
    assert not any(d in ("/srv/valor/var/workspace/chat-7", "/srv/valor/var/cache/abc") for d in denied)


def test_the_file_tools_are_denied_the_same_paths_by_permission_rules():
    rules = settings(TYPES["code"], ChatSandbox(), PLACES, listing)["permissions"]["deny"]
    assert {"Read(//srv/valor/var/secrets/**)", "Edit(//srv/valor/var/secrets/**)", "Read(//srv/valor/.env)",
            "Read(//home/op/.ssh/**)"} <= set(rules)
    assert not any("//srv/valor/var/**" in r or "var/workspace" in r for r in rules)


def test_a_chat_adds_domains_and_paths_and_may_turn_the_sandbox_off():
    chat = ChatSandbox(network=["*.github.com"], allow_write=["/data/out"], deny_read=["~/private"])
    box = settings(TYPES["code"], chat, PLACES)["sandbox"]
    assert box["network"]["allowedDomains"][-1] == "*.github.com"
    assert box["filesystem"]["allowWrite"] == ["/srv/valor/var/cache/abc", "/data/out"]
    assert box["filesystem"]["denyRead"][-1].endswith("/private")
    assert settings(TYPES["code"], ChatSandbox(enabled=False), PLACES)["sandbox"] == {"enabled": False}


def test_bash_is_allowed_outright_only_inside_the_sandbox_and_never_for_read_only_types():
    argv = options(TYPES["code"], ChatSandbox(), PLACES)
    assert argv[0] == "--settings" and json.loads(argv[1])["sandbox"]["enabled"]
    assert argv[2:] == ["--allowedTools", "Bash"]
    assert options(TYPES["code"], ChatSandbox(enabled=False), PLACES)[2:] == []
    assert options(TYPES["code_review"], ChatSandbox(), PLACES)[2:] == ["--allowedTools", "Read", "Grep", "Glob"]
    assert options(TYPES["analysis"], ChatSandbox(), PLACES)[2:] == []


def test_the_environment_is_an_allowlist_and_valor_s_own_virtualenv_leaves_path():
    env = environment({"PATH": "/srv/valor/.venv/bin:/usr/bin:/bin", "LC_ALL": "C.UTF-8", "VIRTUAL_ENV": "/v",
                       "CLAUDE_CODE_USE_BEDROCK": "1", "VALOR_NATS_USER": "executor", "SECRET_TOKEN": "x"},
                      PLACES, valor_bin="/srv/valor/.venv/bin")
    assert env["PATH"] == "/usr/bin:/bin" and env["LC_ALL"] == "C.UTF-8" and env["CLAUDE_CODE_USE_BEDROCK"] == "1"
    assert not {"VIRTUAL_ENV", "VALOR_NATS_USER", "SECRET_TOKEN"} & set(env)
