"""Changed workflow code replayed against an old history fails the instance with NonDeterminismError."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import engine as wf
from engine.core.history import ExecutionCompleted, HistoryEvent, TaskCompleted, TaskScheduled, WorkflowStatus
from engine.replay.executor import ExecutionResult, Executor, Registry
from tests.unit.engine.driver import Driver


def registry_with(workflow: Callable[..., Any]) -> Registry:
    reg = Registry()
    reg.register_workflow(workflow, name="flow")
    for name in ("a", "b", "c", "other"):
        reg.register_activity(lambda ctx, value: value, name=name)
    reg.register_workflow(lambda ctx: "child done", name="kid")
    return reg


def history_of(v1: Callable[..., Any], steps: int) -> list[HistoryEvent]:
    """Run v1 for ``steps`` pieces of work (first start included) and return its history."""
    driver = Driver(registry_with(v1))
    driver.start("flow", 1)
    driver.run(max_steps=steps)
    return list(driver.instance().history)


def replay(v2: Callable[..., Any], history: list[HistoryEvent], new_event: Any) -> ExecutionResult:
    last = history[-1]
    event = HistoryEvent(last.instance_id, last.execution_id, len(history), last.timestamp, new_event)
    return Executor(registry_with(v2)).execute(last.instance_id, history, [event])


def assert_nondeterministic(result: ExecutionResult, *fragments: str) -> None:
    assert result.status is WorkflowStatus.FAILED
    assert result.failure is not None and result.failure.type == "NonDeterminismError"
    for fragment in fragments:
        assert fragment in result.failure.message
    # Nothing the new code asked for is acted upon: the only action ends the execution.
    assert len(result.actions) == 1
    assert isinstance(result.actions[0], ExecutionCompleted)


def chain_v1(ctx, value):
    x = yield ctx.call_activity("a", input=value)
    x = yield ctx.call_activity("b", input=x)
    x = yield ctx.call_activity("c", input=x)
    return x


def chain_v2(ctx, value):
    x = yield ctx.call_activity("a", input=value)
    x = yield ctx.call_activity("other", input=x)
    x = yield ctx.call_activity("c", input=x)
    return x


def test_changing_the_activity_at_step_2_fails_naming_the_step_and_both_activities() -> None:
    history = history_of(chain_v1, steps=1)  # a done, b scheduled as task 1
    assert [e.event for e in history if isinstance(e.event, TaskScheduled)][-1] == TaskScheduled(1, "b", "1")

    result = replay(chain_v2, history, TaskCompleted(1, "1"))

    assert_nondeterministic(result, "task ID 1", "history recorded activity 'b'", "asks for activity 'other'", "flow")


def test_the_unchanged_code_replays_the_same_history_fine() -> None:
    history = history_of(chain_v1, steps=1)
    result = replay(chain_v1, history, TaskCompleted(1, "1"))
    assert result.status is WorkflowStatus.RUNNING
    assert result.actions == [TaskScheduled(2, "c", "1")]


def timer_then_a(ctx, value):
    yield ctx.call_activity("a", input=value)
    yield ctx.create_timer(timedelta(seconds=5))
    return "done"


def activity_then_a(ctx, value):
    yield ctx.call_activity("a", input=value)
    yield ctx.call_activity("b", input=value)
    return "done"


def test_a_timer_in_history_where_the_code_now_calls_an_activity() -> None:
    history = history_of(timer_then_a, steps=1)
    result = replay(activity_then_a, history, TaskCompleted(0, "1"))
    assert_nondeterministic(result, "task ID 1", "history recorded a timer", "asks for activity 'b'")


def test_an_activity_in_history_where_the_code_now_creates_a_timer() -> None:
    history = history_of(activity_then_a, steps=1)
    result = replay(timer_then_a, history, TaskCompleted(1, "1"))
    assert_nondeterministic(result, "task ID 1", "history recorded activity 'b'", "asks for a timer")


def child_first(ctx, value):
    yield ctx.call_child_workflow("kid")
    return "done"


def timer_first(ctx, value):
    yield ctx.create_timer(timedelta(seconds=1))
    return "done"


def test_a_child_workflow_in_history_where_the_code_now_creates_a_timer() -> None:
    history = history_of(child_first, steps=0)
    result = replay(timer_first, history, TaskCompleted(99, None))
    assert_nondeterministic(result, "task ID 0", "history recorded child workflow 'kid'", "asks for a timer")


def test_a_timer_in_history_where_the_code_now_starts_a_child_workflow() -> None:
    history = history_of(timer_first, steps=0)
    result = replay(child_first, history, TaskCompleted(99, None))
    assert_nondeterministic(result, "task ID 0", "history recorded a timer", "asks for child workflow 'kid'")


def fan_two(ctx, value):
    results = yield wf.when_all([ctx.call_activity("a", input=1), ctx.call_activity("b", input=2)])
    return results


def fan_one(ctx, value):
    results = yield wf.when_all([ctx.call_activity("a", input=1)])
    return results


def test_a_recorded_task_the_code_no_longer_schedules() -> None:
    history = history_of(fan_two, steps=0)
    result = replay(fan_one, history, TaskCompleted(0, "1"))
    assert_nondeterministic(result, "task ID 1", "history recorded activity 'b'", "no longer schedules it")


def test_a_run_failed_for_nondeterminism_is_not_kept_in_the_cache() -> None:
    history = history_of(chain_v1, steps=1)
    executor = Executor(registry_with(chain_v2))
    last = history[-1]
    event = HistoryEvent(last.instance_id, last.execution_id, len(history), last.timestamp, TaskCompleted(1, "1"))
    first = executor.execute(last.instance_id, history, [event])
    assert first.status is WorkflowStatus.FAILED
    assert executor.cached_instances == 0  # a failed run is not kept
