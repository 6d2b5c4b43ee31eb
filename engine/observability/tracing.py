"""OpenTelemetry traces of the runtime, carried across processes in Kafka record headers.

The API only is a dependency: without an SDK every span is a no-op costing a function
call. ``configure_tracing()`` installs the SDK with an OTLP exporter when the
``otel`` extra is installed and ``OTEL_TRACES_EXPORTER`` or ``OTEL_EXPORTER_OTLP_ENDPOINT``
asks for it; the SDK reads the other ``OTEL_*`` variables (sampler, endpoint) itself.

How one trace spans the processes (W3C ``traceparent`` headers on every hop):

* a start carries the caller's context: the current span of ``schedule_new_workflow``, a
  ``traceparent`` passed to it, or the HTTP start request's ``traceparent`` header;
* the orchestrator opens a ``workflow NAME`` span under it when it takes the start, and
  ends it when the instance ends (continue-as-new included); activity tasks and child
  starts it emits carry that span's context, so a child's workflow span is its child;
* the worker runs each attempt in an ``activity NAME`` span under the task's context (a
  retry is a new attempt, a failure carries the error), and copies the task's headers onto
  the result, so an orchestrator that restarted meanwhile learns the context again;
* a timer is a ``timer`` span from its creation to its due time.

The open workflow spans live in the orchestrator's memory (bounded, least recently used
dropped first): a workflow span open when its process stops is never exported, though its
activities still name it as their parent.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

try:
    from opentelemetry import context as otel_context
    from opentelemetry import trace
    from opentelemetry.trace import SpanKind, Status, StatusCode
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
except ImportError:  # the API is a dependency; a broken install only loses the traces
    trace = None  # type: ignore[assignment]

from engine.core.history import (
    ExecutionStarted,
    HistoryEvent,
    TaskCompleted,
    TaskFailed,
    TimerCreated,
    WorkflowStatus,
)

log = logging.getLogger("engine.observability.tracing")
TRACER_NAME = "kafka-workflows"
TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
# Open workflow spans kept per orchestrator process; past it the least recently used is
# dropped (never exported). Ten thousand open spans are a few MiB.
MAX_OPEN_WORKFLOW_SPANS = 10_000

_propagator = TraceContextTextMapPropagator() if trace is not None else None


# (provider, its tracer): ``get_tracer`` builds a new tracer on each call, a cost per span.
_cached_tracer: tuple[Any, Any] = (None, None)


def _tracer() -> Any:
    """The runtime's tracer, or None while no SDK provider is installed (every span would be a no-op)."""
    global _cached_tracer
    if trace is None:
        return None
    provider = trace.get_tracer_provider()
    if isinstance(provider, trace.ProxyTracerProvider):
        return None
    cached_provider, tracer = _cached_tracer
    if cached_provider is not provider:
        tracer = provider.get_tracer(TRACER_NAME)
        _cached_tracer = (provider, tracer)
    return tracer


# -- headers --------------------------------------------------------------------------


def headers_of_context(ctx: Any = None) -> list[tuple[str, bytes | None]] | None:
    """Kafka headers carrying ``ctx`` (default: the current context), or None when it has no span."""
    if _propagator is None:
        return None
    carrier: dict[str, str] = {}
    _propagator.inject(carrier, context=ctx)
    if TRACEPARENT not in carrier:
        return None
    return [(name, value.encode()) for name, value in carrier.items()]


def context_of_headers(headers: Any) -> Any:
    """The OTel context a record's headers carry, or None when they carry none."""
    if _propagator is None or not headers:
        return None
    carrier = {}
    for name, value in headers:
        if name in (TRACEPARENT, TRACESTATE) and value is not None:
            carrier[name] = value.decode("ascii", errors="replace") if isinstance(value, bytes) else str(value)
    if TRACEPARENT not in carrier:
        return None
    ctx = _propagator.extract(carrier)
    return ctx if trace.get_current_span(ctx).get_span_context().is_valid else None


@contextmanager
def remote_parent(traceparent: str | None) -> Iterator[None]:
    """Inside the block, the current context is the W3C ``traceparent`` given (when valid)."""
    ctx = None if not traceparent else context_of_headers([(TRACEPARENT, traceparent.encode())])
    if ctx is None:
        yield
        return
    token = otel_context.attach(ctx)
    try:
        yield
    finally:
        otel_context.detach(token)


# -- the orchestrator -------------------------------------------------------------------


class WorkflowSpans:
    """The open workflow span (or the known context) of each instance, in one orchestrator."""

    def __init__(self, limit: int = MAX_OPEN_WORKFLOW_SPANS) -> None:
        self.limit = limit
        self._spans: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()

    def received(self, event: HistoryEvent, headers: Any) -> None:
        """An inbox record: a start opens the instance's workflow span under the headers' context
        (a new trace without one); an activity result teaches the workflow span's context to an
        orchestrator that does not know it (one that restarted)."""
        start = event.event if isinstance(event.event, ExecutionStarted) else None
        if start is None and (not headers or event.instance_id in self._spans):
            return  # the common cases, checked first: nothing to learn from this record
        tracer = _tracer()
        if tracer is None:
            return
        parent = context_of_headers(headers)
        if start is not None:
            span = tracer.start_span(
                f"workflow {start.name}", context=parent, kind=SpanKind.INTERNAL,
                attributes={"kwf.instance_id": event.instance_id, "kwf.workflow": start.name})
            if span.get_span_context().is_valid:  # not a no-op span (no SDK installed)
                self._put(event.instance_id, span)
        elif parent is not None and isinstance(event.event, TaskCompleted | TaskFailed):
            # A result carries its task's headers: the workflow span's context (other records,
            # such as a raised event, carry their sender's).
            self._put(event.instance_id, trace.NonRecordingSpan(trace.get_current_span(parent).get_span_context()))

    def headers(self, instance_id: str) -> list[tuple[str, bytes | None]] | None:
        """Headers for records the instance's step emits (tasks, child starts), or None."""
        span = self._spans.get(instance_id)
        if span is None:
            return None
        return headers_of_context(trace.set_span_in_context(span))

    def history_emitted(self, events: list[HistoryEvent]) -> None:
        """Timers become spans from their creation to their due time."""
        timers = [(event, event.event) for event in events if isinstance(event.event, TimerCreated)]
        tracer = _tracer() if timers else None
        if tracer is None:
            return
        for event, created in timers:
            span = self._spans.get(event.instance_id)
            if span is None:
                continue
            timer = tracer.start_span("timer", context=trace.set_span_in_context(span),
                                      start_time=_ns(event.timestamp),
                                      attributes={"kwf.instance_id": event.instance_id,
                                                  "kwf.timer_id": created.timer_id})
            timer.end(end_time=max(_ns(created.fire_at), _ns(event.timestamp)))

    def status_emitted(self, state: Any) -> None:
        """An instance's new status: its end ends the workflow span."""
        if not state.ended:
            return
        with self._lock:
            span = self._spans.pop(state.instance_id, None)
        if span is None or not span.is_recording():
            return
        span.set_attribute("kwf.status", state.status.name)
        if state.status is WorkflowStatus.FAILED and state.failure is not None:
            span.set_status(Status(StatusCode.ERROR, f"{state.failure.type}: {state.failure.message}"))
            span.set_attribute("exception.type", state.failure.type)
            span.set_attribute("exception.message", state.failure.message)
        span.end(end_time=state.updated_ms * 1_000_000)

    def _put(self, instance_id: str, span: Any) -> None:
        with self._lock:
            self._spans[instance_id] = span
            self._spans.move_to_end(instance_id)
            while len(self._spans) > self.limit:
                self._spans.popitem(last=False)


# -- activity workers ----------------------------------------------------------------


@contextmanager
def activity_span(task: Any, headers: Any = None) -> Iterator[Any]:
    """A span around one attempt of an activity task (an ``ActivityTask``), under its record's context."""
    tracer = _tracer()
    if tracer is None:
        yield None
        return
    attributes = {"kwf.instance_id": task.instance_id, "kwf.workflow": task.workflow_name,
                  "kwf.activity": task.name, "kwf.task_id": task.task_id}
    with tracer.start_as_current_span(f"activity {task.name}", context=context_of_headers(headers),
                                      kind=SpanKind.CONSUMER, attributes=attributes) as span:
        yield span


def record_outcome(span: Any, outcome: Any) -> None:
    """Mark ``span`` failed with the error of ``outcome`` (an ``ActivityOutcome``) if it failed."""
    failure = getattr(outcome, "failure", None)
    if span is None or failure is None or trace is None:
        return
    span.set_status(Status(StatusCode.ERROR, f"{failure.type}: {failure.message}"))
    span.set_attribute("exception.type", failure.type)
    span.set_attribute("exception.message", failure.message)


def current_trace_id() -> str | None:
    """The current span's trace ID as 32 hex digits, or None outside a trace."""
    if trace is None:
        return None
    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else None


def configure_tracing() -> bool:
    """Install the OTel SDK with an OTLP exporter when the environment asks for it; True if installed."""
    wanted = os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if wanted == "none" or (not wanted and not os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")):
        return False
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        log.warning("OTEL_* asks for traces but opentelemetry-sdk and opentelemetry-exporter-otlp-proto-http "
                    "are not installed (pip install 'kafka-workflows[otel]'); no traces are exported")
        return False
    # Resource.create reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES.
    provider = TracerProvider(resource=Resource.create({"service.name": os.environ.get(
        "OTEL_SERVICE_NAME", "kafka-workflows")}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    return True


def _ns(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000_000)
