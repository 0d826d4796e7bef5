"""An attempt's evidence told in words: one line for the chat, the whole of it for show, /why and the web.  Pure.

The words come from the recorded ``Evidence`` only (commands with their exit
codes, files changed, refusals, cost), so what the chat says an attempt did is
what its own records say it did.
"""

from __future__ import annotations

from schemas.events import CommandRun, Evidence

COMMAND_CHARS = 60
OUTPUT_LINES = 12


def last_check(evidence: Evidence | None) -> CommandRun | None:
    """The last check (a test run) that ran to an exit: its exit code is the work's verdict."""
    if evidence is None:
        return None
    checks = [c for c in evidence.commands if c.check and c.exit_code is not None]
    return checks[-1] if checks else None


def check_failed(evidence: Evidence | None) -> CommandRun | None:
    """The last check, if it failed."""
    check = last_check(evidence)
    return check if check is not None and check.exit_code != 0 else None


def files_text(evidence: Evidence) -> str | None:
    if evidence.files_unknown is not None:
        return None
    n = len(evidence.files) + evidence.files_dropped
    if n == 0:
        return "no files changed"
    added = sum(f.added or 0 for f in evidence.files)
    removed = sum(f.removed or 0 for f in evidence.files)
    return f"{n} file{'s' if n != 1 else ''} changed (+{added} −{removed})"


def brief(evidence: Evidence | None) -> str:
    """One line: "3 files changed (+41 −7) · ran `pytest -q`: exit 0 · $0.21"."""
    if evidence is None:
        return ""
    files = files_text(evidence)
    parts = [files] if files else []
    check = last_check(evidence)
    ran = [c for c in evidence.commands if c.exit_code is not None]
    if check is not None:
        parts.append(f"ran `{clip(check.command)}`: exit {check.exit_code}")
    elif ran:
        failed = sum(1 for c in ran if c.exit_code != 0)
        count = len(ran) + evidence.commands_dropped
        parts.append(f"ran {count} command{'s' if count != 1 else ''}" + (f", {failed} failed" if failed else ""))
    refused = len(evidence.refusals) + sum(1 for c in evidence.commands if c.refused is not None)
    if refused:
        parts.append(f"{refused} refused")
    if evidence.cost_usd is not None:
        parts.append(f"${evidence.cost_usd:.2f}")
    return " · ".join(parts)


def lines(evidence: Evidence | None) -> list[str]:
    """Everything recorded, one fact per line (indented lines belong to the line above)."""
    if evidence is None:
        return []
    out = []
    about = []
    if evidence.session_id:
        about.append(f"session {evidence.session_id}")
    if evidence.turns is not None:
        about.append(f"{evidence.turns} turn{'s' if evidence.turns != 1 else ''}")
    if evidence.cost_usd is not None:
        about.append(f"${evidence.cost_usd:.4f}")
    if evidence.tokens is not None:
        t = evidence.tokens
        about.append(f"tokens in {t.input:,} out {t.output:,} cache read {t.cache_read:,} written {t.cache_creation:,}")
    if about:
        out.append(" · ".join(about))
    if evidence.commands_dropped:
        out.append(f"({evidence.commands_dropped} earlier commands not kept)")
    for c in evidence.commands:
        if c.refused is not None:
            out.append(f"refused  {c.command}: {c.refused}")
            continue
        code = "exit ?" if c.exit_code is None else f"exit {c.exit_code}"
        out.append(f"{code:<8} {c.command}" + ("   [check]" if c.check else ""))
        if c.output and (c.check or c.exit_code != 0):
            out += [f"    | {line}" for line in c.output.splitlines()[-OUTPUT_LINES:]]
    files = files_text(evidence)
    out.append(f"files: {files}" if files else f"files: unknown ({evidence.files_unknown})")
    for f in evidence.files:
        counts = "binary" if f.added is None else f"+{f.added} −{f.removed}"
        out.append(f"    {f.status:<9} {f.path} ({counts})")
    if evidence.files_dropped:
        out.append(f"    … and {evidence.files_dropped} more")
    for r in evidence.refusals:
        out.append(f"refused  {r.tool} {r.target}: {r.reason}".rstrip(": "))
    return out


def clip(command: str, limit: int = COMMAND_CHARS) -> str:
    text = " ".join(command.split())
    return text if len(text) <= limit else text[:limit] + "…"
