"""The workflow metrics the orchestrator and the worker record, read back from the registry.

The orchestrator is driven batch by batch without Kafka (``streams.testing``); the
worker's activity wrapper is awaited directly. Counters are process-wide, so each test
compares a metric before and after what it does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

import engine as wf
from engine.core.history import (
    EventRaised,
    ExecutionStalled,
    ExecutionStarted,
    FailureDetails,
    HistoryEvent,
    TaskCompleted,
    TaskFailed,
    TimerCreated,
)
from engine.observability import metrics
from engine.orchestration.orchestrator import Orchestrator
from engine.replay.registry import Registry
from engine.state.codec import ActivityTask, decode_event
from engine.state.config import Settings
from streams.testing import HandlerHarness, Turn

AT = datetime(2024, 1, 1, tzinfo=UTC)
registry = Registry()


@registry.activity(name="m_step")
def m_step(ctx: wf.WorkflowActivityContext, value: int) -> int:
    return value + 1


@registry.workflow(name="m_chain")
def m_chain(ctx: wf.DaprWorkflowContext, value: int):
    value = yield ctx.call_activity(m_step, input=value)
    return value


@registry.workflow(name="m_sleeper")
def m_sleeper(ctx: wf.DaprWorkflowContext, _: object):
    yield ctx.create_timer(timedelta(seconds=5))
    return "woke"


@registry.workflow(name="m_waiter")
def m_waiter(ctx: wf.DaprWorkflowContext, _: object):
    data = yield ctx.wait_for_external_event("go")
    return data


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


class Delta:
    """The change of chosen samples across a block."""

    def __init__(self, *samples: tuple[str, dict[str, str]]) -> None:
        self.samples = samples
        self.before = [value(n, **labels) for n, labels in samples]

    def __call__(self) -> list[float]:
        return [value(n, **labels) - b for (n, labels), b in zip(self.samples, self.before, strict=True)]


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[HandlerHarness]:
    settings = Settings(topic_prefix="t", state_dir=tmp_path)
    driven = HandlerHarness(Orchestrator(settings, registry, partitions=1), tmp_path / "inbox-0",
                            input_topic="t.inbox")
    yield driven
    driven.close()


def history(turn: Turn) -> list[HistoryEvent]:
    return [decode_event(v) for _, v, _ in turn.changelog]


def proposed(instance_id: str, event: object, execution_id: str = "") -> HistoryEvent:
    return HistoryEvent(instance_id, execution_id, -1, AT, event)  # type: ignore[arg-type]


def test_starts_completions_and_latency_are_counted_by_workflow_and_status(harness: HandlerHarness) -> None:
    delta = Delta(("kwf_workflow_starts_total", {"workflow": "m_chain"}),
                  ("kwf_workflow_completions_total", {"workflow": "m_chain", "status": "COMPLETED"}),
                  ("kwf_workflow_completions_total", {"workflow": "m_chain", "status": "FAILED"}),
                  ("kwf_workflow_execution_seconds_count", {"workflow": "m_chain", "status": "COMPLETED"}),
                  ("kwf_activity_scheduled_total", {"activity": "m_step"}))
    ok = history(harness.process(proposed("ok", ExecutionStarted("m_chain", "1"))))
    bad = history(harness.process(proposed("bad", ExecutionStarted("m_chain", "1"))))
    harness.process(proposed("ok", TaskCompleted(0, "2"), ok[0].execution_id))
    harness.process(proposed("bad", TaskFailed(0, FailureDetails("ValueError", "no")), bad[0].execution_id))
    assert delta() == [2, 1, 1, 1, 2]


def test_a_duplicate_result_and_an_event_for_an_unknown_instance_are_counted_as_dropped(
        harness: HandlerHarness) -> None:
    delta = Delta(("kwf_orchestrator_dropped_total", {"event": "TaskCompleted"}),
                  ("kwf_orchestrator_dropped_total", {"event": "EventRaised"}),
                  ("kwf_external_events_received_total", {}))
    started = history(harness.process(proposed("w", ExecutionStarted("m_waiter"))))
    harness.process(proposed("nobody", EventRaised("go", "1")))
    harness.process(proposed("w", TaskCompleted(3, "1"), started[0].execution_id))
    harness.process(proposed("w", EventRaised("go", "1")))
    assert delta() == [1, 1, 1]


def test_timers_pending_and_their_lateness(harness: HandlerHarness, monkeypatch: pytest.MonkeyPatch) -> None:
    delta = Delta(("kwf_timers_created_total", {}), ("kwf_timers_fired_total", {}), ("kwf_timers_pending", {}),
                  ("kwf_timer_lateness_seconds_count", {}), ("kwf_timer_lateness_seconds_bucket", {"le": "5.0"}))
    turn = harness.process(proposed("s", ExecutionStarted("m_sleeper", "null")))
    [created] = [e.event for e in history(turn) if isinstance(e.event, TimerCreated)]
    assert delta()[:3] == [1, 0, 1]
    # Fired 3 s after it was due: within the 5 s bucket, outside the 1 s one.
    late = created.fire_at + timedelta(seconds=3)
    monkeypatch.setattr("engine.orchestration.orchestrator.now_utc", lambda: late)
    within_1s = value("kwf_timer_lateness_seconds_bucket", le="1.0")
    harness.punctuate(int(late.timestamp() * 1000))
    assert delta() == [1, 1, 0, 1, 1]
    assert value("kwf_timer_lateness_seconds_bucket", le="1.0") == within_1s


def test_live_run_cache_hits_and_misses_are_read_from_the_executor(tmp_path: Path) -> None:
    orchestrator = Orchestrator(Settings(topic_prefix="t", state_dir=tmp_path), registry, partitions=1)
    driven = HandlerHarness(orchestrator, tmp_path / "inbox-0", input_topic="t.inbox")
    try:
        delta = Delta(("kwf_live_run_cache_hits_total", {}), ("kwf_live_run_cache_misses_total", {}))
        started = history(driven.process(proposed("c", ExecutionStarted("m_chain", "1"))))
        driven.process(proposed("c", TaskCompleted(0, "2"), started[0].execution_id))
        assert delta() == [1, 0]
        orchestrator.executor.evict("d")
        started = history(driven.process(proposed("d", ExecutionStarted("m_chain", "1"))))
        orchestrator.executor.evict("d")
        driven.process(proposed("d", TaskCompleted(0, "2"), started[0].execution_id))
        assert delta() == [1, 1]
    finally:
        driven.close()


@dataclass
class Outcome:
    failure: FailureDetails | None = None


class FakeWorker:
    def __init__(self, outcome: Outcome) -> None:
        self.outcome = outcome
        self.in_flight_seen = -1.0

    @metrics.observed_activity
    async def run_task(self, task: ActivityTask) -> Any:
        self.in_flight_seen = value("kwf_activities_in_flight")
        return self.outcome


def test_activity_attempts_are_counted_by_outcome_and_timed() -> None:
    task = ActivityTask("i", "e", 0, "m_act", None, "m_chain", datetime.now(UTC) - timedelta(seconds=2))
    delta = Delta(("kwf_activity_executions_total", {"activity": "m_act", "outcome": "success"}),
                  ("kwf_activity_executions_total", {"activity": "m_act", "outcome": "failure"}),
                  ("kwf_activity_executions_total", {"activity": "m_act", "outcome": "timeout"}),
                  ("kwf_activity_execution_seconds_count", {"activity": "m_act"}),
                  ("kwf_activity_scheduling_delay_seconds_bucket", {"activity": "m_act", "le": "1.0"}),
                  ("kwf_activity_scheduling_delay_seconds_bucket", {"activity": "m_act", "le": "2.5"}))
    before = value("kwf_activities_in_flight")
    worker = FakeWorker(Outcome())
    asyncio.run(worker.run_task(task))
    assert worker.in_flight_seen == before + 1
    asyncio.run(FakeWorker(Outcome(FailureDetails("ValueError", "no"))).run_task(task))
    asyncio.run(FakeWorker(Outcome(FailureDetails("ActivityTimeout", "slow"))).run_task(task))
    # Scheduled 2 s before it started: above the 1 s bucket, within the 2.5 s one.
    assert delta() == [1, 1, 1, 3, 0, 3]
    assert value("kwf_activities_in_flight") == before


def test_stalls_are_counted_by_reason() -> None:
    delta = Delta(("kwf_workflow_stalls_total", {"reason": "VERSION_NOT_AVAILABLE"}),
                  ("kwf_workflow_stalls_total", {"reason": "PATCH_MISMATCH"}))
    metrics.history_emitted([
        HistoryEvent("a", "x", 4, AT, ExecutionStalled("VERSION_NOT_AVAILABLE", "version 'v1' is not registered")),
        HistoryEvent("b", "y", 9, AT, ExecutionStalled("PATCH_MISMATCH", "patch 'p' is no longer checked")),
        HistoryEvent("c", "z", 2, AT, ExecutionStalled("VERSION_NOT_AVAILABLE", "version 'v1' is not registered")),
    ])
    assert delta() == [2, 1]
