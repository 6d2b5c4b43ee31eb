"""The history model: one frozen dataclass per event kind of ``schemas/kwf.HistoryEvent.avsc``.

Field names are exactly the schema's. Payloads (``input``, ``result``, ``output``, ``data``,
``status``) are JSON text or None. ``history_event_to_record`` and
``history_event_from_record`` convert to and from the dicts fastavro writes and reads: the
``event`` union member as a ``("kwf.<Kind>", {...})`` tuple, timestamps as UTC-aware
datetimes.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from enum import Enum
from typing import Any

NAMESPACE = "kwf"

# Instance IDs travel as Kafka keys, URL path segments and RocksDB keys; this alphabet is
# safe in all three.
_INSTANCE_ID = re.compile(r"[A-Za-z0-9\-_.:]{1,128}")


def validate_instance_id(instance_id: str) -> str:
    """Return the ID unchanged if it is 1-128 letters, digits, ``-``, ``_``, ``.`` or ``:``.

    Raises:
        ValueError: The ID is empty, too long or has other characters.
    """
    if not isinstance(instance_id, str) or _INSTANCE_ID.fullmatch(instance_id) is None:
        raise ValueError(
            f"invalid instance ID {instance_id!r}: use 1 to 128 characters of letters, digits, '-', '_', '.' and ':'"
        )
    return instance_id


# Application IDs name topics (``{prefix}.{app_id}.inbox``): Kafka's topic alphabet without
# the dot, so an application's topics never read as another prefix's.
_APP_ID = re.compile(r"[A-Za-z0-9\-_]{1,64}")


def validate_app_id(app_id: str) -> str:
    """Return the application ID unchanged if it is 1-64 letters, digits, ``-`` or ``_``.

    Raises:
        ValueError: The ID is empty, too long or has other characters.
    """
    if not isinstance(app_id, str) or _APP_ID.fullmatch(app_id) is None:
        raise ValueError(f"invalid application ID {app_id!r}: use 1 to 64 letters, digits, '-' and '_'")
    return app_id


# Event names travel in JSON, URLs and logs: printable and bounded.
_EVENT_NAME_MAX = 256


def validate_event_name(name: str) -> str:
    """Event names: 1-256 characters, no control characters."""
    if not isinstance(name, str) or not 0 < len(name) <= _EVENT_NAME_MAX or any(ord(c) < 32 for c in name):
        raise ValueError(f"invalid event name {name!r}: use 1 to {_EVENT_NAME_MAX} printable characters")
    return name


class WorkflowStatus(Enum):
    """Where a workflow instance stands (the ``kwf.RuntimeStatus`` enum)."""

    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    CONTINUED_AS_NEW = "CONTINUED_AS_NEW"
    FAILED = "FAILED"
    TERMINATED = "TERMINATED"
    PENDING = "PENDING"
    SUSPENDED = "SUSPENDED"
    STALLED = "STALLED"
    """The runtime lacks the code the instance's history recorded (a version or a patch):
    the instance keeps its events and timers and resumes when that code is deployed."""



@dataclass(frozen=True, slots=True)
class FailureDetails:
    """Why a task or an instance failed.

    Attributes:
        type: Exception type name, e.g. ``ValueError`` or ``ActivityNotRegistered``.
        message: The exception's message.
        stack_trace: The formatted traceback, if known.
        inner: The failure that caused this one, if any.
    """

    type: str
    message: str
    stack_trace: str | None = None
    inner: FailureDetails | None = None


@dataclass(frozen=True, slots=True)
class ParentInstance:
    """The workflow that started a child workflow, and the task ID it gave the child.

    ``app_id`` is the parent's application when it is not the child's ("" for the default
    application); None when both run in one application.
    """

    instance_id: str
    execution_id: str
    task_id: int
    name: str
    app_id: str | None = None


@dataclass(frozen=True, slots=True)
class ExecutionStarted:
    """A new execution of an instance begins (also after continue-as-new)."""

    name: str
    input: str | None = None
    parent: ParentInstance | None = None
    scheduled_start: datetime | None = None
    propagated_history: str | None = None


@dataclass(frozen=True, slots=True)
class TaskScheduled:
    """The workflow asked for an activity (of application ``app_id``; None: its own)."""

    task_id: int
    name: str
    input: str | None = None
    propagated_history: str | None = None
    app_id: str | None = None


@dataclass(frozen=True, slots=True)
class TaskCompleted:
    """An activity returned."""

    task_id: int
    result: str | None = None


@dataclass(frozen=True, slots=True)
class TaskFailed:
    """An activity raised."""

    task_id: int
    failure: FailureDetails


@dataclass(frozen=True, slots=True)
class TimerCreated:
    """The workflow asked for a durable timer; the runtime appends TimerFired at ``fire_at``."""

    timer_id: int
    fire_at: datetime


@dataclass(frozen=True, slots=True)
class TimerFired:
    """A durable timer came due."""

    timer_id: int
    fire_at: datetime


@dataclass(frozen=True, slots=True)
class EventRaised:
    """An external event was raised to the instance; names compare case-insensitively."""

    name: str
    data: str | None = None


@dataclass(frozen=True, slots=True)
class ChildWorkflowScheduled:
    """The workflow started a child workflow (of application ``app_id``; None: its own)."""

    task_id: int
    name: str
    instance_id: str
    input: str | None = None
    propagated_history: str | None = None
    app_id: str | None = None


@dataclass(frozen=True, slots=True)
class ChildWorkflowCompleted:
    """A child workflow completed."""

    task_id: int
    result: str | None = None


@dataclass(frozen=True, slots=True)
class ChildWorkflowFailed:
    """A child workflow failed or was terminated."""

    task_id: int
    failure: FailureDetails


@dataclass(frozen=True, slots=True)
class CustomStatusSet:
    """The workflow set its custom status."""

    status: str | None = None


@dataclass(frozen=True, slots=True)
class ExecutionSuspended:
    """The instance was paused; events that arrive meanwhile wait for ExecutionResumed."""

    reason: str | None = None


@dataclass(frozen=True, slots=True)
class ExecutionResumed:
    """The instance was resumed."""

    reason: str | None = None


@dataclass(frozen=True, slots=True)
class ExecutionTerminated:
    """The instance was terminated, with ``output`` as its output."""

    reason: str | None = None
    output: str | None = None
    recurse: bool = True


@dataclass(frozen=True, slots=True)
class ContinuedAsNew:
    """The workflow restarted itself with new input."""

    input: str | None = None


@dataclass(frozen=True, slots=True)
class ExecutionCompleted:
    """The execution ended: COMPLETED, FAILED, TERMINATED or CONTINUED_AS_NEW."""

    status: WorkflowStatus
    output: str | None = None
    failure: FailureDetails | None = None


@dataclass(frozen=True, slots=True)
class PurgeRequested:
    """Remove an ended instance and its state."""


@dataclass(frozen=True, slots=True)
class VersionMarker:
    """What a versioned execution is bound to: the ``version`` it runs, or a ``patch`` it took."""

    version: str | None = None
    patch: str | None = None


@dataclass(frozen=True, slots=True)
class ExecutionStalled:
    """This runtime lacks the code history recorded; ``reason`` is a ``StallReason`` value."""

    reason: str
    message: str


# The timer ID of a STALLED instance's re-check: workflow timers count up from 0, and -1 is
# a deferred start's. When it fires, the runtime that owns the instance tries its code again.
STALL_CHECK_TIMER_ID = -2


class StallReason(Enum):
    """Why an instance is STALLED."""

    VERSION_NOT_AVAILABLE = "VERSION_NOT_AVAILABLE"
    """The workflow version its history recorded is not registered in this runtime."""
    PATCH_MISMATCH = "PATCH_MISMATCH"
    """Its history recorded a patch that the workflow code no longer checks."""


Event = (
    ExecutionStarted
    | TaskScheduled
    | TaskCompleted
    | TaskFailed
    | TimerCreated
    | TimerFired
    | EventRaised
    | ChildWorkflowScheduled
    | ChildWorkflowCompleted
    | ChildWorkflowFailed
    | CustomStatusSet
    | ExecutionSuspended
    | ExecutionResumed
    | ExecutionTerminated
    | ContinuedAsNew
    | ExecutionCompleted
    | PurgeRequested
    | VersionMarker
    | ExecutionStalled
)
"""Any one of the 19 event kinds of the HistoryEvent union."""

EVENT_TYPES: tuple[type, ...] = (
    ExecutionStarted,
    TaskScheduled,
    TaskCompleted,
    TaskFailed,
    TimerCreated,
    TimerFired,
    EventRaised,
    ChildWorkflowScheduled,
    ChildWorkflowCompleted,
    ChildWorkflowFailed,
    CustomStatusSet,
    ExecutionSuspended,
    ExecutionResumed,
    ExecutionTerminated,
    ContinuedAsNew,
    ExecutionCompleted,
    PurgeRequested,
    VersionMarker,
    ExecutionStalled,
)


@dataclass(frozen=True, slots=True)
class HistoryEvent:
    """One step in the life of a workflow instance.

    Attributes:
        instance_id: The instance the event belongs to (the Kafka key).
        execution_id: New on every start and continue-as-new; empty when unknown.
        sequence: Position in the execution's history; -1 while proposed on the inbox.
        timestamp: When the event was accepted (UTC aware).
        event: The event itself, one of the kinds in ``Event``.
    """

    instance_id: str
    execution_id: str
    sequence: int
    timestamp: datetime
    event: Event


def utc(moment: datetime) -> datetime:
    """Return ``moment`` as a UTC-aware datetime; a naive one is taken to be UTC already."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def failure_details_to_record(failure: FailureDetails) -> dict[str, Any]:
    """The fastavro dict of a FailureDetails (``inner`` nested the same way)."""
    return {
        "type": failure.type,
        "message": failure.message,
        "stack_trace": failure.stack_trace,
        "inner": None if failure.inner is None else failure_details_to_record(failure.inner),
    }


def failure_details_from_record(record: Any) -> FailureDetails:
    """Build FailureDetails from the dict fastavro reads (a ``(name, dict)`` tuple is accepted)."""
    record = _unwrap(record)
    inner = record.get("inner")
    return FailureDetails(
        type=record["type"],
        message=record["message"],
        stack_trace=record.get("stack_trace"),
        inner=None if inner is None else failure_details_from_record(inner),
    )


def history_event_to_record(event: HistoryEvent) -> dict[str, Any]:
    """The dict fastavro writes for a HistoryEvent, the union member as ``(name, record)``."""
    payload = event.event
    body = {f.name: _field_to_record(getattr(payload, f.name)) for f in fields(payload)}
    return {
        "instance_id": event.instance_id,
        "execution_id": event.execution_id,
        "sequence": event.sequence,
        "timestamp": event.timestamp,
        "event": (f"{NAMESPACE}.{type(payload).__name__}", body),
    }


def history_event_from_record(record: dict[str, Any]) -> HistoryEvent:
    """Build a HistoryEvent from the dict fastavro reads with ``return_record_name=True``.

    Raises:
        ValueError: The union member is not a ``(name, record)`` pair naming a known event kind.
    """
    member = record["event"]
    if not (isinstance(member, tuple) and len(member) == 2 and isinstance(member[0], str)):
        raise ValueError(
            "HistoryEvent.event must be a (record name, record) pair; read it with fastavro's return_record_name=True"
        )
    name, body = member
    kind = _EVENT_BY_NAME.get(name.rsplit(".", 1)[-1])
    if kind is None:
        raise ValueError(f"unknown history event kind {name!r}")
    decoders = _FIELD_DECODERS.get(kind, {})
    kwargs = {}
    for f in fields(kind):
        if f.name in body:
            value = body[f.name]
            decode = decoders.get(f.name)
            kwargs[f.name] = value if decode is None or value is None else decode(value)
    return HistoryEvent(
        instance_id=record["instance_id"],
        execution_id=record["execution_id"],
        sequence=record["sequence"],
        timestamp=utc(record["timestamp"]),
        event=kind(**kwargs),
    )


_EVENT_BY_NAME: dict[str, type] = {kind.__name__: kind for kind in EVENT_TYPES}


def _unwrap(value: Any) -> Any:
    # fastavro reads a ["null", record] union as (name, record) unless told to override.
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str):
        return value[1]
    return value


def _parent_from_record(value: Any) -> ParentInstance:
    value = _unwrap(value)
    return ParentInstance(
        instance_id=value["instance_id"],
        execution_id=value["execution_id"],
        task_id=value["task_id"],
        name=value["name"],
        app_id=value.get("app_id"),
    )


def _field_to_record(value: Any) -> Any:
    if isinstance(value, FailureDetails):
        return failure_details_to_record(value)
    if isinstance(value, ParentInstance):
        return {
            "instance_id": value.instance_id,
            "execution_id": value.execution_id,
            "task_id": value.task_id,
            "name": value.name,
            "app_id": value.app_id,
        }
    if isinstance(value, WorkflowStatus):
        return value.value
    return value


def _status_from_record(value: Any) -> WorkflowStatus:
    return WorkflowStatus(value)


_FIELD_DECODERS: dict[type, dict[str, Callable[[Any], Any]]] = {
    ExecutionStarted: {"parent": _parent_from_record, "scheduled_start": utc},
    TaskFailed: {"failure": failure_details_from_record},
    ChildWorkflowFailed: {"failure": failure_details_from_record},
    TimerCreated: {"fire_at": utc},
    TimerFired: {"fire_at": utc},
    ExecutionCompleted: {"status": _status_from_record, "failure": failure_details_from_record},
}
