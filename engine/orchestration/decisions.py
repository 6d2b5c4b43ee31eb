"""The orchestrator's decisions, as plain functions over plain values.

Whether a proposed event is accepted, what a step's actions become under the payload
limit, what a parent hears when its child ends, what a step that ran too long records:
each is decided here from values the orchestrator looked up, with no store, batch or
clock in reach, so the rules read (and are unit-tested) apart from the loop that applies
them (``orchestrator.py``).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from engine.core.history import (
    ChildWorkflowCompleted,
    ChildWorkflowFailed,
    ChildWorkflowScheduled,
    EventRaised,
    ExecutionCompleted,
    ExecutionResumed,
    ExecutionStarted,
    ExecutionSuspended,
    ExecutionTerminated,
    FailureDetails,
    TaskCompleted,
    TaskFailed,
    TaskScheduled,
    TimerFired,
    WorkflowStatus,
)
from engine.core.payload import PayloadTooLarge, check_size
from engine.state.instance_state import InstanceState
from streams import dlq
from streams.handler import Headers

RESULTS = TaskCompleted | TaskFailed | ChildWorkflowCompleted | ChildWorkflowFailed


def start_refusal(state: InstanceState | None) -> str | None:
    """Why a start is refused (the instance runs), or None: a new, ended or continued one starts."""
    if state is None or state.ended or state.status is WorkflowStatus.CONTINUED_AS_NEW:
        return None
    return f"instance is {state.status.name}"


def purge_refusal(state: InstanceState | None) -> str | None:
    """Why a purge is refused, or None: only an ended instance is purged."""
    if state is not None and state.ended:
        return None
    return "only ended instances can be purged" if state is not None else "no such instance"


def closed_item(payload: Any) -> tuple[int, str] | None:
    """The open item (ID, kind) a result or fired timer closes; None for other events."""
    if isinstance(payload, TimerFired):
        return payload.timer_id, "timer"
    if isinstance(payload, ChildWorkflowCompleted | ChildWorkflowFailed):
        return payload.task_id, "child"
    if isinstance(payload, TaskCompleted | TaskFailed):
        return payload.task_id, "task"
    return None


def refusal(payload: Any, execution_id: str, state: InstanceState, status: WorkflowStatus | None, *,
            began_here: bool = False, closed_here: bool = False, open_kind: str | None = None) -> str | None:
    """Why an event proposed for a live instance is not accepted, or None to accept it.

    Args:
        payload: The proposed event.
        execution_id: The execution the proposer named ("" for commands from outside).
        state: The instance's state as of this transaction.
        status: Its status after the events accepted before this one in the same step.
        began_here: The instance's current execution started in this transaction.
        closed_here: This transaction already accepted a result for the same item.
        open_kind: The kind of the open item the event would close, as stored; None: none open.
    """
    item = closed_item(payload)
    if item is not None:
        item_id, expected = item
        if (execution_id and execution_id != state.execution_id) or began_here:
            # (began_here: the store's open items are the previous execution's; this one's
            # are too new to have finished.)
            return "it belongs to an earlier execution"
        if closed_here:
            return f"task {item_id} already finished"
        if open_kind != expected:
            return f"no open {expected} {item_id} (a duplicate or stray result)"
        return None
    if isinstance(payload, ExecutionSuspended):
        # A deferred start (PENDING) can be suspended too: it then waits for its resume.
        return None if status in (WorkflowStatus.RUNNING, WorkflowStatus.PENDING) \
            else f"it is {status.name if status else '?'}"
    if isinstance(payload, ExecutionResumed):
        return None if status is WorkflowStatus.SUSPENDED else "it is not suspended"
    if isinstance(payload, EventRaised | ExecutionTerminated):
        return None
    return f"{type(payload).__name__} is not a command"


def limit_payloads(actions: list[Any], limit: int) -> tuple[list[Any], dict[int, TaskFailed | ChildWorkflowFailed]]:
    """Hold a step's actions to the payload limit before they enter history.

    A completed execution whose output is over ``limit`` fails with ``PayloadTooLarge``
    instead; an activity or child workflow whose input is over it is recorded without
    the input and fails with ``PayloadTooLarge`` (the returned failures, by task ID, to
    deliver) rather than run. Returns ``actions`` itself when nothing is over the limit.
    """
    decided: list[Any] = []
    refused: dict[int, TaskFailed | ChildWorkflowFailed] = {}
    for action in actions:
        try:
            if isinstance(action, ExecutionCompleted):
                check_size(action.output, "workflow output", limit)
            elif isinstance(action, TaskScheduled):
                check_size(action.input, f"input of activity {action.name!r}", limit)
            elif isinstance(action, ChildWorkflowScheduled):
                check_size(action.input, f"input of child workflow {action.name!r}", limit)
            decided.append(action)
        except PayloadTooLarge as err:
            failure = FailureDetails("PayloadTooLarge", str(err))
            if isinstance(action, ExecutionCompleted):
                decided.append(ExecutionCompleted(WorkflowStatus.FAILED, None, failure))
            elif isinstance(action, TaskScheduled):
                decided.append(replace(action, input=None))
                refused[action.task_id] = TaskFailed(action.task_id, failure)
            else:
                decided.append(replace(action, input=None))
                refused[action.task_id] = ChildWorkflowFailed(action.task_id, failure)
    changed = any(a is not b for a, b in zip(decided, actions, strict=True))
    return (decided if changed else actions), refused


def check_inbox_payload(event: Any, limit: int) -> None:
    """The inbox's own door: a start, event or termination from outside, over the limit, is refused.

    Raises:
        PayloadTooLarge: naming what is over the limit.
    """
    if isinstance(event, ExecutionStarted):
        check_size(event.input, "input", limit)
    elif isinstance(event, EventRaised):
        check_size(event.data, "event data", limit)
    elif isinstance(event, ExecutionTerminated):
        check_size(event.output, "output", limit)


def parent_notice(state: InstanceState,
                  done: ExecutionCompleted) -> ChildWorkflowCompleted | ChildWorkflowFailed | None:
    """What a child's end tells its parent; None when there is no parent or it continues as new."""
    parent = state.parent
    if parent is None or done.status is WorkflowStatus.CONTINUED_AS_NEW:
        return None
    if done.status is WorkflowStatus.COMPLETED:
        return ChildWorkflowCompleted(parent.task_id, done.output)
    failure = done.failure or FailureDetails("WorkflowTerminated", f"child workflow {state.instance_id} was terminated")
    return ChildWorkflowFailed(parent.task_id, failure)


def other_app(own: str, asked: str | None) -> str | None:
    """The application a call goes to when it is not this one (``own``); None: this one.

    ``asked`` is the call's ``app_id`` as recorded: None for no application named, ""
    for the default application.
    """
    return None if asked is None or asked == own else asked


def step_overrun(workflow: str, instance_id: str, limit_s: float) -> FailureDetails:
    """The failure of an instance whose replay step ran past ``KWF_STEP_TIME_LIMIT_S``."""
    return FailureDetails(
        "StepTimeLimitExceeded",
        f"workflow {workflow!r} of instance {instance_id} ran one replay step for more than {limit_s:g} s "
        "(KWF_STEP_TIME_LIMIT_S); workflow code must not loop or block: move long work into an activity",
    )


def source_of(headers: Headers | None) -> str | None:
    """The record an inbox record came from (``topic-partition@offset``), as a bridge names it
    in the dead-letter headers' terms; None for a record that names none.
    """
    found = {name: (value or b"").decode(errors="replace") for name, value in headers or ()}
    if dlq.SOURCE_TOPIC not in found:
        return None
    return (f"{found[dlq.SOURCE_TOPIC]}-{found.get(dlq.SOURCE_PARTITION, '?')}"
            f"@{found.get(dlq.SOURCE_OFFSET, '?')}")
