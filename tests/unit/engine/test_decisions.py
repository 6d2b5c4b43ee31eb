"""The orchestrator's decisions as plain functions: no store, no batch, no clock."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from engine.core.history import (
    ChildWorkflowCompleted,
    ChildWorkflowFailed,
    ChildWorkflowScheduled,
    ContinuedAsNew,
    EventRaised,
    ExecutionCompleted,
    ExecutionResumed,
    ExecutionStarted,
    ExecutionSuspended,
    ExecutionTerminated,
    FailureDetails,
    HistoryEvent,
    ParentInstance,
    TaskCompleted,
    TaskFailed,
    TaskScheduled,
    TimerFired,
    WorkflowStatus,
)
from engine.core.payload import PayloadTooLarge
from engine.orchestration.decisions import (
    check_inbox_payload,
    closed_item,
    limit_payloads,
    parent_notice,
    purge_refusal,
    refusal,
    source_of,
    start_refusal,
    step_overrun,
)
from engine.state.instance_state import InstanceState, fold
from streams import dlq

AT = datetime(2024, 1, 1, tzinfo=UTC)


def running(parent: ParentInstance | None = None) -> InstanceState:
    state = fold(None, HistoryEvent("i1", "e1", 0, AT, ExecutionStarted("wf", "1", parent))).state
    assert state is not None and state.status is WorkflowStatus.RUNNING
    return state


def test_a_start_is_refused_only_while_the_instance_lives() -> None:
    assert start_refusal(None) is None
    assert start_refusal(running()) == "instance is RUNNING"
    assert start_refusal(replace(running(), status=WorkflowStatus.COMPLETED)) is None
    assert start_refusal(replace(running(), status=WorkflowStatus.CONTINUED_AS_NEW)) is None


def test_only_an_ended_instance_is_purged() -> None:
    assert purge_refusal(None) == "no such instance"
    assert purge_refusal(running()) == "only ended instances can be purged"
    assert purge_refusal(replace(running(), status=WorkflowStatus.FAILED)) is None


@pytest.mark.parametrize(("payload", "item"), [
    (TaskCompleted(3, "1"), (3, "task")),
    (TaskFailed(3, FailureDetails("E", "m")), (3, "task")),
    (ChildWorkflowCompleted(4, "1"), (4, "child")),
    (ChildWorkflowFailed(4, FailureDetails("E", "m")), (4, "child")),
    (TimerFired(5, AT), (5, "timer")),
    (EventRaised("go", None), None),
])
def test_what_a_result_closes(payload: object, item: tuple[int, str] | None) -> None:
    assert closed_item(payload) == item


def test_a_result_is_accepted_once_for_an_open_item_of_the_current_execution() -> None:
    state = running()
    done = TaskCompleted(0, "2")
    assert refusal(done, "e1", state, state.status, open_kind="task") is None
    assert refusal(done, "", state, state.status, open_kind="task") is None  # unnamed execution: the current one
    assert refusal(done, "e0", state, state.status, open_kind="task") == "it belongs to an earlier execution"
    assert refusal(done, "e1", state, state.status, open_kind="task", began_here=True) == \
        "it belongs to an earlier execution"
    assert refusal(done, "e1", state, state.status, open_kind="task", closed_here=True) == "task 0 already finished"
    assert refusal(done, "e1", state, state.status, open_kind=None) == "no open task 0 (a duplicate or stray result)"
    # The right ID but another kind of item: a timer's ID is not a task's.
    assert refusal(TimerFired(0, AT), "e1", state, state.status, open_kind="task") == \
        "no open timer 0 (a duplicate or stray result)"


def test_commands_follow_the_status() -> None:
    state = running()
    assert refusal(ExecutionSuspended("x"), "", state, WorkflowStatus.RUNNING) is None
    assert refusal(ExecutionSuspended("x"), "", state, WorkflowStatus.PENDING) is None  # a deferred start
    assert refusal(ExecutionSuspended("x"), "", state, WorkflowStatus.SUSPENDED) == "it is SUSPENDED"
    assert refusal(ExecutionResumed(None), "", state, WorkflowStatus.SUSPENDED) is None
    assert refusal(ExecutionResumed(None), "", state, WorkflowStatus.RUNNING) == "it is not suspended"
    assert refusal(EventRaised("go", "1"), "", state, WorkflowStatus.SUSPENDED) is None  # kept for the resume
    assert refusal(ExecutionTerminated(None, None), "", state, WorkflowStatus.RUNNING) is None
    assert refusal(ContinuedAsNew("1"), "", state, WorkflowStatus.RUNNING) == "ContinuedAsNew is not a command"


def test_actions_over_the_payload_limit_fail_instead_of_entering_history() -> None:
    small = [TaskScheduled(0, "a", '"x"'), ExecutionCompleted(WorkflowStatus.COMPLETED, '"y"')]
    assert limit_payloads(small, 10) == (small, {})
    assert limit_payloads(small, 10)[0] is small  # unchanged: the same list
    big = '"' + "z" * 20 + '"'
    decided, refused = limit_payloads([TaskScheduled(0, "a", big), ChildWorkflowScheduled(1, "c", "i:1", big),
                                       ExecutionCompleted(WorkflowStatus.COMPLETED, big)], 10)
    assert decided[0] == TaskScheduled(0, "a", None) and decided[1] == ChildWorkflowScheduled(1, "c", "i:1", None)
    assert decided[2].status is WorkflowStatus.FAILED and decided[2].failure.type == "PayloadTooLarge"
    assert isinstance(refused[0], TaskFailed) and isinstance(refused[1], ChildWorkflowFailed)
    assert "input of activity 'a'" in refused[0].failure.message


def test_the_inbox_door_refuses_outside_payloads_over_the_limit() -> None:
    check_inbox_payload(ExecutionStarted("wf", '"ok"'), 10)
    for event in (ExecutionStarted("wf", '"' + "x" * 20 + '"'), EventRaised("go", '"' + "x" * 20 + '"'),
                  ExecutionTerminated(None, '"' + "x" * 20 + '"')):
        with pytest.raises(PayloadTooLarge):
            check_inbox_payload(event, 10)
    check_inbox_payload(TaskCompleted(0, '"' + "x" * 20 + '"'), 10)  # results are the worker's door


def test_a_child_tells_its_parent_how_it_ended() -> None:
    parent = ParentInstance("p", "pe", 7, "parent_wf")
    child = running(parent)
    assert parent_notice(child, ExecutionCompleted(WorkflowStatus.COMPLETED, '"ok"')) == \
        ChildWorkflowCompleted(7, '"ok"')
    failure = FailureDetails("ValueError", "boom")
    assert parent_notice(child, ExecutionCompleted(WorkflowStatus.FAILED, None, failure)) == \
        ChildWorkflowFailed(7, failure)
    terminated = parent_notice(child, ExecutionCompleted(WorkflowStatus.TERMINATED, None))
    assert isinstance(terminated, ChildWorkflowFailed) and terminated.failure.type == "WorkflowTerminated"
    assert parent_notice(child, ExecutionCompleted(WorkflowStatus.CONTINUED_AS_NEW, None)) is None
    assert parent_notice(running(), ExecutionCompleted(WorkflowStatus.COMPLETED, None)) is None


def test_a_step_that_overran_names_the_workflow_the_instance_and_the_setting() -> None:
    failure = step_overrun("spin", "i1", 5.0)
    assert failure.type == "StepTimeLimitExceeded"
    assert "'spin'" in failure.message and "i1" in failure.message and "KWF_STEP_TIME_LIMIT_S" in failure.message


def test_the_source_record_a_bridge_event_names() -> None:
    assert source_of(None) is None
    assert source_of([("traceparent", b"00-x")]) is None
    headers = [(dlq.SOURCE_TOPIC, b"payments"), (dlq.SOURCE_PARTITION, b"2"), (dlq.SOURCE_OFFSET, b"41")]
    assert source_of(headers) == "payments-2@41"
