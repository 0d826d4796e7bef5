"""Reading a plan file: JSON or TOML ``{"tasks": [{"name", "type", "input", "after", ...}]}``.

The file is checked against a strict shape first, so a misspelt key is an
error naming it instead of a silently ignored setting.  What makes a plan
valid (cycles, unknown names, failed dependencies) is the domain's
(``promises/plan.py``); the scheduler applies it on submission, against the
promises it knows, and answers with a sentence naming the culprit.
"""

from __future__ import annotations

import json
import tomllib
from typing import Any

import msgspec

from schemas.commands import NewPromise


class PlanFileError(ValueError):
    pass


class PlanTask(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: str
    type: str = "noop"
    input: Any = None
    after: list[str] = []
    depends_on: list[int] = []  # existing promise ids
    title: str | None = None
    priority: int | None = None
    queue: str | None = None
    key: str | None = None
    key_limit: int | None = None
    delay: float | None = None
    timeout: float | None = None
    retries: int | None = None
    backoff: float | None = None


class PlanFile(msgspec.Struct, forbid_unknown_fields=True):
    tasks: list[PlanTask]


def parse_document(text: str) -> Any:
    """JSON when it parses as JSON, else TOML; the error shown is the likelier format's."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as json_error:
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as toml_error:
            looks_json = text.lstrip()[:1] in ("{", "[")
            error = f"invalid JSON: {json_error}" if looks_json else f"invalid TOML: {toml_error}"
            raise PlanFileError(f"cannot read the plan: {error}") from None


def read_plan(text: str) -> list[NewPromise]:
    """The plan's tasks in file order, ready to submit; raises PlanFileError."""
    try:
        plan = msgspec.convert(parse_document(text), PlanFile)
    except msgspec.ValidationError as exc:
        raise PlanFileError(f"invalid plan: {exc}") from None
    try:
        return [to_new_promise(task) for task in plan.tasks]
    except msgspec.ValidationError as exc:
        raise PlanFileError(f"invalid plan: {exc}") from None


def to_new_promise(task: PlanTask) -> NewPromise:
    """Settings left out of the file stay out, so the task type's defaults apply."""
    fields = {k: v for k, v in msgspec.structs.asdict(task).items() if v is not None or k == "input"}
    return msgspec.convert(fields, NewPromise)
