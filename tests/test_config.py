import pytest

from valor.config import ConfigError, load, parse


def test_without_a_file_every_builtin_type_is_configured():
    config = parse("")
    assert {"noop", "echo", "sleep", "fail", "shell", "respond", "code", "code_review"} <= set(config.types)
    assert config.types["code"].handler == "claude" and config.types["noop"].handler == "noop"
    assert config.types["code_review"].permission_mode == "plan"


def test_a_named_type_extends_its_builtin_key_by_key():
    config = parse("[types.code]\ntimeout = 60\n")
    assert config.types["code"].timeout == 60 and config.types["code"].handler == "claude"


def test_chats_map_to_workspaces_with_a_default():
    config = parse('workspace = "/srv/default"\n[chats.12]\nworkspace = "/srv/app"\n')
    assert config.workspace_for(12) == "/srv/app" and config.workspace_for(99) == "/srv/default"


@pytest.mark.parametrize("text,error", [
    ('[types.code]\ntimeout = "soon"', "valor.toml: types.code.timeout: Expected `float | null`, got `str`"),
    ("[types.code]\ntimout = 3", "valor.toml: types.code.timout: unknown key"),
    ('[types.x]\nhandler = "magic"', "valor.toml: types.x.handler: unknown handler 'magic'"),
    ('[types.code]\npermission_mode = "yolo"', "valor.toml: types.code.permission_mode: 'yolo' is not one of"),
    ("[chats.general]\nwork_group = true", "valor.toml: chats.general: chat ids are integers"),
    ("bogus = 1", "valor.toml: bogus: unknown key"),
    ('[shell]\nallow = ["rm -rf"]', "valor.toml: shell.allow: 'rm -rf' is not a program name"),
    ("x =", "valor.toml: not valid TOML"),
    ("[queues.default]\ndispatch_ahead = -1", "valor.toml: queues.default.dispatch_ahead: must be between 0 and 100"),
    ("[queues.default]\nahead = 1", "valor.toml: queues.default.ahead: unknown key"),
    ("[telegram]\nattachment_max_bytes = -1", "valor.toml: telegram.attachment_max_bytes: must not be negative"),
    ('[telegram]\nattachment_max_bytes = "20MB"',
     "valor.toml: telegram.attachment_max_bytes: Expected `int`, got `str`"),
    ('[approval]\ntypes = ["cod"]', "valor.toml: approval.types: unknown task type 'cod'"),
    ("[approval]\nmax_steps = -1", "valor.toml: approval.max_steps: must not be negative"),
    ("[approval]\nexpire_after = -5", "valor.toml: approval.expire_after: must not be negative"),
    ("[approval]\nsteps = 3", "valor.toml: approval.steps: unknown key"),
    ('[telegram]\nplan_notices = "quiet"', "valor.toml: telegram.plan_notices: 'quiet' is not one of checklist, each"),
    ('[types.code]\nnotify = "all"', "valor.toml: types.code.notify: 'all' is not one of checklist, each"),
    ("[schedules]\nmin_interval = -1", "valor.toml: schedules.min_interval: must not be negative"),
    ('[schedules]\nmin_interval = "1m"', "valor.toml: schedules.min_interval: Expected `float`, got `str`"),
    ("[schedules]\nminimum = 60", "valor.toml: schedules.minimum: unknown key"),
])
def test_a_bad_file_is_refused_naming_the_key(text, error):
    with pytest.raises(ConfigError) as exc:
        parse(text)
    assert str(exc.value).startswith(error)


def test_queues_keep_exact_priority_order_unless_told_to_dispatch_ahead():
    config = parse("[queues.default]\ndispatch_ahead = 1.5\n")
    assert config.queue("default").dispatch_ahead == 1.5 and config.queue("code").dispatch_ahead == 0


def test_missing_file_named_explicitly_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load(tmp_path / "nope.toml")


def test_code_tasks_of_one_workspace_share_a_concurrency_key():
    from schemas.commands import NewPromise
    from services.scheduler.intake import build_created

    config = parse('[chats.7]\nworkspace = "/srv/app"\n')
    created = build_created(NewPromise(type="code", title="fix"), 1, [], 0.0, config, request_id="r", index=0,
                            chat_id=7)
    assert created.concurrency_key == "workspace:/srv/app" and created.concurrency_limit == 1
    assert created.queue == "code" and created.timeout == 1800 and created.max_attempts == 2


def test_every_configured_type_has_a_handler_in_the_executor():
    from services.executor.handlers import handlers_for

    config = parse('[types.lint]\nhandler = "shell"\n[types.docs]\nhandler = "claude"\nqueue = "code"\n')
    table = handlers_for(config, nc=None)
    assert set(table) == set(config.types)
    assert {"lint", "docs", "respond", "code_review"} <= set(table)


def test_shell_programs_never_see_valors_secrets(monkeypatch):
    from services.executor.shell import program_env

    env = program_env({"ANTHROPIC_API_KEY": "sk", "VALOR_TG_BOT_TOKEN": "t", "PATH": "/bin", "HOME": "/root"})
    assert env == {"PATH": "/bin", "HOME": "/root"}


def test_the_readme_example_is_a_valid_configuration():
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    examples = [parse(block) for block in re.findall(r"```toml\n(.*?)```", readme, re.S)]  # every one is valid
    [config] = [c for c in examples if c.workspace_for(123456789) != "var/workspace"]
    assert any(c.budgets.owners == [123456789] for c in examples)
    assert config.workspace_for(123456789) == "/srv/my-project" and config.types["code"].timeout == 3600
