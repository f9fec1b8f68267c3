"""One entry point per function: what `functions/<name>/main.py` calls.

Trigger semantics (Pub/Sub through Eventarc): returning acknowledges the message; raising
makes the platform redeliver it. So only transient failures (`errors.Unavailable`) raise; a
permanently bad message is logged (and, for devices, dead-lettered) and acknowledged.
"""

from __future__ import annotations

import itertools
import logging
import threading
from typing import Any

from flask import Request, Response
from opentelemetry.trace import SpanKind

from proveniq.app import tracing
from proveniq.app.metrics import metrics
from proveniq.app.runtime import Runtime, runtime
from proveniq.edge.cloudevents import CloudEventLike, pubsub_delivery_from_cloud_event
from proveniq.edge.http import error_response, serve
from proveniq.errors import ProveniqError, Unavailable, ValidationError
from proveniq.followers.projection.documents import change_for
from proveniq.followers.webhooks.ports import AttemptTask
from proveniq.followers.webhooks.signing import LedgerEvent
from proveniq.intake.devices.ingest import Delivery
from proveniq.intake.devices.message import Rejected
from proveniq.ledger.outbox import decode_message
from proveniq.ports import Message

log = logging.getLogger("proveniq.entrypoints")


def http(function: str, request: Request) -> Response:
    """Serve one HTTP request for `function` through the route map, in a server span, counted
    by route template."""
    rt = runtime()
    routes, max_body = rt.routes(function), rt.settings.max_body_bytes
    try:
        if not rt.settings.telemetry:
            return serve(request, routes, rt.gate, max_body=max_body)
        with tracing.consumer_span(
            f"{function} {request.method}", request.headers, kind=SpanKind.SERVER
        ):
            return serve(request, routes, rt.gate, max_body=max_body, observe=_observe)
    finally:
        # functions-framework's after_request calls request.get_data(): without this it would
        # read (and buffer) the rest of any body - unbounded, even after a 413 or a 401.
        request._cached_data = b""


def _observe(method: str, route: str | None, status: int, seconds: float) -> None:
    metrics().request(method=method, route=route, status=status, seconds=seconds)


_runs = itertools.count(1)
_newest_run = 0
SEALING_STOPPED = threading.Event()  # set on shutdown: a looping run ends at its next wait


def batch_merkle() -> int:
    """A scheduler tick: sweep the outbox, integrate and publish until caught up, then keep
    sealing every `seal_interval_ms` for `seal_run_seconds` (continuous sealing from a
    once-a-minute scheduler), until a newer run of this process takes over or shutdown."""
    global _newest_run
    rt = runtime()
    s = rt.settings
    run = _newest_run = next(_runs)

    def wait(seconds: float) -> bool:
        return not SEALING_STOPPED.wait(seconds) and _newest_run == run

    def after_round(integrated: int) -> None:
        metrics().seal_tick(lag_seconds=0.0)  # caught up (a failure raises before this)

    with tracing.consumer_span("batch_merkle tick", {}):
        integrated = rt.integrator.run_continuously(
            rt.relay,
            interval=s.seal_interval_ms / 1000,
            seconds=s.seal_run_seconds,
            wait=wait,
            after_round=after_round,
        )
        metrics().set_outbox_backlog(rt.ledger.backlog())
    return integrated


def risk_score(event: CloudEventLike) -> dict[str, Any]:
    """The `ledger-events` follower: score the event (appending `risk.scored`), fan it out to
    the matching webhook subscriptions (Cloud Tasks), and project it into Firestore. Each step
    is idempotent, so a redelivery after a transient failure repeats none of them twice."""
    rt = runtime()
    try:
        delivery = pubsub_delivery_from_cloud_event(event)
        entry, payload = decode_message(delivery.message.data)
    except ValidationError as e:
        log.error("ledger-events: malformed message acknowledged: %s", e.message)
        return {"status": "malformed"}
    with tracing.consumer_span("ledger-events risk_score", delivery.message.attributes):
        return _follow(rt, entry, payload)


def _follow(rt: Runtime, entry: Any, payload: Any) -> dict[str, Any]:
    outcome = rt.risk.handle(entry, payload)
    deliveries = rt.webhooks.dispatcher.fan_out(LedgerEvent(entry=entry, payload=payload))
    sink = rt.projection
    if sink is not None:
        sink.apply(change_for(entry, payload))
    log.info(
        "ledger-events: %s handled",
        entry.id,
        extra={"risk": outcome.status, "webhook_deliveries": len(deliveries), "seq": entry.seq},
    )
    return {"risk": outcome.status, "deliveries": len(deliveries)}


def webhook_dispatch(request: Request) -> Response:
    """One Cloud Tasks attempt: send the delivery, record it, schedule the next or dead-letter.
    200 for every handled task (a failed send is recorded and rescheduled by us, not retried by
    Cloud Tasks); 400 for a malformed task; 503 (Cloud Tasks retries) when the database is away.

    In production the platform checks the OIDC token Cloud Tasks signs as the invoker service
    account: only that account holds run.invoker on this function."""
    rt = runtime()
    try:
        task = AttemptTask.from_json(request.get_data(cache=False)[: 64 * 1024])
        with tracing.consumer_span("webhook_dispatch attempt", dict(request.headers)):
            report = rt.webhooks.dispatcher.attempt(task)
            if report.attempt is not None:
                metrics().webhook_delivery(_delivery_outcome(report))
                log.info(
                    "webhook attempt %s: %s",
                    task.name,
                    report.attempt.outcome,
                    extra={"event_id": report.delivery.event_id if report.delivery else None},
                )
    except ProveniqError as e:
        if e.transient:
            log.warning("webhook attempt deferred: %s", e.message)
        return error_response(e)
    return Response(
        f'{{"success":true,"data":{{"result":"{report.result}"}}}}',
        status=200,
        content_type="application/json",
    )


def device_ingest(event: CloudEventLike) -> dict[str, Any]:
    """One `device-telemetry` message: verify the device's signature and counter, sequence the
    reading (grouped with concurrent deliveries under one lock), or dead-letter it."""
    rt = runtime()
    try:
        d = pubsub_delivery_from_cloud_event(event)
    except ValidationError as e:
        _dead_letter_event(rt, event, e)
        return {"status": "rejected", "reason": "bad_event"}
    with tracing.consumer_span("device-telemetry device_ingest", d.message.attributes):
        outcome = rt.devices.grouped.submit(
            Delivery.of(message=d.message, message_id=d.message_id, publish_time=d.publish_time)
        )
    if isinstance(outcome, Rejected):
        metrics().device_message_rejected(outcome.reason)
        return {"status": "rejected", "reason": outcome.reason}
    return {"status": type(outcome).__name__.lower()}


def _delivery_outcome(report: Any) -> str:
    state = report.delivery.state if report.delivery is not None else ""
    if state == "dead":
        return "dead_letter"
    return "delivered" if state == "delivered" else "failed"


def _dead_letter_event(rt: Runtime, event: CloudEventLike, error: ValidationError) -> None:
    """A CloudEvent that is not a Pub/Sub message at all: keep what it carried, then ack."""
    try:
        raw = repr(event.get_data()).encode()[: 16 * 1024]
    except Exception:
        raw = b""
    try:
        rt.bus.send(
            rt.settings.device_dead_letter_topic,
            [Message(data=raw, attributes={"reason": "bad_event", "device": ""})],
        )
    except Unavailable:
        raise  # redeliver: nothing may be dropped silently
    log.error("device-telemetry: malformed CloudEvent dead-lettered: %s", error.message)
