"""Log lines are a contract: JSON with the service and ids, never a secret."""

import json
import logging

from valor.logs import JsonFormatter, secret_values


def record(msg, *args, exc_info=None):
    return logging.LogRecord("valor.x", logging.INFO, __file__, 1, msg, args, exc_info)


def test_fields_logged_as_json_become_top_level_keys():
    line = json.loads(JsonFormatter("executor", []).format(record('{"event":"attempt.started","promise_id":3,"attempt":1}')))
    assert line["service"] == "executor" and line["level"] == "info" and line["logger"] == "valor.x"
    assert (line["event"], line["promise_id"], line["attempt"]) == ("attempt.started", 3, 1)


def test_plain_messages_go_under_msg():
    line = json.loads(JsonFormatter("scheduler", []).format(record("lease acquired by %s", "s1")))
    assert line["msg"] == "lease acquired by s1"


def test_secret_environment_values_never_appear():
    env = {"ANTHROPIC_API_KEY": "sk-ant-very-secret-123", "VALOR_TG_API_HASH": "0123456789abcdef",
           "VALOR_TG_BOT_TOKEN": "123:ABCDEF", "HOME": "/root", "VALOR_TG_PHONE": "+15551234567"}
    formatter = JsonFormatter("ingest", secret_values(env))
    try:
        raise RuntimeError("auth failed for key sk-ant-very-secret-123 from +15551234567")
    except RuntimeError:
        import sys
        text = formatter.format(record("token 123:ABCDEF hash 0123456789abcdef home /root", exc_info=sys.exc_info()))
    for secret in ("sk-ant-very-secret-123", "0123456789abcdef", "123:ABCDEF", "+15551234567"):
        assert secret not in text
    assert "/root" in text and text.count("***") >= 4


def test_an_event_line_reads_as_the_general_path_would_write_it_secrets_scrubbed(caplog):
    """EventLog's lines skip the decode and re-encode: same keys and values, same scrubbing."""
    from valor.logs import EventLog

    caplog.set_level(logging.INFO, logger="valor.fast")
    EventLog("valor.fast").info("attempt.failed", promise_id=7, error='tëxt "quoted" sk-secret-value-1', at=1.5)
    (rec,) = [r for r in caplog.records if r.name == "valor.fast"]
    formatter = JsonFormatter("executor", ["sk-secret-value-1"])
    fast = formatter.format(rec)
    rec.valor_event_line = False  # the general path: decode the message, merge, encode
    assert json.loads(fast) == json.loads(formatter.format(rec))
    assert "sk-secret-value-1" not in fast and json.loads(fast)["error"] == 'tëxt "quoted" ***'
    assert list(json.loads(fast))[:5] == ["ts", "level", "service", "logger", "event"]
