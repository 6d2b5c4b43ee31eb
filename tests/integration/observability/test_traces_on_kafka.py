"""One trace across Kafka: an orchestrator runtime and a worker runtime (two roles, separate
consumers and producers), the trace context travelling in record headers between them.

The SDK's in-memory exporter collects the spans of both runtimes (they share this process).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import engine as wf
from engine import WorkflowClient, WorkflowRuntime, WorkflowStatus
from engine.observability import tracing
from engine.state.config import Settings

# Retries of the flaky activity before it succeeds, counted per instance.
FLAKY_FAILURES = 1
_attempts: dict[str, int] = {}


def register(runtime: WorkflowRuntime) -> None:
    @runtime.activity(name="traced_flaky")
    def traced_flaky(ctx: wf.WorkflowActivityContext, value: int) -> int:
        _attempts[ctx.workflow_id] = _attempts.get(ctx.workflow_id, 0) + 1
        if _attempts[ctx.workflow_id] <= FLAKY_FAILURES:
            raise RuntimeError("flaky, try again")
        return value + 1

    @runtime.workflow(name="traced_chain")
    def traced_chain(ctx: wf.DaprWorkflowContext, value: int):
        retry = wf.RetryPolicy(first_retry_interval=timedelta(milliseconds=100), max_number_of_attempts=3)
        value = yield ctx.call_activity(traced_flaky, input=value, retry_policy=retry)
        return value


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(tracing, "_tracer", lambda: provider.get_tracer("test"))
    yield exporter
    provider.shutdown()


def test_the_callers_trace_holds_the_workflow_and_every_activity_attempt(
        settings: Settings, client: WorkflowClient, spans: InMemorySpanExporter,
        start_runtime: Callable[..., WorkflowRuntime]) -> None:
    start_runtime(register, role="orchestrator")
    worker_settings = dataclasses.replace(settings, state_dir=settings.state_dir / "worker",
                                          process_id=f"{settings.process_id}-worker")
    worker = WorkflowRuntime(settings=worker_settings, role="worker")
    register(worker)
    worker.start()
    try:
        with tracing._tracer().start_as_current_span("caller") as caller:
            traceparent = tracing.headers_of_context()[0][1].decode()
        instance_id = client.schedule_new_workflow("traced_chain", input=1, traceparent=traceparent)
        state = client.wait_for_workflow_completion(instance_id, timeout_in_seconds=60)
        assert state is not None and state.runtime_status is WorkflowStatus.COMPLETED, state
    finally:
        worker.shutdown()
    finished = spans.get_finished_spans()
    [workflow] = [s for s in finished if s.name == "workflow traced_chain"]
    attempts = sorted((s for s in finished if s.name == "activity traced_flaky"), key=lambda s: s.start_time)
    assert len(attempts) == FLAKY_FAILURES + 1
    assert {s.context.trace_id for s in (workflow, *attempts)} == {caller.get_span_context().trace_id}
    assert workflow.parent.span_id == caller.get_span_context().span_id
    assert all(a.parent.span_id == workflow.context.span_id for a in attempts)
    assert "flaky" in attempts[0].status.description
    assert workflow.attributes["kwf.status"] == "COMPLETED"
