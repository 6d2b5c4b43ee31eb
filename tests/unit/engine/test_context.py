"""The workflow context and the executor's handling of how workflow code starts, runs and ends."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from engine.core.history import (
    ChildWorkflowCompleted,
    ChildWorkflowScheduled,
    CustomStatusSet,
    EventRaised,
    ExecutionCompleted,
    ExecutionStarted,
    HistoryEvent,
    ParentInstance,
    TaskCompleted,
    TimerCreated,
    TimerFired,
    WorkflowStatus,
)
from engine.replay.executor import ContinueAsNew, Executor, Registry
from tests.unit.engine.driver import START, Driver


def driver_for(workflow: Callable[..., Any], cache_size: int = 10_000, **kwargs: Any) -> Driver:
    reg = Registry()
    reg.register_workflow(workflow, name="wf")
    reg.register_activity(lambda ctx, value=None: value, name="echo")
    return Driver(reg, cache_size=cache_size, **kwargs)


def test_current_utc_datetime_is_the_event_time_and_stable_across_replays() -> None:
    seen: list[tuple[str, datetime]] = []

    def workflow(ctx, _):
        seen.append(("start", ctx.current_utc_datetime))
        yield ctx.call_activity("echo")
        seen.append(("after activity", ctx.current_utc_datetime))
        yield ctx.call_activity("echo")
        return ctx.current_utc_datetime.isoformat()

    driver = driver_for(workflow, cache_size=0, tick=timedelta(seconds=1))
    driver.start("wf")
    driver.run()
    inst = driver.instance()
    # Every step replays the code; each point sees the same time on every replay.
    starts = {t for label, t in seen if label == "start"}
    assert starts == {inst.history[0].timestamp}
    assert len([label for label, _ in seen if label == "start"]) == 3
    after = {t for label, t in seen if label == "after activity"}
    assert after == {inst.history[2].timestamp}  # the first TaskCompleted
    assert inst.history[2].timestamp == START + timedelta(seconds=2)
    assert inst.result == inst.history[-2].timestamp.isoformat()


def test_is_replaying_is_false_on_first_run_and_true_on_replay() -> None:
    seen: list[tuple[str, bool]] = []

    def workflow(ctx, _):
        seen.append(("start", ctx.is_replaying))
        yield ctx.call_activity("echo")
        seen.append(("after", ctx.is_replaying))

    driver = driver_for(workflow, cache_size=0)
    driver.start("wf")
    driver.run()
    assert seen == [("start", False), ("start", True), ("after", False)]


def test_with_the_cache_the_code_runs_once_and_never_replays() -> None:
    seen: list[bool] = []

    def workflow(ctx, _):
        seen.append(ctx.is_replaying)
        yield ctx.call_activity("echo")
        seen.append(ctx.is_replaying)

    driver = driver_for(workflow)
    driver.start("wf")
    driver.run()
    assert seen == [False, False]


def test_a_workflow_returning_none_completes_with_no_output() -> None:
    def workflow(ctx, _):
        yield ctx.call_activity("echo")

    driver = driver_for(workflow)
    driver.start("wf")
    driver.run()
    inst = driver.instance()
    assert inst.status is WorkflowStatus.COMPLETED
    assert inst.output is None
    assert inst.events[-1] == ExecutionCompleted(WorkflowStatus.COMPLETED, None)


def test_a_plain_function_workflow_taking_only_the_context() -> None:
    def workflow(ctx):
        return {"instance": ctx.instance_id, "name": ctx.workflow_name}

    driver = driver_for(workflow)
    driver.start("wf", instance_id="plain-1")
    assert driver.instance("plain-1").result == {"instance": "plain-1", "name": "wf"}


def test_an_unknown_workflow_fails_naming_it() -> None:
    driver = driver_for(lambda ctx: None)
    driver.start("no_such_flow")
    inst = driver.instance()
    assert inst.status is WorkflowStatus.FAILED
    assert inst.failure is not None
    assert inst.failure.type == "WorkflowNotRegistered"
    assert "'no_such_flow'" in inst.failure.message


def test_an_uncaught_exception_fails_with_type_message_and_the_users_line() -> None:
    def workflow(ctx, _):
        yield ctx.call_activity("echo")
        raise KeyError("missing-thing")  # the line the stack trace must show

    driver = driver_for(workflow)
    driver.start("wf")
    driver.run()
    failure = driver.instance().failure
    assert failure is not None
    assert failure.type == "KeyError"
    assert "missing-thing" in failure.message
    assert 'raise KeyError("missing-thing")  # the line the stack trace must show' in (failure.stack_trace or "")


def test_yielding_something_other_than_a_task_fails_clearly() -> None:
    def workflow(ctx, _):
        yield 42

    driver = driver_for(workflow)
    driver.start("wf")
    failure = driver.instance().failure
    assert failure is not None and failure.type == "TypeError"
    assert "yielded int 42" in failure.message and "yield only tasks" in failure.message


def test_an_async_workflow_is_refused_with_a_clear_message() -> None:
    async def workflow(ctx, _):
        return 1

    driver = driver_for(workflow)
    driver.start("wf")
    failure = driver.instance().failure
    assert failure is not None and "generator" in failure.message


def test_custom_status_is_recorded_when_it_changes() -> None:
    def workflow(ctx, _):
        ctx.set_custom_status("starting")
        yield ctx.call_activity("echo")
        ctx.set_custom_status("starting")  # unchanged: nothing new to record
        ctx.set_custom_status({"stage": 2})
        yield ctx.call_activity("echo")
        return "ok"

    for cache_size in (10_000, 0):
        driver = driver_for(workflow, cache_size)
        driver.start("wf")
        driver.run()
        inst = driver.instance()
        assert inst.of_kind(CustomStatusSet) == [CustomStatusSet('"starting"'), CustomStatusSet('{"stage":2}')]
        assert inst.custom_status == '{"stage":2}'


def test_child_instance_ids_default_to_parent_and_task_id_and_are_validated() -> None:
    def workflow(ctx, _):
        yield ctx.create_timer(timedelta(seconds=1))
        first = yield ctx.call_child_workflow("kid", input=1)
        second = yield ctx.call_child_workflow("kid", input=2, instance_id="my-kid.2")
        try:
            ctx.call_child_workflow("kid", instance_id="bad id!")
        except ValueError as err:
            return [first, second, str(err)]

    reg = Registry()
    reg.register_workflow(workflow, name="wf")
    reg.register_workflow(lambda ctx, n: n * 10, name="kid")
    driver = Driver(reg)
    driver.start("wf", instance_id="parent")
    driver.run()
    inst = driver.instance("parent")
    assert [c.instance_id for c in inst.of_kind(ChildWorkflowScheduled)] == ["parent:1", "my-kid.2"]
    first, second, error = inst.result
    assert [first, second] == [10, 20]
    assert "bad id!" in error and "1 to 128" in error
    assert driver.instance("parent:1").parent == ParentInstance("parent", inst.execution_id, 1, "wf")


def test_create_timer_takes_a_datetime_or_a_timedelta() -> None:
    def workflow(ctx, _):
        yield ctx.create_timer(datetime(2030, 1, 1))  # naive means UTC
        yield ctx.create_timer(timedelta(minutes=5))

    driver = driver_for(workflow)
    driver.start("wf")
    driver.run()
    timers = driver.instance().of_kind(TimerCreated)
    assert [t.fire_at for t in timers] == [
        datetime(2030, 1, 1, tzinfo=UTC),
        datetime(2030, 1, 1, 0, 5, tzinfo=UTC),
    ]


def test_continue_as_new_ends_the_execution_and_restarts_with_new_input() -> None:
    def workflow(ctx, n: int):
        yield ctx.create_timer(timedelta(seconds=1))
        if n < 3:
            ctx.continue_as_new(n + 1)
            return "ignored"
        return n

    driver = driver_for(workflow)
    inst = driver.start("wf", 0)
    driver.run()
    assert inst.result == 3
    assert len(inst.past_executions) == 3
    first = inst.past_executions[0]
    assert first[-1].event == ExecutionCompleted(WorkflowStatus.CONTINUED_AS_NEW)
    continued = inst.results[1]
    assert continued.status is WorkflowStatus.CONTINUED_AS_NEW
    assert continued.continued_as_new == ContinueAsNew("1", ())
    assert inst.past_executions[1][0].event == ExecutionStarted("wf", "1")
    # Each execution has its own ID and a history that starts over at sequence 0.
    assert len({h[0].execution_id for h in inst.past_executions}) == 3
    assert inst.history[0].sequence == 0


def test_a_stray_or_duplicate_result_changes_nothing() -> None:
    def workflow(ctx, _):
        return (yield ctx.call_activity("echo", input="real"))

    driver = driver_for(workflow)
    driver.start("wf")
    inst = driver.instance()
    for stray in (TaskCompleted(7, '"stray"'), TimerFired(0, START), ChildWorkflowCompleted(0, '"x"')):
        driver._step(inst, [stray])
        assert inst.results[-1].actions == []
        assert inst.status is WorkflowStatus.RUNNING
    driver.run()
    driver._step(inst, [TaskCompleted(0, '"duplicate"')])
    assert inst.result == "real"


def test_the_executor_never_raises_even_on_nonsense_input() -> None:
    class Broken(list):
        def __len__(self) -> int:
            raise RuntimeError("storage went away")

    executor = Executor(Registry())
    result = executor.execute("x", Broken(), [])
    assert result.status is WorkflowStatus.FAILED
    assert result.failure is not None and "storage went away" in result.failure.message
    assert isinstance(result.actions[-1], ExecutionCompleted)


def test_events_before_the_start_leave_the_instance_pending() -> None:
    executor = Executor(Registry())
    event = HistoryEvent("x", "e", 0, START, EventRaised("early"))
    result = executor.execute("x", [], [event])
    assert result.status is WorkflowStatus.PENDING
    assert result.actions == []


@pytest.mark.parametrize("cache_size", [10_000, 0])
def test_an_ended_history_reports_its_recorded_outcome(cache_size: int) -> None:
    def workflow(ctx, _):
        ctx.set_custom_status("almost")
        yield ctx.call_activity("echo")
        return "done"

    driver = driver_for(workflow, cache_size)
    driver.start("wf")
    driver.run()
    inst = driver.instance()
    late = HistoryEvent("wf-1", inst.execution_id, len(inst.history), START, EventRaised("late"))
    result = driver.executor.execute("wf-1", inst.history, [late])
    assert (result.status, result.output, result.actions, result.custom_status) == (
        WorkflowStatus.COMPLETED,
        '"done"',
        [],
        '"almost"',
    )
