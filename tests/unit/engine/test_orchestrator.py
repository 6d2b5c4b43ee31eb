"""The orchestrator's decisions, driven batch by batch without Kafka (``streams.testing``).

Each test hands the real ``Orchestrator`` inbox events and looks at what it would emit in
the batch's transaction: history (the changelog), activity tasks, statuses and inbox
records for other instances.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import engine as wf
from engine.core.history import (
    EventRaised,
    ExecutionCompleted,
    ExecutionResumed,
    ExecutionStarted,
    ExecutionSuspended,
    HistoryEvent,
    PurgeRequested,
    TaskCompleted,
    TaskScheduled,
    TimerCreated,
    TimerFired,
    WorkflowStatus,
)
from engine.orchestration.orchestrator import Orchestrator
from engine.replay.registry import Registry
from engine.state.codec import decode_event, decode_status, decode_task
from engine.state.config import Settings
from streams.testing import HandlerHarness, Turn

AT = datetime(2024, 1, 1, tzinfo=UTC)
registry = Registry()


@registry.activity(name="step")
def step(ctx: wf.WorkflowActivityContext, value: int) -> int:
    return value + 1


@registry.workflow(name="chain2")
def chain2(ctx: wf.DaprWorkflowContext, value: int):
    value = yield ctx.call_activity(step, input=value)
    value = yield ctx.call_activity(step, input=value)
    return value


@registry.workflow(name="sleeper")
def sleeper(ctx: wf.DaprWorkflowContext, _: object):
    yield ctx.create_timer(timedelta(seconds=5))
    return "woke"


@registry.workflow(name="waiter")
def waiter(ctx: wf.DaprWorkflowContext, _: object):
    data = yield ctx.wait_for_external_event("go")
    return data


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[HandlerHarness]:
    settings = Settings(topic_prefix="t", state_dir=tmp_path)
    orchestrator = Orchestrator(settings, registry, partitions=1)
    driven = HandlerHarness(orchestrator, tmp_path / "inbox-0", input_topic="t.inbox")
    yield driven
    driven.close()


def proposed(instance_id: str, event: object, execution_id: str = "") -> HistoryEvent:
    return HistoryEvent(instance_id, execution_id, -1, AT, event)  # type: ignore[arg-type]


def history(turn: Turn) -> list[HistoryEvent]:
    return [decode_event(value) for _, value, _ in turn.changelog if value is not None]


def tombstones(turn: Turn) -> list[bytes | None]:
    return [key for key, value, _ in turn.changelog if value is None]


def statuses(turn: Turn) -> list[WorkflowStatus]:
    return [decode_status(e.value).runtime_status for e in turn.to("t.status")]


def test_a_start_is_recorded_and_schedules_the_first_activity(harness: HandlerHarness) -> None:
    turn = harness.process(proposed("i1", ExecutionStarted("chain2", "1")))
    events = history(turn)
    assert [type(e.event) for e in events] == [ExecutionStarted, TaskScheduled]
    assert [e.sequence for e in events] == [0, 1]
    [task] = [decode_task(e.value) for e in turn.to("t.activities")]
    assert (task.instance_id, task.task_id, task.name, task.input) == ("i1", 0, "step", "1")
    assert statuses(turn) == [WorkflowStatus.RUNNING]


def test_a_second_start_of_a_running_instance_is_refused(harness: HandlerHarness) -> None:
    harness.process(proposed("i1", ExecutionStarted("chain2", "1")))
    assert harness.process(proposed("i1", ExecutionStarted("chain2", "5"))).changelog == []


def test_suspend_and_resume_only_apply_where_they_make_sense(harness: HandlerHarness) -> None:
    harness.process(proposed("i1", ExecutionStarted("waiter", "null")))
    assert harness.process(proposed("i1", ExecutionResumed(None))).changelog == []  # not suspended
    suspended = harness.process(proposed("i1", ExecutionSuspended("pause")))
    assert statuses(suspended) == [WorkflowStatus.SUSPENDED]
    assert harness.process(proposed("i1", ExecutionSuspended("again"))).changelog == []
    # An event while suspended is kept in history and applied on resume.
    held = harness.process(proposed("i1", EventRaised("go", '"data"')))
    assert [type(e.event) for e in history(held)] == [EventRaised]
    assert statuses(held) == [WorkflowStatus.SUSPENDED]
    resumed = harness.process(proposed("i1", ExecutionResumed(None)))
    assert statuses(resumed)[-1] is WorkflowStatus.COMPLETED


def test_due_timers_fire_through_punctuation_only_when_due(harness: HandlerHarness) -> None:
    started = history(harness.process(proposed("i1", ExecutionStarted("sleeper", "null"))))
    [created] = [e.event for e in started if isinstance(e.event, TimerCreated)]
    fire_ms = int(created.fire_at.timestamp() * 1000)
    assert harness.punctuate(fire_ms - 1).changelog == []
    fired = harness.punctuate(fire_ms)
    assert [type(e.event) for e in history(fired)] == [TimerFired, ExecutionCompleted]
    assert harness.punctuate(fire_ms + 10_000).changelog == []  # fired once


def test_only_an_ended_instance_is_purged_and_its_status_is_tombstoned(harness: HandlerHarness) -> None:
    started = history(harness.process(proposed("i1", ExecutionStarted("waiter", "null"))))
    assert harness.process(proposed("i1", PurgeRequested())).changelog == []
    harness.process(proposed("i1", EventRaised("go", "1"), started[0].execution_id))
    purged = harness.process(proposed("i1", PurgeRequested()))
    assert [type(e.event) for e in history(purged)] == [PurgeRequested]
    assert len(tombstones(purged)) >= 3  # every event of the instance leaves the compacted history
    assert [e.value for e in purged.to("t.status")] == [None]
    # Gone: the same ID starts afresh.
    again = history(harness.process(proposed("i1", ExecutionStarted("waiter", "null"))))
    assert [type(e.event) for e in again] == [ExecutionStarted]


def test_an_uncommitted_batch_is_forgotten_on_abort(harness: HandlerHarness) -> None:
    started = history(harness.process(proposed("i1", ExecutionStarted("chain2", "1"))))
    execution = started[0].execution_id
    lost = harness.process(proposed("i1", TaskCompleted(0, "2"), execution), commit=False)
    assert history(lost)
    harness.abort()
    # The transaction never happened: the same result is accepted again.
    redo = harness.process(proposed("i1", TaskCompleted(0, "2"), execution))
    assert [type(e.event) for e in history(redo)] == [TaskCompleted, TaskScheduled]


def test_the_partitions_share_the_executor_cache_size_for_decoded_events(tmp_path: Path) -> None:
    # Per-partition caches of the executor's full size let a bulk start hold cache_size
    # instances decoded per partition, partitions times what the setting says.
    orchestrator = Orchestrator(Settings(topic_prefix="t", state_dir=tmp_path), registry, partitions=8,
                                cache_size=100)
    driven = HandlerHarness(orchestrator, tmp_path / "inbox-0", input_topic="t.inbox")
    try:
        assert orchestrator._store(driven.store)._edge_cache_size == 13
    finally:
        driven.close()
