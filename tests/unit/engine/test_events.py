"""External events: buffering, order, case, timeouts, races with timers, continue-as-new, suspension."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

import engine as wf
from engine.core.history import (
    EventRaised,
    ExecutionCompleted,
    ExecutionStarted,
    TaskScheduled,
    TimerCreated,
    TimerFired,
    WorkflowStatus,
)
from engine.replay.registry import Registry
from tests.unit.engine.driver import Driver

CACHE_MODES = pytest.mark.parametrize("cache_size", [10_000, 0], ids=["cached", "replayed"])


def driver_for(workflow: Callable[..., Any], cache_size: int = 10_000) -> Driver:
    reg = Registry()
    reg.register_workflow(workflow, name="wf")
    reg.register_activity(lambda ctx, value=None: value, name="echo")
    return Driver(reg, cache_size=cache_size)


@CACHE_MODES
def test_an_event_raised_before_the_wait_is_buffered(cache_size: int) -> None:
    def workflow(ctx, _):
        yield ctx.call_activity("echo", input="first")
        return (yield ctx.wait_for_external_event("ready"))

    driver = driver_for(workflow, cache_size)
    driver.start("wf")
    driver.raise_event("wf-1", "ready", {"ok": True})  # the workflow is still waiting on its activity
    driver.run()
    assert driver.instance().result == {"ok": True}


@CACHE_MODES
def test_several_events_of_one_name_reach_successive_waits_in_order(cache_size: int) -> None:
    def workflow(ctx, _):
        early = yield ctx.wait_for_external_event("item")
        # Two waits open at once get the next two events in the order the waits were made.
        second = ctx.wait_for_external_event("item")
        third = ctx.wait_for_external_event("item")
        rest = yield wf.when_all([third, second])
        return [early, *rest]

    driver = driver_for(workflow, cache_size)
    driver.start("wf")
    for n in (1, 2, 3):
        driver.raise_event("wf-1", "item", n)
    driver.run()
    assert driver.instance().result == [1, 3, 2]


@CACHE_MODES
def test_buffered_events_are_handed_out_first_in_first_out(cache_size: int) -> None:
    def workflow(ctx, _):
        yield ctx.create_timer(timedelta(seconds=1))
        got = []
        for _ in range(3):
            got.append((yield ctx.wait_for_external_event("item")))
        return got

    driver = driver_for(workflow, cache_size)
    driver.start("wf")
    for n in ("a", "b", "c"):
        driver.raise_event("wf-1", "item", n)
    driver.run()
    assert driver.instance().result == ["a", "b", "c"]


def test_event_names_are_case_insensitive() -> None:
    def workflow(ctx, _):
        first = yield ctx.wait_for_external_event("Approval")
        second = yield ctx.wait_for_external_event("approval")
        return [first, second]

    driver = driver_for(workflow)
    driver.start("wf")
    driver.raise_event("wf-1", "APPROVAL", 1)
    driver.raise_event("wf-1", "aPProval", 2)
    assert driver.instance().result == [1, 2]


@CACHE_MODES
def test_a_wait_that_times_out_raises_timeout_error_in_the_workflow(cache_size: int) -> None:
    def workflow(ctx, _):
        try:
            yield ctx.wait_for_external_event("never", timeout=timedelta(minutes=10))
        except TimeoutError as err:
            return f"gave up: {err}"

    driver = driver_for(workflow, cache_size)
    driver.start("wf")
    driver.run()
    inst = driver.instance()
    assert inst.result == "gave up: timed out waiting for external event 'never'"
    timer = next(e for e in inst.history if isinstance(e.event, TimerCreated))
    assert timer.event.fire_at - timer.timestamp == timedelta(minutes=10)


def test_an_uncaught_wait_timeout_fails_the_instance_with_timeout_error() -> None:
    def workflow(ctx, _):
        yield ctx.wait_for_external_event("never", timeout=timedelta(seconds=1))

    driver = driver_for(workflow)
    driver.start("wf")
    driver.run()
    inst = driver.instance()
    assert inst.status is WorkflowStatus.FAILED
    assert inst.failure is not None and inst.failure.type == "TimeoutError"


@CACHE_MODES
def test_an_event_in_time_beats_the_timeout_and_a_late_timer_changes_nothing(cache_size: int) -> None:
    def workflow(ctx, _):
        value = yield ctx.wait_for_external_event("go", timeout=timedelta(minutes=10))
        yield ctx.call_activity("echo", input=value)
        return value

    driver = driver_for(workflow, cache_size)
    driver.start("wf")
    driver.raise_event("wf-1", "go", 42)
    # The now useless timeout fires while the workflow still waits on its activity, so
    # the executor (not the driver) is what ignores it.
    driver.run_one("timer")
    inst = driver.instance()
    assert isinstance(inst.events[-1], TimerFired) and inst.results[-1].actions == []
    assert inst.status is WorkflowStatus.RUNNING
    driver.run()
    assert inst.status is WorkflowStatus.COMPLETED
    assert inst.result == 42


def race(ctx, _):
    event = ctx.wait_for_external_event("approval")
    timeout = ctx.create_timer(timedelta(hours=24))
    winner = yield wf.when_any([event, timeout])
    if winner == timeout:
        return "timeout"
    return ["event", event.get_result()]


@CACHE_MODES
def test_when_any_of_event_and_timer_when_the_event_comes_first(cache_size: int) -> None:
    driver = driver_for(race, cache_size)
    driver.start("wf")
    driver.raise_event("wf-1", "approval", "yes")
    assert driver.instance().result == ["event", "yes"]


@CACHE_MODES
def test_when_any_of_event_and_timer_when_the_timer_fires_first(cache_size: int) -> None:
    def workflow(ctx, _):
        event = ctx.wait_for_external_event("approval")
        timeout = ctx.create_timer(timedelta(hours=24))
        winner = yield wf.when_any([event, timeout])
        # Still running after the race: a late event reaches the executor, not only the driver.
        yield ctx.call_activity("echo")
        return "timeout" if winner == timeout else ["event", event.get_result()]

    driver = driver_for(workflow, cache_size)
    driver.start("wf")
    driver.run_one("timer")
    inst = driver.instance()
    assert len(driver.pending("activity")) == 1  # the timer won; the activity is pending
    driver.raise_event("wf-1", "approval", "too late")
    assert inst.events[-1] == EventRaised("approval", '"too late"') and inst.results[-1].actions == []
    driver.run()
    assert inst.status is WorkflowStatus.COMPLETED
    assert inst.result == "timeout"
    # An event for an ended instance is the orchestrator's to drop: see
    # tests/unit/engine/test_orchestrator.py::test_an_event_for_an_ended_instance_is_dropped.



def carry_over(save_events: bool) -> Callable[..., Any]:
    def workflow(ctx, generation: int):
        if generation == 0:
            yield ctx.call_activity("echo")
            ctx.continue_as_new(1, save_events=save_events)
            return
        got = []
        for _ in range(3):
            try:
                got.append((yield ctx.wait_for_external_event("note", timeout=timedelta(seconds=1))))
            except TimeoutError:
                got.append(None)
        return got

    return workflow


@CACHE_MODES
def test_continue_as_new_with_save_events_carries_the_buffered_events(cache_size: int) -> None:
    driver = driver_for(carry_over(save_events=True), cache_size)
    driver.start("wf", 0)
    for text in ("x", "y", "z"):
        driver.raise_event("wf-1", "note", text)
    driver.run()
    inst = driver.instance()
    assert len(inst.past_executions) == 1
    first_events = [e.event for e in inst.history[:4]]
    assert isinstance(first_events[0], ExecutionStarted)
    assert first_events[1:] == [EventRaised("note", '"x"'), EventRaised("note", '"y"'), EventRaised("note", '"z"')]
    assert inst.result == ["x", "y", "z"]


@CACHE_MODES
def test_continue_as_new_without_save_events_drops_them(cache_size: int) -> None:
    driver = driver_for(carry_over(save_events=False), cache_size)
    driver.start("wf", 0)
    for text in ("x", "y", "z"):
        driver.raise_event("wf-1", "note", text)
    driver.run()
    inst = driver.instance()
    assert inst.of_kind(EventRaised) == []
    assert inst.result == [None, None, None]


@CACHE_MODES
def test_events_and_results_wait_while_suspended_and_apply_on_resume(cache_size: int) -> None:
    def workflow(ctx, _):
        first = yield ctx.call_activity("echo", input="work")
        second = yield ctx.wait_for_external_event("go")
        return [first, second]

    driver = driver_for(workflow, cache_size)
    driver.start("wf")
    driver.suspend("wf-1", "maintenance")
    assert driver.instance().status is WorkflowStatus.SUSPENDED
    driver.run()  # the activity runs, but its result is held
    driver.raise_event("wf-1", "go", "now")
    inst = driver.instance()
    assert inst.status is WorkflowStatus.SUSPENDED
    assert len(inst.of_kind(TaskScheduled)) == 1
    assert inst.results[-1].actions == []

    driver.resume("wf-1")
    assert driver.instance().status is WorkflowStatus.COMPLETED
    assert driver.instance().result == ["work", "now"]


@CACHE_MODES
def test_terminate_ends_the_instance_with_the_given_output(cache_size: int) -> None:
    def workflow(ctx, _):
        yield ctx.wait_for_external_event("never")

    driver = driver_for(workflow, cache_size)
    driver.start("wf")
    driver.terminate("wf-1", {"why": "operator"})
    inst = driver.instance()
    assert inst.status is WorkflowStatus.TERMINATED
    assert inst.result == {"why": "operator"}
    last = inst.events[-1]
    assert isinstance(last, ExecutionCompleted) and last.status is WorkflowStatus.TERMINATED
    assert last.output == '{"why":"operator"}'


def test_terminate_while_suspended_still_terminates() -> None:
    def workflow(ctx, _):
        yield ctx.wait_for_external_event("never")

    driver = driver_for(workflow)
    driver.start("wf")
    driver.suspend("wf-1")
    driver.terminate("wf-1")
    assert driver.instance().status is WorkflowStatus.TERMINATED
