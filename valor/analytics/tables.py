"""The analytics file's tables and views: the SQL contract of docs/analytics.md.

Every time is a UTC ``TIMESTAMP``; every duration is seconds (``DOUBLE``).
Rows are built from POSIX seconds in Python and turned into timestamps on
insert (``TIMESTAMP`` columns below).  A change here that alters a table
bumps ``SCHEMA_VERSION``: an older file is then rebuilt from the log.
"""

from __future__ import annotations

SCHEMA_VERSION = "1"

# table -> [(column, type)]; the order is the order of the row tuples in rows.py / derive.py.
COLUMNS: dict[str, list[tuple[str, str]]] = {
    "events": [
        ("seq", "BIGINT"),  # PROMISES stream sequence
        ("subject", "VARCHAR"),
        ("promise_id", "BIGINT"),
        ("type", "VARCHAR"),  # the event: created, dispatched, ... ('undecodable' when the schema refused it)
        ("recorded_at", "TIMESTAMP"),  # the event's `at`: when its writer recorded the fact (`at` is an SQL keyword)
        ("attempt", "INTEGER"),
        ("executor", "VARCHAR"),
        ("duration", "DOUBLE"),
        ("error", "VARCHAR"),  # error, reason or decode error
        ("msg_id", "VARCHAR"),  # the Nats-Msg-Id header
        ("stored_at", "TIMESTAMP"),  # when JetStream stored it
        ("data", "JSON"),  # the whole event as published
    ],
    "messages": [
        ("seq", "BIGINT"),  # CHAT stream sequence
        ("chat_id", "BIGINT"),
        ("message_id", "BIGINT"),
        ("sender_id", "BIGINT"),
        ("sender", "VARCHAR"),
        ("text", "VARCHAR"),
        ("reply_to", "BIGINT"),
        ("chat_kind", "VARCHAR"),
        ("mentioned", "BOOLEAN"),
        ("caught_up", "BOOLEAN"),
        ("sent_at", "TIMESTAMP"),
        ("received_at", "TIMESTAMP"),  # the message's `at`: when ingest accepted it
        ("stored_at", "TIMESTAMP"),
        ("data", "JSON"),
    ],
    "dead_letters": [
        ("seq", "BIGINT"),  # DLQ stream sequence
        ("subject", "VARCHAR"),  # dlq.<origin>
        ("origin", "VARCHAR"),  # promise | chat | command | work
        ("reason", "VARCHAR"),  # Valor-Reason
        ("origin_subject", "VARCHAR"),  # Valor-Origin-Subject
        ("origin_stream", "VARCHAR"),  # Valor-Origin-Stream
        ("origin_seq", "BIGINT"),  # Valor-Origin-Seq
        ("stored_at", "TIMESTAMP"),
        ("size", "INTEGER"),
        ("payload", "VARCHAR"),  # the parked bytes as text (not always JSON)
    ],
    "promises": [
        ("id", "BIGINT"),
        ("type", "VARCHAR"),  # the task type: echo, sleep, respond, code, ...
        ("title", "VARCHAR"),
        ("state", "VARCHAR"),  # as `valor list` shows it
        ("attempts", "INTEGER"),
        ("priority", "INTEGER"),
        ("queue", "VARCHAR"),
        ("concurrency_key", "VARCHAR"),
        ("chat_id", "BIGINT"),
        ("message_id", "BIGINT"),
        ("parent_id", "BIGINT"),
        ("depends_on", "BIGINT[]"),
        ("retry_of", "BIGINT"),
        ("executor", "VARCHAR"),  # of the last attempt
        ("created_at", "TIMESTAMP"),
        ("dispatched_at", "TIMESTAMP"),  # first dispatch
        ("started_at", "TIMESTAMP"),  # first start
        ("finished_at", "TIMESTAMP"),
        ("duration", "DOUBLE"),  # finished_at - started_at (all attempts and backoffs)
        ("turnaround", "DOUBLE"),  # finished_at - created_at
        ("error", "VARCHAR"),  # last error or the terminal reason
        ("cancelled_by", "VARCHAR"),
        ("input", "JSON"),
        ("result", "JSON"),
        ("last_seq", "BIGINT"),  # the last PROMISES sequence folded into this row
    ],
    "attempts": [
        ("promise_id", "BIGINT"),
        ("attempt", "INTEGER"),
        ("type", "VARCHAR"),  # the promise's task type
        ("queue", "VARCHAR"),
        ("executor", "VARCHAR"),
        ("deliveries", "INTEGER"),  # > 1 when another executor resumed it
        ("dispatched_at", "TIMESTAMP"),
        ("started_at", "TIMESTAMP"),
        ("finished_at", "TIMESTAMP"),
        ("outcome", "VARCHAR"),  # succeeded | failed | cancelled | running | dispatched
        ("error", "VARCHAR"),
        ("retryable", "BOOLEAN"),
        ("duration", "DOUBLE"),  # the executor's measure, else finished_at - started_at
    ],
}

# Which stream feeds which table.
STREAM_TABLES = {"PROMISES": "events", "CHAT": "messages", "DLQ": "dead_letters"}

BOOKKEEPING = [
    "CREATE TABLE IF NOT EXISTS meta (key VARCHAR, value VARCHAR)",
    # Per stream: the last stream sequence copied (idempotent by position).
    "CREATE TABLE IF NOT EXISTS sync_state (stream VARCHAR, last_seq BIGINT, rows BIGINT, synced_at TIMESTAMP)",
]

VIEWS = {
    "v_type_daily": """
        SELECT CAST(finished_at AS DATE) AS day, type,
               count(*) AS finished,
               count_if(state = 'succeeded') AS succeeded,
               count_if(state = 'failed') AS failed,
               count_if(state = 'cancelled') AS cancelled,
               round(count_if(state = 'failed') / nullif(count_if(state IN ('succeeded', 'failed')), 0), 4)
                   AS failure_rate,
               round(quantile_cont(duration, 0.5) FILTER (WHERE state = 'succeeded'), 3) AS p50_seconds,
               round(quantile_cont(duration, 0.95) FILTER (WHERE state = 'succeeded'), 3) AS p95_seconds,
               round(count(*) / 24.0, 3) AS per_hour
        FROM promises WHERE finished_at IS NOT NULL
        GROUP BY ALL ORDER BY day, type""",
    "v_type_summary": """
        SELECT type,
               count(*) AS promises,
               count_if(state NOT IN ('succeeded', 'failed', 'cancelled')) AS open,
               count_if(state = 'succeeded') AS succeeded,
               count_if(state = 'failed') AS failed,
               count_if(state = 'cancelled') AS cancelled,
               round(count_if(state = 'failed') / nullif(count_if(state IN ('succeeded', 'failed')), 0), 4)
                   AS failure_rate,
               sum(greatest(attempts - 1, 0)) AS retries,
               round(avg(duration) FILTER (WHERE state = 'succeeded'), 3) AS avg_seconds,
               round(quantile_cont(duration, 0.5) FILTER (WHERE state = 'succeeded'), 3) AS p50_seconds,
               round(quantile_cont(duration, 0.95) FILTER (WHERE state = 'succeeded'), 3) AS p95_seconds,
               round(max(duration) FILTER (WHERE state = 'succeeded'), 3) AS max_seconds
        FROM promises GROUP BY type ORDER BY type""",
    "v_attempt_daily": """
        SELECT CAST(finished_at AS DATE) AS day, type,
               count(*) AS attempts,
               count_if(outcome = 'succeeded') AS succeeded,
               count_if(outcome = 'failed') AS failed,
               round(count_if(outcome = 'failed') / count(*), 4) AS failure_rate,
               round(quantile_cont(duration, 0.5), 3) AS p50_seconds,
               round(quantile_cont(duration, 0.95), 3) AS p95_seconds
        FROM attempts WHERE finished_at IS NOT NULL
        GROUP BY ALL ORDER BY day, type""",
    "v_daily": """
        SELECT day,
               sum(created) AS created, sum(finished) AS finished, sum(succeeded) AS succeeded,
               sum(failed) AS failed, sum(cancelled) AS cancelled
        FROM (
            SELECT CAST(created_at AS DATE) AS day, 1 AS created, 0 AS finished, 0 AS succeeded,
                   0 AS failed, 0 AS cancelled FROM promises
            UNION ALL
            SELECT CAST(finished_at AS DATE), 0, 1, CAST(state = 'succeeded' AS INTEGER),
                   CAST(state = 'failed' AS INTEGER), CAST(state = 'cancelled' AS INTEGER)
            FROM promises WHERE finished_at IS NOT NULL
        ) GROUP BY day ORDER BY day""",
    # One row per attempt that recorded its spend (a cost or tokens) on its end event (decision 47).  The user is the sender
    # of the message its respond promise answered; the plan is that respond promise.
    "v_spend": """
        SELECT e.promise_id, e.attempt, e.type AS outcome, e.recorded_at,
               CAST(e.recorded_at AS DATE) AS day, p.type, p.chat_id,
               r.id AS plan_id, TRY_CAST(json_extract_string(r.input, '$.sender_id') AS BIGINT) AS user_id,
               coalesce(TRY_CAST(json_extract_string(e.data, '$.evidence.cost_usd') AS DOUBLE), 0) AS cost_usd,
               coalesce(TRY_CAST(json_extract_string(e.data, '$.evidence.cost_estimated') AS BOOLEAN), false)
                   AS estimated,
               coalesce(TRY_CAST(json_extract_string(e.data, '$.evidence.tokens.input') AS BIGINT), 0) AS input_tokens,
               coalesce(TRY_CAST(json_extract_string(e.data, '$.evidence.tokens.output') AS BIGINT), 0)
                   AS output_tokens,
               coalesce(TRY_CAST(json_extract_string(e.data, '$.evidence.tokens.cache_read') AS BIGINT), 0)
                   AS cache_read_tokens,
               coalesce(TRY_CAST(json_extract_string(e.data, '$.evidence.tokens.cache_creation') AS BIGINT), 0)
                   AS cache_creation_tokens
        FROM events e
        JOIN promises p ON p.id = e.promise_id
        LEFT JOIN promises r ON r.type = 'respond' AND r.id = (CASE WHEN p.type = 'respond' THEN p.id ELSE p.parent_id END)
        WHERE e.type IN ('succeeded', 'attempt_failed', 'attempt_stopped')
          AND (json_extract(e.data, '$.evidence.cost_usd') IS NOT NULL
               OR json_extract(e.data, '$.evidence.tokens') IS NOT NULL)
        -- An attempt ends once: a later end event of the same attempt (a stop stored again past JetStream's
        -- duplicate window) is one the projection ignores, so it is not counted twice here either.
        QUALIFY row_number() OVER (PARTITION BY e.promise_id, e.attempt ORDER BY e.seq) = 1""",
    "v_spend_daily": """
        SELECT day, type, count(*) AS attempts, round(sum(cost_usd), 6) AS cost_usd,
               sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens,
               sum(cache_read_tokens) AS cache_read_tokens, sum(cache_creation_tokens) AS cache_creation_tokens
        FROM v_spend GROUP BY ALL ORDER BY day, type""",
}


def ddl() -> list[str]:
    tables = [
        f"CREATE TABLE IF NOT EXISTS {name} ({', '.join(f'{c} {t}' for c, t in cols)})"
        for name, cols in COLUMNS.items()
    ]
    views = [f"CREATE OR REPLACE VIEW {name} AS {sql.strip()}" for name, sql in VIEWS.items()]
    return BOOKKEEPING + tables + views


ALL_TABLES = ["meta", "sync_state", *COLUMNS]
