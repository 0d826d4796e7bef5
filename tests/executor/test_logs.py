"""The log format is a contract: one compact JSON object per line, with promise and attempt ids."""

import json
import logging

from schemas.commands import WorkItem
from services.executor.logs import line

from .helpers import put_work


def test_log_line_is_compact_json_with_the_event_first():
    assert line("attempt.started", promise_id=12, attempt=1) == '{"event":"attempt.started","promise_id":12,"attempt":1}'


async def test_an_attempt_logs_its_start_and_result_with_ids(js, executor, caplog):
    caplog.set_level(logging.INFO, logger="valor.executor")
    ex = await executor()
    await put_work(js, WorkItem(id=5, attempt=2, task="noop"))
    await ex.run_until_idle()
    records = [json.loads(r.getMessage()) for r in caplog.records if r.name == "valor.executor"]
    started = next(r for r in records if r["event"] == "attempt.started")
    succeeded = next(r for r in records if r["event"] == "attempt.succeeded")
    assert started == {"event": "attempt.started", "task": "noop", "executor": "test-1",
                       "promise_id": 5, "attempt": 2, "delivery": 1}
    assert (succeeded["promise_id"], succeeded["attempt"]) == (5, 2)
