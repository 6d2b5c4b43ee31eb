"""What the orchestrator accepts into history and what it refuses: duplicate and stray results,
events for ended instances, order, and payloads over the limit (over a real store, without Kafka)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.core import payload
from engine.core.history import (
    ChildWorkflowFailed,
    ChildWorkflowScheduled,
    EventRaised,
    ExecutionCompleted,
    ExecutionStarted,
    TaskCompleted,
    TaskFailed,
    TaskScheduled,
    WorkflowStatus,
)
from engine.core.payload import PayloadTooLarge
from engine.replay.registry import Registry
from tests.unit.engine.orchestrator_harness import OrchestratorHarness, proposed

LIMIT = 200


def two_steps(ctx: Any, _: Any) -> Any:
    first = yield ctx.call_activity("echo", input="one")
    second = yield ctx.call_activity("echo", input="two")
    return [first, second]


def big_output(ctx: Any, size: int) -> Any:
    yield ctx.call_activity("echo", input="small")
    return "x" * size


def big_child_input(ctx: Any, size: int) -> Any:
    try:
        yield ctx.call_child_workflow("child", input="y" * size)
    except Exception as err:  # the child task fails
        return f"child refused: {err}"
    return "child ran"


def big_activity_input(ctx: Any, size: int) -> Any:
    try:
        yield ctx.call_activity("echo", input="z" * size)
    except Exception as err:
        return f"activity refused: {err}"
    return "activity ran"


def child(ctx: Any, value: Any) -> Any:
    return value
    yield  # a generator


def waits(ctx: Any, _: Any) -> Any:
    return (yield ctx.wait_for_external_event("go"))


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[OrchestratorHarness]:
    registry = Registry()
    for workflow in (two_steps, big_output, big_child_input, big_activity_input, child, waits):
        registry.register_workflow(workflow)
    registry.register_activity(lambda ctx, value=None: value, name="echo")
    found = OrchestratorHarness(registry, tmp_path, max_payload_bytes=LIMIT)
    yield found
    found.close()


def start(harness: OrchestratorHarness, name: str, value: Any = None, instance_id: str = "wf-1") -> Any:
    return harness.deliver(proposed(instance_id, ExecutionStarted(name, payload.encode(value), None, None)))


def result_of(task: Any, value: Any) -> Any:
    return proposed(task.instance_id, TaskCompleted(task.task_id, payload.encode(value)), task.execution_id)


def events_of(harness: OrchestratorHarness, kind: type) -> list[Any]:
    return [e.event for e in harness.history if isinstance(e.event, kind)]


def test_a_result_delivered_twice_in_one_batch_is_recorded_once(harness: OrchestratorHarness) -> None:
    (task,) = start(harness, "two_steps").tasks
    emitted = harness.deliver(result_of(task, "one"), result_of(task, "one"))
    assert [e.event for e in emitted.history].count(TaskCompleted(task.task_id, '"one"')) == 1
    assert len(emitted.tasks) == 1  # the second step is scheduled once


def test_a_result_delivered_again_after_its_commit_is_refused(harness: OrchestratorHarness) -> None:
    (task,) = start(harness, "two_steps").tasks
    (second,) = harness.deliver(result_of(task, "one")).tasks
    again = harness.deliver(result_of(task, "one"))
    assert again.history == [] and again.tasks == [] and again.statuses == []
    harness.deliver(result_of(second, "two"))
    assert len(events_of(harness, TaskCompleted)) == 2
    assert events_of(harness, ExecutionCompleted) == [ExecutionCompleted(WorkflowStatus.COMPLETED, '["one","two"]')]
    # Once the instance has ended, a late copy changes nothing either.
    assert harness.deliver(result_of(second, "two")).history == []


def test_a_result_for_another_execution_or_an_unknown_task_is_refused(harness: OrchestratorHarness) -> None:
    (task,) = start(harness, "two_steps").tasks
    stale = proposed(task.instance_id, TaskCompleted(task.task_id, '"one"'), "an-earlier-execution")
    stray = proposed(task.instance_id, TaskCompleted(task.task_id + 7, '"one"'), task.execution_id)
    failed = proposed(task.instance_id, TaskFailed(task.task_id + 7, payload_failure()), task.execution_id)
    assert harness.deliver(stale, stray, failed).history == []
    assert events_of(harness, TaskScheduled) == [TaskScheduled(task.task_id, "echo", '"one"')]


def payload_failure() -> Any:
    from engine.core.history import FailureDetails

    return FailureDetails("Boom", "boom")


def test_an_event_for_an_ended_instance_is_dropped(harness: OrchestratorHarness) -> None:
    start(harness, "waits")
    harness.deliver(proposed("wf-1", EventRaised("go", '"first"')))
    assert events_of(harness, ExecutionCompleted) == [ExecutionCompleted(WorkflowStatus.COMPLETED, '"first"')]
    late = harness.deliver(proposed("wf-1", EventRaised("go", '"late"')))
    assert late.history == [] and late.statuses == []


def test_history_keeps_the_order_events_were_accepted_in(harness: OrchestratorHarness) -> None:
    start(harness, "waits")
    harness.deliver(*(proposed("wf-1", EventRaised(f"note-{n}", str(n))) for n in range(5)))
    harness.deliver(proposed("wf-1", EventRaised("go", '"done"')))
    raised = [e for e in harness.history if isinstance(e.event, EventRaised)]
    assert [e.event.name for e in raised] == [*(f"note-{n}" for n in range(5)), "go"]
    assert [e.sequence for e in harness.history] == list(range(len(harness.history)))


def test_a_workflow_output_over_the_limit_fails_the_instance(harness: OrchestratorHarness) -> None:
    (task,) = start(harness, "big_output", LIMIT + 1).tasks
    harness.deliver(result_of(task, "small"))
    (end,) = events_of(harness, ExecutionCompleted)
    assert end.status is WorkflowStatus.FAILED and end.output is None
    assert end.failure.type == "PayloadTooLarge" and f"the limit is {LIMIT} bytes" in end.failure.message
    # Within the limit it completes.
    (task,) = start(harness, "big_output", 10, instance_id="wf-2").tasks
    harness.deliver(result_of(task, "small"))
    assert harness.history[-1].event == ExecutionCompleted(WorkflowStatus.COMPLETED, '"' + "x" * 10 + '"')


def test_a_child_input_over_the_limit_fails_that_child_task(harness: OrchestratorHarness) -> None:
    emitted = start(harness, "big_child_input", LIMIT)
    (scheduled,) = events_of(harness, ChildWorkflowScheduled)
    assert scheduled.input is None  # the oversized input never enters history
    # No child is started; the parent gets its child task's failure on its own inbox.
    (failure,) = emitted.inbox
    assert failure.instance_id == "wf-1" and isinstance(failure.event, ChildWorkflowFailed)
    assert failure.event.failure.type == "PayloadTooLarge"
    harness.deliver(failure)
    (end,) = events_of(harness, ExecutionCompleted)
    assert end.status is WorkflowStatus.COMPLETED
    assert "child refused" in end.output and "KWF_MAX_PAYLOAD_BYTES" in end.output


def test_an_activity_input_over_the_limit_fails_that_task(harness: OrchestratorHarness) -> None:
    emitted = start(harness, "big_activity_input", LIMIT)
    assert emitted.tasks == []
    assert events_of(harness, TaskScheduled)[0].input is None
    (failure,) = emitted.inbox
    harness.deliver(failure)
    assert "activity refused" in events_of(harness, ExecutionCompleted)[0].output


def test_the_inbox_refuses_a_start_or_event_over_the_limit(harness: OrchestratorHarness) -> None:
    with pytest.raises(PayloadTooLarge, match="input"):
        start(harness, "waits", "s" * LIMIT)
    start(harness, "waits")
    with pytest.raises(PayloadTooLarge, match="event data"):
        harness.deliver(proposed("wf-1", EventRaised("go", payload.encode("e" * LIMIT))))
