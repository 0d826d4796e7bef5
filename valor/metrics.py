"""Prometheus metrics and a health check, one HTTP port per process.

Names follow Prometheus conventions (``valor_<what>_total`` for counters,
``_seconds`` for durations).  The port comes from ``VALOR_METRICS_PORT``
(unset or 0: no server, as in tests); ``/metrics`` serves the registry and
``/healthz`` answers 200 or 503 from the service's own health function.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

# --- events and promises (scheduler) -------------------------------------------------
EVENTS_APPLIED = Counter("valor_events_applied_total", "Events folded into the projection")
EVENTS_IGNORED = Counter("valor_events_ignored_total", "Events that did not fit the state (counted, not raised)")
EVENTS_REJECTED = Counter("valor_events_rejected_total", "Undecodable messages dead-lettered", ["stream"])
PROMISES = Gauge("valor_promises", "Promises by state", ["state"])
DISPATCHED = Counter("valor_dispatched_total", "Attempts handed to executors", ["queue", "type"])
DISPATCH_LATENCY = Histogram("valor_dispatch_latency_seconds", "From ready to dispatched", ["queue"],
                             buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
RETRIES = Counter("valor_retries_total", "Retries scheduled", ["type"])
QUEUE_READY = Gauge("valor_queue_ready", "Promises ready and waiting for capacity", ["queue"])
QUEUE_IN_FLIGHT = Gauge("valor_queue_in_flight", "Attempts dispatched or running", ["queue"])
CONSUMER_PENDING = Gauge("valor_consumer_pending", "Messages not yet delivered to a consumer (lag)",
                         ["stream", "consumer"])
CONSUMER_ACK_PENDING = Gauge("valor_consumer_ack_pending", "Delivered, not yet acknowledged", ["stream", "consumer"])
LEADER = Gauge("valor_scheduler_leader", "1 while this scheduler holds the lease")
SNAPSHOT_BYTES = Gauge("valor_snapshot_bytes", "Size of the last projection snapshot stored or loaded")
SNAPSHOT_SEQ = Gauge("valor_snapshot_seq", "PROMISES sequence of the last projection snapshot stored or loaded")
SNAPSHOT_SECONDS = Gauge("valor_snapshot_seconds", "Time the last snapshot took", ["step"])  # encode | compress | store | load

# --- attempts (executor) --------------------------------------------------------------
ATTEMPTS = Counter("valor_attempts_total", "Attempts finished", ["type", "outcome"])
ATTEMPT_SECONDS = Histogram("valor_attempt_duration_seconds", "Attempt run time", ["type"],
                            buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 1800))
# Spend as recorded on attempts' end events (the log is the truth; this is for dashboards and alerts).
SPEND_USD = Counter("valor_spend_usd_total", "USD spent by attempts, by task type", ["type"])
SPEND_TOKENS = Counter("valor_spend_tokens_total", "Model tokens used by attempts", ["type", "kind"])
BUSY_SLOTS = Gauge("valor_executor_busy_slots", "Attempts running in this executor")
SLOTS = Gauge("valor_executor_slots", "Attempts this executor may run at once")


# --- chat (ingest and notifier) ---------------------------------------------------------
INGESTED = Counter("valor_ingest_messages_total", "Messages stored on CHAT", ["source"])  # live | caught_up
INGEST_FLOOD_WAITS = Counter("valor_ingest_flood_waits_total", "Telegram flood waits waited out by ingest")
INGEST_HELD = Gauge("valor_ingest_held_messages", "Chat messages waiting to be stored: the cluster has no quorum")
NOTICES_SENT = Counter("valor_notifier_sends_total", "Chat messages sent by the notifier", ["kind"])
NOTICES_RECONCILED = Counter("valor_notifier_reconciled_total", "Intended notices found already sent after a restart")
NOTICES_REFUSED = Counter("valor_notifier_refused_total", "Notices not sent because their chat cannot be reached")
NOTIFIER_FLOOD_WAITS = Counter("valor_notifier_flood_waits_total", "Telegram flood waits waited out by the notifier")


def serve(health: Callable[[], dict], port: int | None = None) -> ThreadingHTTPServer | None:
    """Start the metrics/health server in a daemon thread; None when no port is configured."""
    port = int(os.environ.get("VALOR_METRICS_PORT", "0")) if port is None else port
    if not port:
        return None

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server API
            if self.path.startswith("/metrics"):
                body, status, kind = generate_latest(), 200, CONTENT_TYPE_LATEST
            elif self.path.startswith("/healthz"):
                try:
                    report = health()
                except Exception as exc:  # a health function must never take the server down
                    report = {"ok": False, "error": str(exc)}
                body, status, kind = json.dumps(report).encode(), 200 if report.get("ok") else 503, "application/json"
            else:
                body, status, kind = b"not found\n", 404, "text/plain"
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:  # keep scrapes out of the logs
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server


def count_spend(task: str, evidence) -> None:
    """Add one attempt's recorded spend (an ``Evidence``, or None) to the spend counters."""
    if evidence is None:
        return
    if evidence.cost_usd:
        SPEND_USD.labels(task).inc(evidence.cost_usd)
    if evidence.tokens is not None:
        for kind in ("input", "output", "cache_read", "cache_creation"):
            if n := getattr(evidence.tokens, kind):
                SPEND_TOKENS.labels(task, kind).inc(n)
