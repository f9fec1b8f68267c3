"""Tracing: W3C context through Pub/Sub attributes and HTTP headers keeps the trace id, and
log lines carry Cloud Logging's fields for the current span."""

from __future__ import annotations

import json
import logging

import pytest
from opentelemetry import trace
from opentelemetry.trace import SpanKind

from proveniq.app import tracing
from proveniq.app.logs import CloudLoggingFormatter

PROJECT = "demo-proj"


@pytest.fixture
def t() -> tracing.Tracing:
    return tracing.setup(service="test", exporter="memory", install=False)


def test_attributes_round_trip_keeps_the_trace(t: tracing.Tracing) -> None:
    tracer = t.tracer()
    with (
        tracer.start_as_current_span("write") as write,
        tracing.producer_span("publish", tracer_=tracer),
    ):
        attrs = tracing.inject_attributes({"event_id": "evt_1"})
    assert attrs["event_id"] == "evt_1"
    assert attrs["traceparent"].split("-")[1] == f"{write.get_span_context().trace_id:032x}"
    assert all(isinstance(v, str) for v in attrs.values())
    with tracing.consumer_span("project", attrs, tracer_=tracer) as step:
        assert step.get_span_context().trace_id == write.get_span_context().trace_id
        assert step.get_span_context().span_id != write.get_span_context().span_id
    spans = {s.name: s for s in t.memory.get_finished_spans()} if t.memory else {}
    assert spans["project"].kind is SpanKind.CONSUMER
    assert spans["project"].parent is not None
    assert spans["project"].parent.span_id == spans["publish"].context.span_id


def test_each_span_injects_its_own_context(t: tracing.Tracing) -> None:
    """Messages of one span share its carrier; another span (or none) gets its own."""
    tracer = t.tracer()
    assert "traceparent" not in tracing.inject_attributes({})
    seen = []
    for name in ("first", "second"):
        with tracer.start_as_current_span(name) as span:
            a, b = tracing.inject_attributes({}), tracing.inject_attributes({"k": "v"})
            ctx = span.get_span_context()
            assert (
                a["traceparent"]
                == b["traceparent"]
                == (f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{ctx.trace_flags:02x}")
            )
            seen.append(a["traceparent"])
    assert seen[0] != seen[1]
    assert "traceparent" not in tracing.inject_attributes({})


def test_headers_round_trip_for_cloud_tasks(t: tracing.Tracing) -> None:
    tracer = t.tracer()
    with tracer.start_as_current_span("enqueue") as span:
        headers = tracing.inject_headers({"Content-Type": "application/json"})
    upper = {k.title(): v for k, v in headers.items()}  # headers arrive in any case
    ctx = tracing.extract_headers(upper)
    got = trace.get_current_span(ctx).get_span_context()
    assert got.trace_id == span.get_span_context().trace_id and got.is_remote


def test_cloud_trace_header_is_a_fallback() -> None:
    ctx = tracing.extract_headers(
        {"X-Cloud-Trace-Context": "4bf92f3577b34da6a3ce929d0e0e4736/123;o=1"}
    )
    sc = trace.get_current_span(ctx).get_span_context()
    assert f"{sc.trace_id:032x}" == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert sc.span_id == 123 and sc.trace_flags.sampled
    empty = tracing.extract_headers({"X-Cloud-Trace-Context": "garbage"})
    assert not trace.get_current_span(empty).get_span_context().is_valid


def test_no_context_means_a_new_root(t: tracing.Tracing) -> None:
    with tracing.consumer_span("orphan", {}, tracer_=t.tracer()) as span:
        assert span.get_span_context().is_valid
    assert t.memory and t.memory.get_finished_spans()[0].parent is None


def test_log_fields_match_the_current_span(t: tracing.Tracing) -> None:
    assert tracing.log_fields(PROJECT) == {}
    with t.tracer().start_as_current_span("req") as span:
        ctx = span.get_span_context()
        fields = tracing.log_fields(PROJECT)
        record = logging.makeLogRecord({"msg": "hello", "levelname": "INFO"})
        assert tracing.TraceLogFilter(PROJECT).filter(record)
        line = json.loads(CloudLoggingFormatter().format(record))
    assert fields == {
        "logging.googleapis.com/trace": f"projects/{PROJECT}/traces/{ctx.trace_id:032x}",
        "logging.googleapis.com/spanId": f"{ctx.span_id:016x}",
        "logging.googleapis.com/trace_sampled": True,
    }
    assert {k: line[k] for k in fields} == fields


def test_exporter_choices() -> None:
    none = tracing.setup(service="x", exporter="none", install=False)
    assert none.memory is None
    with pytest.raises(ValueError, match="unknown trace exporter"):
        tracing.setup(service="x", exporter="zipkin", install=False)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        tracing.setup(service="x", sample_ratio=2.0, install=False)
    from opentelemetry.exporter.cloud_trace import CloudTraceSpanExporter  # the gcp extra has it

    assert issubclass(CloudTraceSpanExporter, tracing.SpanExporter)
    unsampled = tracing.setup(service="x", exporter="memory", sample_ratio=0.0, install=False)
    with unsampled.tracer().start_as_current_span("s"):
        assert tracing.log_fields(PROJECT)["logging.googleapis.com/trace_sampled"] is False
