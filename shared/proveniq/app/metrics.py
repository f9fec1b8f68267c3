"""Metrics: the reference architecture's (§8.2) plus what an operator of this ledger needs.

    ledger_events_written_total{event_type,partner_id}   counter
    ledger_write_latency_seconds{event_type}             histogram (request to commit)
    ledger_proofs_generated_total{proof_type}            counter
    api_requests_total{method,path,status}               counter (path: the route template)
    api_latency_seconds{method,path}                     histogram
    ledger_checkpoint_age_seconds                        gauge (now - last published checkpoint)
    ledger_checkpoint_size                               gauge (tree size of that checkpoint)
    ledger_time_to_integrate_seconds                     histogram (recorded_at to sealed)
    ledger_seal_refused_total                            counter (inconsistent checkpoint refused)
    ledger_outbox_backlog                                gauge (committed, not yet published)
    ledger_db_connection_failures_total                  counter
    webhook_deliveries_total{outcome}                    counter (delivered, failed, retried ...)
    webhook_dead_letters_total                           counter
    device_messages_rejected_total{reason}               counter
    risk_reviews_pending                                 gauge

    ledger_seal_lag_seconds                              gauge (oldest entry still unsealed)
    ledger_replica_fallbacks_total{reason}               counter (reads the replica lacked)

One `Metrics` object owns one prometheus-client registry; `render` gives the Prometheus text
for the local stack's `GET /metrics`. In production the figures reach Cloud Monitoring two
ways (docs/OPERATIONS.md): requests and latencies from Cloud Run's built-in metrics of each
function, and the ledger's own figures from log-based metrics (terraform/monitoring.tf) over
one structured line per event that `Metrics(log_lines=True)` writes through the logger
`proveniq.metrics`: `{"message": "metric <name>", "metric": <name>, "value": <number>, ...}`
(names in `LOGGED`; never one line per request or per write). Labels carry no tenant
data beyond the partner id; label values from callers are bounded (`MAX_LABEL_VALUES` distinct
values per label, then "other") so a partner cannot blow up the series count.
"""

from __future__ import annotations

import collections
import logging
import math
import threading
import time
from collections.abc import Iterable
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

CONTENT_TYPE = CONTENT_TYPE_LATEST
MAX_LABEL_VALUES = 500
OTHER = "other"
UNMATCHED_ROUTE = "unmatched"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
INTEGRATE_BUCKETS = (0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)
# The figures written as log lines when log_lines=True (terraform/monitoring.tf reads them).
LOGGED = (
    "checkpoint_published",
    "seal_tick",
    "seal_refused",
    "time_to_integrate",
    "outbox_backlog",
    "db_connection_failure",
    "webhook_delivery",
    "webhook_dead_letter",
    "device_message_rejected",
    "risk_reviews_pending",
)
_log = logging.getLogger("proveniq.metrics")
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class _Bounded:
    """At most `limit` distinct label values; later new ones become "other"."""

    def __init__(self, limit: int = MAX_LABEL_VALUES) -> None:
        self.limit = limit
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, value: str) -> str:
        if value in self._seen:
            return value
        with self._lock:
            if len(self._seen) >= self.limit:
                return OTHER
            self._seen.add(value)
            return value


class Metrics:
    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        log_lines: bool = False,
        max_label_values: int = MAX_LABEL_VALUES,
    ) -> None:
        self.log_lines = log_lines
        r = self.registry = registry or CollectorRegistry(auto_describe=True)
        self.events_written = Counter(
            "ledger_events_written_total",
            "Events sequenced into the ledger.",
            ["event_type", "partner_id"],
            registry=r,
        )
        self.write_latency = Histogram(
            "ledger_write_latency_seconds",
            "Time from receiving a write to its commit.",
            ["event_type"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.proofs_generated = Counter(
            "ledger_proofs_generated_total",
            "Proofs served (inclusion, consistency, bundle, claim).",
            ["proof_type"],
            registry=r,
        )
        self.api_requests = Counter(
            "api_requests_total",
            "HTTP requests answered.",
            ["method", "path", "status"],
            registry=r,
        )
        self.api_latency = Histogram(
            "api_latency_seconds",
            "HTTP request latency.",
            ["method", "path"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self._checkpoint_at = math.nan
        self.checkpoint_age = Gauge(
            "ledger_checkpoint_age_seconds",
            "Seconds since the latest checkpoint was published (NaN before the first).",
            registry=r,
        )
        self.checkpoint_age.set_function(lambda: time.time() - self._checkpoint_at)
        self.checkpoint_size = Gauge(
            "ledger_checkpoint_size", "Tree size of the latest checkpoint.", registry=r
        )
        self.time_to_integrate = Histogram(
            "ledger_time_to_integrate_seconds",
            "Time from an event's recorded_at to the checkpoint that covers it.",
            buckets=INTEGRATE_BUCKETS,
            registry=r,
        )
        self.seal_refused = Counter(
            "ledger_seal_refused_total",
            "Seals refused because the new tree was inconsistent with the last checkpoint.",
            registry=r,
        )
        self.seal_lag = Gauge(
            "ledger_seal_lag_seconds",
            "Age of the oldest sequenced entry no checkpoint covers yet (0: all sealed).",
            registry=r,
        )
        self.outbox_backlog = Gauge(
            "ledger_outbox_backlog",
            "Committed events not yet published to ledger-events.",
            registry=r,
        )
        self.db_connection_failures = Counter(
            "ledger_db_connection_failures_total",
            "Failed attempts to connect to the database.",
            registry=r,
        )
        self.webhook_deliveries = Counter(
            "webhook_deliveries_total",
            "Webhook delivery attempts by outcome.",
            ["outcome"],
            registry=r,
        )
        self.webhook_dead_letters = Counter(
            "webhook_dead_letters_total",
            "Webhook deliveries given up after the last attempt.",
            registry=r,
        )
        self.device_rejected = Counter(
            "device_messages_rejected_total",
            "Device messages refused, by reason.",
            ["reason"],
            registry=r,
        )
        self.reviews_pending = Gauge(
            "risk_reviews_pending", "Risk scores waiting for a human review.", registry=r
        )
        self.replica_fallbacks = Counter(
            "ledger_replica_fallbacks_total",
            "get_proof reads answered by the primary because the read replica lacked them.",
            ["reason"],
            registry=r,
        )
        # Label children cached by the caller's values: the hot path skips labels() lookups.
        self._write_children: dict[tuple[str, str], tuple[Any, Any]] = {}
        self._request_children: dict[tuple[str, str | None, int], tuple[Any, Any]] = {}
        self._proof_children: dict[str, Any] = {}
        self._max = max_label_values
        self._event_type = _Bounded(max_label_values)
        self._partner = _Bounded(max_label_values)
        self._route = _Bounded(max_label_values)
        self._reason = _Bounded(50)
        self._outcome = _Bounded(20)
        self._proof_type = _Bounded(20)

    # --- the write path -----------------------------------------------------------------------

    def events_sequenced(
        self, event_types: Iterable[str], *, partner_id: str | None, seconds: float
    ) -> None:
        """One write (single or batch) committed after `seconds`."""
        partner = partner_id or "platform"
        counts: Iterable[tuple[str, int]] = (
            ((event_types[0], 1),)  # one event: no Counter
            if isinstance(event_types, list | tuple) and len(event_types) == 1
            else collections.Counter(event_types).items()  # a batch: one step per type
        )
        for t, n in counts:
            children = self._write_children.get((t, partner))
            if children is None:
                et = self._event_type(t)
                p = self._partner(partner)
                children = (self.events_written.labels(et, p), self.write_latency.labels(et))
                if len(self._write_children) < 4 * self._max:
                    self._write_children[(t, partner)] = children
            children[0].inc(n)
            observe = children[1].observe
            for _ in range(n):  # the histogram counts events, one observation each
                observe(seconds)

    def proof_generated(self, proof_type: str) -> None:
        child = self._proof_children.get(proof_type)
        if child is None:
            child = self.proofs_generated.labels(self._proof_type(proof_type))
            if len(self._proof_children) < 20:
                self._proof_children[proof_type] = child
        child.inc()

    # --- HTTP ---------------------------------------------------------------------------------

    def request(self, *, method: str, route: str | None, status: int, seconds: float) -> None:
        """`route` is the matched route template (`/v1/events/{id}`), never the raw path."""
        key = (method, route, status)
        children = self._request_children.get(key)
        if children is None:
            m = method.upper() if method.upper() in _METHODS else OTHER
            path = self._route(route) if route else UNMATCHED_ROUTE
            children = (
                self.api_requests.labels(m, path, str(status)),
                self.api_latency.labels(m, path),
            )
            if len(self._request_children) < 4 * self._max:
                self._request_children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    # --- seals --------------------------------------------------------------------------------

    def checkpoint_published(
        self, *, size: int, at: float | None = None, integrate_seconds: Iterable[float] = ()
    ) -> None:
        """A checkpoint of `size` was published at `at` (unix seconds, default now); pass how
        long each newly covered entry waited since its recorded_at."""
        self._checkpoint_at = time.time() if at is None else at
        self.checkpoint_size.set(size)
        slowest = 0.0
        for s in integrate_seconds:
            self.time_to_integrate.observe(s)
            slowest = max(slowest, s)
        self._line("checkpoint_published", size)
        self._line("time_to_integrate", slowest)

    def seal_tick(self, *, lag_seconds: float) -> None:
        """Each seal tick, after sealing: how long the oldest unsealed entry has waited (0 when
        the last checkpoint covers everything). The alert on it is "no checkpoint for 5 min
        while entries wait", which stays quiet on an idle ledger."""
        self.seal_lag.set(lag_seconds)
        self._line("seal_tick", lag_seconds)

    def checkpoint_refused(self) -> None:
        self.seal_refused.inc()
        self._line("seal_refused", 1)

    # --- async steps --------------------------------------------------------------------------

    def set_outbox_backlog(self, n: int) -> None:
        self.outbox_backlog.set(n)
        self._line("outbox_backlog", n)

    def db_connection_failed(self) -> None:
        self.db_connection_failures.inc()
        self._line("db_connection_failure", 1)

    def webhook_delivery(self, outcome: str) -> None:
        """One delivery attempt: "delivered", "failed" (will retry), "dead_letter" (gave up)."""
        o = self._outcome(outcome)
        self.webhook_deliveries.labels(o).inc()
        self._line("webhook_delivery", 1, outcome=o)
        if outcome == "dead_letter":
            self.webhook_dead_letters.inc()
            self._line("webhook_dead_letter", 1)

    def device_message_rejected(self, reason: str) -> None:
        r = self._reason(reason)
        self.device_rejected.labels(r).inc()
        self._line("device_message_rejected", 1, reason=r)

    def set_reviews_pending(self, n: int) -> None:
        self.reviews_pending.set(n)
        self._line("risk_reviews_pending", n)

    def replica_fallback(self, reason: str) -> None:
        self.replica_fallbacks.labels(reason=self._reason(reason)).inc()

    def _line(self, name: str, value: float, **labels: str) -> None:
        if self.log_lines:
            _log.info("metric %s", name, extra={"metric": name, "value": value, **labels})

    def render(self) -> bytes:
        return generate_latest(self.registry)


_default: Metrics | None = None
_default_lock = threading.Lock()


def metrics() -> Metrics:
    """The process's metrics (built on first use; no I/O)."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = Metrics()
    return _default


def render(m: Metrics | None = None) -> tuple[bytes, str]:
    """Prometheus text and its content type, for `GET /metrics`."""
    return (m or metrics()).render(), CONTENT_TYPE
