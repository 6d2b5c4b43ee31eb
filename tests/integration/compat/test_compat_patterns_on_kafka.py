"""Workflow behaviours that need the real runtime: children, lifecycle, events, timers, retries."""

from __future__ import annotations

import json
import uuid

import pytest

import engine as wf
import engine.api.client
from engine.api.history_reader import read_history
from engine.core.history import TimerCreated, TimerFired
from tests.integration.compat import app
from tests.integration.engine.inbox_barrier import wait_inbox_processed

Status = wf.WorkflowStatus
DONE_S = 60


def new_id(label: str) -> str:
    return f"{label}-{uuid.uuid4().hex[:8]}"


def completed(wfc: wf.WorkflowClient, instance_id: str) -> wf.WorkflowState:
    state = wfc.wait_for_workflow_completion(instance_id, timeout_in_seconds=DONE_S)
    assert state is not None
    return state


def test_ten_children_of_three_activities_run_thirty_activities(wfc: wf.WorkflowClient) -> None:
    instance_id = wfc.schedule_new_workflow(app.ten_children, instance_id=new_id("fan"))
    state = completed(wfc, instance_id)
    assert state.runtime_status is Status.COMPLETED, state.failure_details
    assert json.loads(state.serialized_output) == [i * 100 + 3 for i in range(10)]
    runs = {child: n for child, n in app.PART_RUNS.items() if child.startswith(instance_id + ":")}
    assert len(runs) == 10 and set(runs.values()) == {3}
    assert sum(runs.values()) == 30


def test_terminating_a_parent_terminates_its_children_unless_told_otherwise(wfc: wf.WorkflowClient) -> None:
    recursive, shallow = new_id("rt"), new_id("shallow")
    for parent in (recursive, shallow):
        wfc.schedule_new_workflow(app.parent_of_waiter, instance_id=parent)
        child = wfc.wait_for_workflow_start(f"{parent}:0", timeout_in_seconds=DONE_S)
        assert child is not None and child.runtime_status is Status.RUNNING

    wfc.terminate_workflow(recursive)
    assert completed(wfc, f"{recursive}:0").runtime_status is Status.TERMINATED

    wfc.terminate_workflow(shallow, recursive=False)
    assert wfc.get_workflow_state(shallow).runtime_status is Status.TERMINATED
    # A stray recursive terminate would have been sent with the parent's: once the child's
    # inbox is processed past it, the child would show it.
    wait_inbox_processed(wfc.settings, f"{shallow}:0")
    assert wfc.get_workflow_state(f"{shallow}:0").runtime_status is Status.RUNNING
    wfc.raise_workflow_event(f"{shallow}:0", "go", data="alone")
    assert completed(wfc, f"{shallow}:0").serialized_output == '"alone"'


def test_an_event_raised_while_suspended_is_held_until_resume(wfc: wf.WorkflowClient) -> None:
    instance_id = wfc.schedule_new_workflow(app.waiter, instance_id=new_id("held"))
    wfc.wait_for_workflow_start(instance_id, timeout_in_seconds=DONE_S)
    wfc.pause_workflow(instance_id)
    wfc.raise_workflow_event(instance_id, "go", data="kept")
    wait_inbox_processed(wfc.settings, instance_id)  # the runtime has had the event, and held it
    assert wfc.get_workflow_state(instance_id).runtime_status is Status.SUSPENDED
    wfc.resume_workflow(instance_id)
    state = completed(wfc, instance_id)
    assert (state.runtime_status, state.serialized_output) == (Status.COMPLETED, '"kept"')


def test_an_instance_id_is_reusable_after_it_ends_and_purge_forgets_it(wfc: wf.WorkflowClient) -> None:
    instance_id = new_id("reuse")
    wfc.schedule_new_workflow(app.hello, input="first", instance_id=instance_id)
    assert completed(wfc, instance_id).serialized_output == '"hello first"'

    wfc.schedule_new_workflow(app.hello, input="second", instance_id=instance_id)  # after COMPLETED
    assert completed(wfc, instance_id).serialized_output == '"hello second"'

    wfc.schedule_new_workflow(app.waiter, instance_id=instance_id)
    with pytest.raises(wf.InstanceExists):
        wfc.schedule_new_workflow(app.hello, input="while running", instance_id=instance_id)
    wfc.terminate_workflow(instance_id)
    wfc.schedule_new_workflow(app.hello, input="third", instance_id=instance_id)  # after TERMINATED
    assert completed(wfc, instance_id).serialized_output == '"hello third"'

    wfc.purge_workflow(instance_id)
    assert wfc.get_workflow_state(instance_id) is None
    wfc.schedule_new_workflow(app.hello, input="fourth", instance_id=instance_id)  # after purge
    state = completed(wfc, instance_id)
    assert state.serialized_output == '"hello fourth"'
    assert state.serialized_input == '"fourth"'


def test_events_race_a_three_second_timer_and_events_for_unknown_instances_are_dropped(
    wfc: wf.WorkflowClient,
) -> None:
    event_first, timer_first, short = new_id("race-ev"), new_id("race-timer"), new_id("short")
    # Raised before the instance exists: dropped, not kept for a later start of that ID.
    wfc.raise_workflow_event(timer_first, "approval", data="too early")
    assert wfc.get_workflow_state(timer_first) is None

    for instance_id, workflow in ((event_first, app.race), (timer_first, app.race), (short, app.short_wait)):
        wfc.schedule_new_workflow(workflow, instance_id=instance_id)
    wfc.raise_workflow_event(event_first, "APPROVAL", data="yes")  # names compare case-insensitively

    assert json.loads(completed(wfc, event_first).serialized_output) == ["event", "yes"]
    # Who won is in the history, not in how long this machine took: the event's instance
    # ended before its timer was due, the timer's no earlier than its time.
    event_history = read_history(wfc.settings, event_first)
    (timer,) = [e.event for e in event_history if isinstance(e.event, TimerCreated)]
    assert event_history[-1].timestamp < timer.fire_at
    assert json.loads(completed(wfc, short).serialized_output) == (
        "timed out: timed out waiting for external event 'never'"
    )
    assert json.loads(completed(wfc, timer_first).serialized_output) == "timeout"
    timer_history = read_history(wfc.settings, timer_first)
    (timer,) = [e.event for e in timer_history if isinstance(e.event, TimerCreated)]
    fired = [e for e in timer_history if isinstance(e.event, TimerFired)]
    assert fired and fired[0].timestamp >= timer.fire_at and timer_history[-1].timestamp >= timer.fire_at

    # Events for an ended instance are dropped too: it stays as it ended.
    wfc.raise_workflow_event(timer_first, "approval", data="too late")
    wait_inbox_processed(wfc.settings, timer_first)
    assert wfc.get_workflow_state(timer_first).serialized_output == '"timeout"'


def test_retry_delays_are_kept_by_durable_timers_and_the_last_failure_fails_the_instance(
    wfc: wf.WorkflowClient,
) -> None:
    instance_id = wfc.schedule_new_workflow(app.retried_fetch, input="http://down", instance_id=new_id("retry"))
    state = completed(wfc, instance_id)
    times = app.ATTEMPT_TIMES[instance_id]
    assert len(times) == 4
    gaps = [later - earlier for earlier, later in zip(times, times[1:], strict=False)]
    # 0.5 s, doubled to 1 s, then capped at 1 s (uncapped it would be 2 s).
    for gap, delay in zip(gaps, (0.5, 1.0, 1.0), strict=True):
        assert delay <= gap < delay + 0.9, gaps

    assert state.runtime_status is Status.FAILED
    details = state.failure_details
    assert details is not None and details.error_type == "TaskFailedError"
    assert "after 4 attempts" in details.message and "ConnectionError: no route to http://down" in details.message
    assert "uncaught on purpose" in (details.stack_trace or "")  # the workflow's line


def test_a_workflow_that_continues_as_new_in_its_first_step_starts_like_any_other(
    wfc: wf.WorkflowClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Its first execution is replaced before the start returns: the start must still be confirmed.
    monkeypatch.setattr(engine.api.client, "DEFAULT_ACK_TIMEOUT_S", 5.0)
    instance_id = wfc.schedule_new_workflow(app.restarts_at_once, input=0, instance_id=new_id("can"))
    state = completed(wfc, instance_id)
    assert state.runtime_status is Status.COMPLETED
    assert state.serialized_output == '"hello generation 2"'
