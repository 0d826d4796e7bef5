"""make demo runs the coding chain for real only where Claude Code can run, and says why not otherwise."""

from valor.demo import claude_ready, coding_chain


def test_the_real_chain_needs_the_cli_and_a_key_or_a_login(tmp_path):
    cli = tmp_path / "claude"
    assert "not installed" in claude_ready({"PATH": str(tmp_path)})
    assert "no ANTHROPIC_API_KEY" in claude_ready({"VALOR_CLAUDE_BIN": str(cli), "CLAUDE_CONFIG_DIR": str(tmp_path)})
    assert claude_ready({"VALOR_CLAUDE_BIN": str(cli), "ANTHROPIC_API_KEY": "k"}) is None
    (tmp_path / ".credentials.json").write_text("{}")
    assert claude_ready({"VALOR_CLAUDE_BIN": str(cli), "CLAUDE_CONFIG_DIR": str(tmp_path)}) is None


def test_the_coding_chain_is_three_code_steps_in_one_folder_each_after_the_last():
    steps = coding_chain("demo-1")
    assert [(s.name, s.type, s.after) for s in steps] == [
        ("setup", "code", []), ("write", "code", ["setup"]), ("run", "code", ["write"])]
    assert all("demo-1" in s.input for s in steps)
