"""Traces: OpenTelemetry spans, W3C trace context across Pub/Sub and Cloud Tasks, and the
Cloud Logging fields that tie each log line to its span.

    setup(service=..., exporter="none" | "memory" | "console" | "cloud-trace")
    inject_attributes(attrs) / extract_attributes(attrs)   Pub/Sub message attributes
    inject_headers(headers) / extract_headers(headers)     HTTP: Cloud Tasks, webhooks, requests
    consumer_span(name, carrier) / producer_span(name)     spans of an async step
    log_fields(project) / TraceLogFilter(project)          logging.googleapis.com/trace, spanId

The carrier is the W3C `traceparent` (and `tracestate`) pair, which fits Pub/Sub attributes and
HTTP headers as is. An incoming request without one may carry Google's
`X-Cloud-Trace-Context: TRACE/SPAN;o=1` (API Gateway, Cloud Run), which `extract_headers` also
reads. Production exports with `opentelemetry-exporter-gcp-trace` (Cloud Trace); that package
is imported only when `exporter="cloud-trace"` is asked for.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.propagators.textmap import Getter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

Exporter = Literal["none", "memory", "console", "cloud-trace"]
TRACER_NAME = "proveniq"
TRACE_FIELD = "logging.googleapis.com/trace"
SPAN_FIELD = "logging.googleapis.com/spanId"
SAMPLED_FIELD = "logging.googleapis.com/trace_sampled"
CLOUD_TRACE_HEADER = "x-cloud-trace-context"
_PROPAGATOR = TraceContextTextMapPropagator()
_CLOUD_TRACE = re.compile(r"^([0-9a-fA-F]{32})/(\d{1,20})(?:;o=([01]))?$")


@dataclass(frozen=True)
class Tracing:
    provider: TracerProvider
    memory: InMemorySpanExporter | None  # the spans, when exporter="memory"

    def tracer(self) -> trace.Tracer:
        return self.provider.get_tracer(TRACER_NAME)

    def shutdown(self) -> None:
        self.provider.shutdown()


def setup(
    *,
    service: str,
    exporter: Exporter = "none",
    project: str | None = None,
    sample_ratio: float = 1.0,
    install: bool = True,
) -> Tracing:
    """A tracer provider for `service`; `install` makes it the process's global provider
    (OpenTelemetry allows that once per process)."""
    if not 0.0 <= sample_ratio <= 1.0:
        raise ValueError("sample_ratio must be between 0 and 1")
    provider = TracerProvider(
        resource=Resource.create({"service.name": service}),
        sampler=ParentBased(TraceIdRatioBased(sample_ratio)),
    )
    memory: InMemorySpanExporter | None = None
    if exporter == "memory":
        memory = InMemorySpanExporter()
        provider.add_span_processor(SimpleSpanProcessor(memory))
    elif exporter == "console":
        provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
    elif exporter == "cloud-trace":
        provider.add_span_processor(BatchSpanProcessor(_cloud_trace_exporter(project)))
    elif exporter != "none":
        raise ValueError(f"unknown trace exporter {exporter!r}")
    if install:
        trace.set_tracer_provider(provider)
    return Tracing(provider=provider, memory=memory)


def _cloud_trace_exporter(project: str | None) -> SpanExporter:
    try:
        from opentelemetry.exporter.cloud_trace import CloudTraceSpanExporter
    except ImportError as e:
        raise RuntimeError(
            "exporter 'cloud-trace' needs the package opentelemetry-exporter-gcp-trace"
        ) from e
    exporter: SpanExporter = CloudTraceSpanExporter(project_id=project)  # type: ignore[no-untyped-call]
    return exporter


def tracer() -> trace.Tracer:
    return trace.get_tracer(TRACER_NAME)


# --- propagation -------------------------------------------------------------------------------


class _CaseInsensitiveGetter(Getter[Mapping[str, str]]):
    """Reads HTTP headers from a plain dict, a werkzeug `Headers` or a WSGI-like mapping."""

    def get(self, carrier: Mapping[str, str], key: str) -> list[str] | None:
        value = carrier.get(key)
        if value is None:
            lowered = key.lower()
            for k, v in carrier.items():
                if k.lower() == lowered:
                    value = v
                    break
        return None if value is None else [value]

    def keys(self, carrier: Mapping[str, str]) -> list[str]:
        return list(carrier.keys())


_GETTER = _CaseInsensitiveGetter()


def inject_attributes(
    attributes: Mapping[str, str] | None = None, *, context: otel_context.Context | None = None
) -> dict[str, str]:
    """`attributes` plus the current (or given) trace context, for a Pub/Sub message."""
    out = dict(attributes or {})
    span = trace.get_current_span(context).get_span_context()
    global _last_injected
    last = _last_injected  # a batch's messages share one span: its carrier is built once
    if last is None or last[0] is not span:  # held here, so never a reused id
        carrier: dict[str, str] = {}
        _PROPAGATOR.inject(carrier, context=context)
        last = _last_injected = (span, carrier)
    out.update(last[1])
    return out


_last_injected: tuple[SpanContext, dict[str, str]] | None = None


def extract_attributes(attributes: Mapping[str, str]) -> otel_context.Context:
    return _PROPAGATOR.extract(attributes, getter=_GETTER)


def inject_headers(
    headers: MutableMapping[str, str] | None = None,
    *,
    context: otel_context.Context | None = None,
) -> MutableMapping[str, str]:
    """Adds `traceparent`/`tracestate` to outgoing HTTP headers (a Cloud Task's, a webhook's)."""
    out: MutableMapping[str, str] = headers if headers is not None else {}
    _PROPAGATOR.inject(out, context=context)
    return out


class _LowercaseGetter(Getter[Mapping[str, str]]):
    """Reads a carrier already keyed in lower case (`_lowered`)."""

    def get(self, carrier: Mapping[str, str], key: str) -> list[str] | None:
        value = carrier.get(key.lower())
        return None if value is None else [value]

    def keys(self, carrier: Mapping[str, str]) -> list[str]:
        return list(carrier.keys())


_LOWER = _LowercaseGetter()


class Carrier(Protocol):
    """What `_lowered` reads: a dict or a werkzeug `Headers` (no copy into a dict first)."""

    def items(self) -> Iterable[tuple[str, str]]: ...


def _lowered(headers: Carrier) -> dict[str, str]:
    """`headers` keyed in lower case, read once: what `_CaseInsensitiveGetter` finds for a
    lower-case key (the exact key if present, else the first case-insensitive match) without
    a scan of every header for each key that is absent."""
    out: dict[str, str] = {}
    exact: dict[str, str] = {}
    for k, v in headers.items():
        low = k.lower()
        out.setdefault(low, v)
        if k == low:
            exact.setdefault(low, v)
    out.update(exact)
    return out


def extract_headers(headers: Carrier) -> otel_context.Context:
    """The caller's trace context: W3C `traceparent`, else `X-Cloud-Trace-Context`."""
    lowered = _lowered(headers)
    if "traceparent" not in lowered and CLOUD_TRACE_HEADER not in lowered:
        return otel_context.Context()  # what the propagator returns for no carrier
    ctx = _PROPAGATOR.extract(lowered, getter=_LOWER)
    if trace.get_current_span(ctx).get_span_context().is_valid:
        return ctx
    found = _LOWER.get(lowered, CLOUD_TRACE_HEADER)
    m = _CLOUD_TRACE.match(found[0].strip()) if found else None
    if m is None:
        return ctx
    span_id = int(m.group(2)) & 0xFFFFFFFFFFFFFFFF
    trace_id = int(m.group(1), 16)
    if not trace_id or not span_id:
        return ctx
    parent = SpanContext(
        trace_id=trace_id,
        span_id=span_id,
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED if m.group(3) == "1" else TraceFlags.DEFAULT),
    )
    return trace.set_span_in_context(NonRecordingSpan(parent), ctx)


@contextlib.contextmanager
def consumer_span(
    name: str,
    carrier: Carrier,
    *,
    kind: SpanKind = SpanKind.CONSUMER,
    attributes: Mapping[str, Any] | None = None,
    tracer_: trace.Tracer | None = None,
) -> Iterator[trace.Span]:
    """A span for one async step (a Pub/Sub message, a Cloud Task, an HTTP request), child of
    the trace context the carrier brought; `kind=SpanKind.SERVER` for HTTP."""
    parent = extract_headers(carrier)
    with (tracer_ or tracer()).start_as_current_span(
        name, context=parent, kind=kind, attributes=dict(attributes or {})
    ) as span:
        yield span


@contextlib.contextmanager
def producer_span(
    name: str,
    *,
    attributes: Mapping[str, Any] | None = None,
    tracer_: trace.Tracer | None = None,
) -> Iterator[trace.Span]:
    """A span around a publish / enqueue; inject inside it so the consumer is its child."""
    with (tracer_ or tracer()).start_as_current_span(
        name, kind=SpanKind.PRODUCER, attributes=dict(attributes or {})
    ) as span:
        yield span


# --- logs --------------------------------------------------------------------------------------


def log_fields(project: str, span: trace.Span | None = None) -> dict[str, object]:
    """Cloud Logging's trace fields for `span` (default: the current one); {} outside a span."""
    ctx = (span or trace.get_current_span()).get_span_context()
    if not ctx.is_valid:
        return {}
    return {
        TRACE_FIELD: f"projects/{project}/traces/{ctx.trace_id:032x}",
        SPAN_FIELD: f"{ctx.span_id:016x}",
        SAMPLED_FIELD: ctx.trace_flags.sampled,
    }


class TraceLogFilter(logging.Filter):
    """Adds `log_fields` to every record (the JSON formatter copies record attributes)."""

    def __init__(self, project: str) -> None:
        super().__init__()
        self.project = project

    def filter(self, record: logging.LogRecord) -> bool:
        for k, v in log_fields(self.project).items():
            setattr(record, k, v)
        return True
