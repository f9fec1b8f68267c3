"""Metrics and traces on the local stack: after a scripted mix of writes, proofs, seals and a
webhook, `GET /metrics` shows the named metrics, and one trace id follows a write into its
async step (risk_score, through the Pub/Sub message attributes) and into its webhook delivery
(through the task queue)."""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests

NAMED = [
    "ledger_events_written_total",
    "ledger_write_latency_seconds",
    "ledger_proofs_generated_total",
    "api_requests_total",
    "api_latency_seconds",
]


def test_metrics_and_one_trace_through_the_chain(
    followed_stack: Any, caplog: pytest.LogCaptureFixture
) -> None:
    from proveniq.app.runtime import runtime

    caplog.set_level(logging.INFO)
    key = followed_stack.keys["acme:MEMBER"]
    h = {"Authorization": f"Bearer {key}"}
    base = followed_stack.base
    received: list[bytes] = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    receiver = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    admin, _ = runtime().accounts.create_key(
        partner_id=followed_stack.partners["acme"], org_role="ADMIN"
    )
    sub = requests.post(
        base + "/v1/webhooks",
        json={"url": f"http://127.0.0.1:{receiver.server_port}/hook", "events": ["claim.*"]},
        headers={"Authorization": f"Bearer {admin.secret}"},
        timeout=10,
    )
    assert sub.status_code == 201, sub.text
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    r = requests.post(
        base + "/v1/events",
        json={"type": "claim.created", "subject": "clm_obs", "payload": {"amount_cents": 10}},
        headers={**h, "traceparent": traceparent},
        timeout=10,
    )
    assert r.status_code == 201
    event_id = r.json()["data"]["id"]
    for _ in range(3):
        requests.post(
            base + "/v1/events",
            json={"type": "claim.note", "subject": "clm_obs"},
            headers=h,
            timeout=10,
        )
    proof = requests.get(base + f"/v1/events/{event_id}/proof?wait=10", headers=h, timeout=30)
    assert proof.status_code == 200
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if requests.get(base + "/v1/risk/clm_obs/score", headers=h, timeout=10).status_code == 200:
            break
        time.sleep(0.2)
    while time.monotonic() < deadline and not any(event_id.encode() in b for b in received):
        time.sleep(0.2)
    receiver.shutdown()
    assert any(event_id.encode() in b for b in received), "the webhook was not delivered"
    text = requests.get(base + "/metrics", timeout=10).text
    for name in NAMED:
        assert name in text, name
    written = re.search(
        r'ledger_events_written_total\{event_type="claim.created",partner_id="([^"]+)"\} ([0-9.]+)',
        text,
    )
    assert written and float(written.group(2)) >= 1
    assert 'api_requests_total{method="POST",path="/v1/events",status="201"}' in text
    assert "/v1/events/{event_id}/proof" in text and event_id not in text  # templates, never ids
    assert re.search(r'ledger_proofs_generated_total\{proof_type="inclusion"\} [1-9]', text)
    assert "webhook_deliveries_total" in text

    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    traced = [
        rec
        for rec in caplog.records
        if trace_id in str(getattr(rec, "logging.googleapis.com/trace", ""))
    ]
    messages = [rec.getMessage() for rec in traced]
    assert any(m.startswith("ledger-events:") for m in messages), messages  # the async step
    assert any(m.startswith("webhook attempt") for m in messages), messages  # its delivery
    line = json.loads(_formatted(traced[0]))
    assert line["logging.googleapis.com/trace"].endswith(f"/traces/{trace_id}")
    assert line["logging.googleapis.com/spanId"]


def _formatted(record: logging.LogRecord) -> str:
    from proveniq.app.logs import CloudLoggingFormatter

    return CloudLoggingFormatter().format(record)
