"""Spans of a workflow, its activities, timers and children, parented across Kafka headers.

The orchestrator is driven without Kafka (``streams.testing``) and the worker's activity
wrapper is awaited directly; what would travel between them are the records' headers. The
SDK's in-memory exporter collects the spans (through a tracer of the tests' own provider,
so the process-wide provider stays untouched).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

import engine as wf
from engine.core.history import (
    ExecutionStarted,
    FailureDetails,
    HistoryEvent,
    TaskCompleted,
    TaskFailed,
    TimerCreated,
)
from engine.observability import tracing
from engine.observability.metrics import observed_activity
from engine.orchestration.orchestrator import Orchestrator
from engine.replay.registry import Registry
from engine.state.codec import ActivityTask, decode_event, decode_task
from engine.state.config import Settings
from streams.testing import HandlerHarness, Incoming, Turn

registry = Registry()


@registry.activity(name="t_step")
def t_step(ctx: wf.WorkflowActivityContext, value: int) -> int:
    return value + 1


@registry.workflow(name="t_chain")
def t_chain(ctx: wf.DaprWorkflowContext, value: int):
    value = yield ctx.call_activity(t_step, input=value)
    return value


@registry.workflow(name="t_sleeper")
def t_sleeper(ctx: wf.DaprWorkflowContext, _: object):
    yield ctx.create_timer(timedelta(seconds=5))
    return "woke"


@registry.workflow(name="t_parent")
def t_parent(ctx: wf.DaprWorkflowContext, _: object):
    result = yield ctx.call_child_workflow(t_chain, input=1, instance_id="child-1")
    return result


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(tracing, "_tracer", lambda: provider.get_tracer("test"))
    yield exporter
    provider.shutdown()


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[HandlerHarness]:
    driven = HandlerHarness(Orchestrator(Settings(topic_prefix="t", state_dir=tmp_path), registry, partitions=1),
                            tmp_path / "inbox-0", input_topic="t.inbox")
    yield driven
    driven.close()


def proposed(instance_id: str, event: object, execution_id: str = "") -> HistoryEvent:
    return HistoryEvent(instance_id, execution_id, -1, datetime.now(UTC), event)  # type: ignore[arg-type]


def history(turn: Turn) -> list[HistoryEvent]:
    return [decode_event(v) for _, v, _ in turn.changelog]


def named(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name == name]


@dataclass
class Outcome:
    failure: FailureDetails | None = None


class Worker:
    def __init__(self, outcome: Outcome) -> None:
        self.outcome = outcome

    @observed_activity
    async def run_task(self, task: ActivityTask) -> Any:
        return self.outcome


def run_attempt(task: ActivityTask, headers: Any, outcome: Outcome) -> None:
    asyncio.run(Worker(outcome).run_task(task, headers))


def test_a_request_the_workflow_and_each_activity_attempt_form_one_trace(
        harness: HandlerHarness, spans: InMemorySpanExporter) -> None:
    with tracing._tracer().start_as_current_span("POST /start") as request:
        start_headers = tracing.headers_of_context()
    started = harness.process(Incoming(proposed("i1", ExecutionStarted("t_chain", "1")), headers=start_headers))
    [task_record] = started.to("t.activities")
    task = decode_task(task_record.value)
    # A failed attempt, then a retry that succeeds: two spans, the first with the error.
    run_attempt(task, task_record.headers, Outcome(FailureDetails("ValueError", "flaky")))
    run_attempt(task, task_record.headers, Outcome())
    execution = history(started)[0].execution_id
    harness.process(Incoming(proposed("i1", TaskCompleted(0, "2"), execution), headers=task_record.headers))

    [workflow] = named(spans, "workflow t_chain")
    failed, succeeded = named(spans, "activity t_step")
    trace_id = request.get_span_context().trace_id
    assert {s.context.trace_id for s in (workflow, failed, succeeded)} == {trace_id}
    assert workflow.parent.span_id == request.get_span_context().span_id
    assert failed.parent.span_id == succeeded.parent.span_id == workflow.context.span_id
    assert failed.status.status_code is StatusCode.ERROR and "flaky" in failed.status.description
    assert succeeded.status.status_code is not StatusCode.ERROR
    assert workflow.attributes["kwf.status"] == "COMPLETED"
    assert workflow.attributes["kwf.instance_id"] == "i1"


def test_a_failed_workflow_carries_its_error(harness: HandlerHarness, spans: InMemorySpanExporter) -> None:
    started = harness.process(proposed("i2", ExecutionStarted("t_chain", "1")))
    execution = history(started)[0].execution_id
    harness.process(proposed("i2", TaskFailed(0, FailureDetails("ValueError", "bad input")), execution))
    [workflow] = named(spans, "workflow t_chain")
    assert workflow.parent is None  # no caller's context: a trace of its own
    assert workflow.status.status_code is StatusCode.ERROR
    assert workflow.attributes["kwf.status"] == "FAILED"


def test_a_timer_is_a_span_until_its_due_time(harness: HandlerHarness, spans: InMemorySpanExporter) -> None:
    turn = harness.process(proposed("s1", ExecutionStarted("t_sleeper", "null")))
    [created] = [e for e in history(turn) if isinstance(e.event, TimerCreated)]
    [timer] = named(spans, "timer")
    assert timer.end_time - timer.start_time == pytest.approx(5e9, rel=0.01)
    assert timer.attributes["kwf.instance_id"] == "s1"
    assert timer.parent is not None  # the workflow span, still open
    assert created.event.fire_at > created.timestamp


def test_a_child_workflow_span_is_a_child_of_its_parent_workflow_span(
        harness: HandlerHarness, spans: InMemorySpanExporter) -> None:
    with tracing._tracer().start_as_current_span("caller"):
        caller = tracing.headers_of_context()
    parent_turn = harness.process(Incoming(proposed("p1", ExecutionStarted("t_parent", "null")), headers=caller))
    [child_start] = parent_turn.to("t.inbox")
    child_turn = harness.process(Incoming(decode_event(child_start.value), headers=child_start.headers))
    child_execution = history(child_turn)[0].execution_id
    ended = harness.process(proposed("child-1", TaskCompleted(0, "2"), child_execution))
    [child_done] = ended.to("t.inbox")  # the child's result, on its way to the parent
    harness.process(Incoming(decode_event(child_done.value), headers=child_done.headers))
    [child_span] = named(spans, "workflow t_chain")
    [parent_span] = named(spans, "workflow t_parent")
    assert child_span.parent.span_id == parent_span.context.span_id
    assert child_span.context.trace_id == parent_span.context.trace_id
