"""Avro codecs for the runtime's records, and the conversions to and from engine types."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

from engine.core.bulk import BulkCommand
from engine.core.history import (
    FailureDetails,
    HistoryEvent,
    WorkflowStatus,
    failure_details_from_record,
    failure_details_to_record,
    history_event_from_record,
    history_event_to_record,
    utc,
)
from streams.serde import AvroSerde, load_named_schema, read_schema_json

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
# Earlier versions of the schemas, in Avro's canonical form, one file per fingerprint
# (``{full name}.{fingerprint}.avsc``): records written with them still decode.
OLDER_SCHEMAS = SCHEMAS / "older"


@cache
def serde(full_name: str) -> AvroSerde:
    """The serde of one schema in ``schemas/``, parsed once per process."""
    older = [read_schema_json(path) for path in sorted(OLDER_SCHEMAS.glob(f"{full_name}.*.avsc"))]
    return AvroSerde(load_named_schema(SCHEMAS, full_name), older)


def encode_event(event: HistoryEvent) -> bytes:
    return serde("kwf.HistoryEvent").encode(history_event_to_record(event))


def decode_event(data: bytes | None) -> HistoryEvent:
    return history_event_from_record(serde("kwf.HistoryEvent").decode(data))


@dataclass(frozen=True, slots=True)
class ActivityTask:
    """A request to run one activity (``kwf.ActivityTask``)."""

    instance_id: str
    execution_id: str
    task_id: int
    name: str
    input: str | None
    workflow_name: str
    scheduled_at: datetime
    propagated_history: str | None = None
    # The caller's inbox when it is another application's; None: this topic's own application's.
    reply_to: str | None = None

    @property
    def key(self) -> bytes:
        return f"{self.instance_id}/{self.task_id}".encode()


def encode_task(task: ActivityTask) -> bytes:
    return serde("kwf.ActivityTask").encode({
        "instance_id": task.instance_id, "execution_id": task.execution_id, "task_id": task.task_id,
        "name": task.name, "input": task.input, "workflow_name": task.workflow_name,
        "scheduled_at": task.scheduled_at, "propagated_history": task.propagated_history,
        "reply_to": task.reply_to,
    })


def decode_task(data: bytes | None) -> ActivityTask:
    r = serde("kwf.ActivityTask").decode(data)
    return ActivityTask(r["instance_id"], r["execution_id"], r["task_id"], r["name"], r["input"],
                        r["workflow_name"], utc(r["scheduled_at"]), r.get("propagated_history"), r.get("reply_to"))


@dataclass(frozen=True, slots=True)
class StatusRecord:
    """The latest status of one instance (``kwf.WorkflowStatus``)."""

    instance_id: str
    execution_id: str
    name: str
    runtime_status: WorkflowStatus
    created_at: datetime
    last_updated_at: datetime
    input: str | None = None
    output: str | None = None
    custom_status: str | None = None
    failure: FailureDetails | None = None
    parent_instance_id: str | None = None
    history_length: int = 0


def encode_status(status: StatusRecord) -> bytes:
    return serde("kwf.WorkflowStatus").encode(status_to_record(status))


def status_to_record(status: StatusRecord) -> dict[str, Any]:
    return {
        "instance_id": status.instance_id, "execution_id": status.execution_id, "name": status.name,
        "runtime_status": status.runtime_status.value, "created_at": status.created_at,
        "last_updated_at": status.last_updated_at, "input": status.input, "output": status.output,
        "custom_status": status.custom_status,
        "failure": None if status.failure is None else failure_details_to_record(status.failure),
        "parent_instance_id": status.parent_instance_id, "history_length": status.history_length,
    }


def decode_status(data: bytes | None) -> StatusRecord:
    r = serde("kwf.WorkflowStatus").decode(data)
    return StatusRecord(
        instance_id=r["instance_id"], execution_id=r["execution_id"], name=r["name"],
        runtime_status=WorkflowStatus(r["runtime_status"]), created_at=utc(r["created_at"]),
        last_updated_at=utc(r["last_updated_at"]), input=r["input"], output=r["output"],
        custom_status=r["custom_status"],
        failure=None if r["failure"] is None else failure_details_from_record(r["failure"]),
        parent_instance_id=r["parent_instance_id"], history_length=r["history_length"],
    )


def encode_bulk(command: BulkCommand) -> bytes:
    return serde("kwf.BulkCommand").encode({
        "command_id": command.command_id, "action": command.action,
        "statuses": [s.value for s in command.statuses], "name": command.name,
        "created_after_ms": command.created_after_ms, "created_before_ms": command.created_before_ms,
        "output": command.output, "resume_after": command.resume_after,
    })


def decode_bulk(data: bytes | None) -> BulkCommand:
    record = serde("kwf.BulkCommand").decode(data)
    return BulkCommand(record["command_id"], record["action"], tuple(WorkflowStatus(s) for s in record["statuses"]),
                       record["name"], record["created_after_ms"], record["created_before_ms"], record["output"],
                       record["resume_after"])


def is_bulk(data: bytes | None) -> bool:
    """Whether an inbox record is a ``kwf.BulkCommand`` (by its schema fingerprint)."""
    bulk = serde("kwf.BulkCommand")
    return data is not None and data[2:2 + len(bulk.fingerprint)] == bulk.fingerprint
