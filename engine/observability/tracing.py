"""OpenTelemetry traces of the runtime (the API only: without an SDK every span is a no-op).

``configure_tracing()`` installs the SDK with an OTLP exporter when ``opentelemetry-sdk``
and ``opentelemetry-exporter-otlp`` are installed (``pip install 'kafka-workflows[otel]'``)
and ``OTEL_TRACES_EXPORTER`` or ``OTEL_EXPORTER_OTLP_ENDPOINT`` asks for it; the SDK reads
the rest of the standard ``OTEL_*`` variables (service name, sampler, endpoint) itself.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

try:
    from opentelemetry import trace
    from opentelemetry.trace import SpanKind, Status, StatusCode
except ImportError:  # the API is a dependency; a broken install only loses the traces
    trace = None  # type: ignore[assignment]

log = logging.getLogger("engine.observability.tracing")
TRACER_NAME = "kafka-workflows"


def _tracer() -> Any:
    return None if trace is None else trace.get_tracer(TRACER_NAME)


@contextmanager
def activity_span(task: Any) -> Iterator[Any]:
    """A span around one attempt of an activity task (an ``ActivityTask``)."""
    tracer = _tracer()
    if tracer is None:
        yield None
        return
    attributes = {"kwf.instance_id": task.instance_id, "kwf.workflow": task.workflow_name,
                  "kwf.activity": task.name, "kwf.task_id": task.task_id}
    with tracer.start_as_current_span(f"activity {task.name}", kind=SpanKind.CONSUMER,
                                      attributes=attributes) as span:
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
    """The current span's trace ID as 32 hex digits, or None outside a recorded trace."""
    if trace is None:
        return None
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None


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
    provider = TracerProvider(resource=Resource.create({"service.name": os.environ.get(
        "OTEL_SERVICE_NAME", "kafka-workflows")}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    return True
