"""History events convert to and from the dicts fastavro writes and reads with the project's schemas."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import fastavro
import pytest
from fastavro.schema import load_schema

import engine as wf
from engine.core.history import (
    EVENT_TYPES,
    ChildWorkflowCompleted,
    ChildWorkflowFailed,
    ChildWorkflowScheduled,
    ContinuedAsNew,
    CustomStatusSet,
    EventRaised,
    ExecutionCompleted,
    ExecutionResumed,
    ExecutionStalled,
    ExecutionStarted,
    ExecutionSuspended,
    ExecutionTerminated,
    FailureDetails,
    HistoryEvent,
    ParentInstance,
    PurgeRequested,
    TaskCompleted,
    TaskFailed,
    TaskScheduled,
    TimerCreated,
    TimerFired,
    VersionMarker,
    WorkflowStatus,
    failure_details_from_record,
    failure_details_to_record,
    history_event_from_record,
    history_event_to_record,
    validate_instance_id,
)

SCHEMAS = Path(__file__).resolve().parents[3] / "schemas"
WHEN = datetime(2024, 5, 6, 7, 8, 9, 123000, tzinfo=UTC)
FAILURE = FailureDetails("ValueError", "bad", "Traceback ...", inner=FailureDetails("OSError", "disk"))

ONE_OF_EACH = [
    ExecutionStarted("flow", '{"a":1}', ParentInstance("p", "e1", 3, "parent_flow"), WHEN + timedelta(hours=1)),
    ExecutionStarted("flow"),
    TaskScheduled(0, "act", "[1,2]"),
    TaskCompleted(0, '"ok"'),
    TaskFailed(1, FAILURE),
    TimerCreated(2, WHEN + timedelta(seconds=5)),
    TimerFired(2, WHEN + timedelta(seconds=5)),
    EventRaised("Approval", '{"approver":"Jane"}'),
    ChildWorkflowScheduled(3, "kid", "p:3", None),
    ChildWorkflowCompleted(3, "10"),
    ChildWorkflowFailed(4, FailureDetails("TaskFailedError", "child failed")),
    CustomStatusSet('"halfway"'),
    ExecutionSuspended("pause"),
    ExecutionResumed(None),
    ExecutionTerminated("stop", '"out"', recurse=False),
    ContinuedAsNew('{"n":2}'),
    ExecutionCompleted(WorkflowStatus.FAILED, None, FAILURE),
    PurgeRequested(),
    VersionMarker(version="v2"),
    VersionMarker(patch="fix-rounding"),
    ExecutionStalled("PATCH_MISMATCH", "history recorded patch 'x'"),
]


def test_the_model_covers_every_kind_of_the_schema_union() -> None:
    schema = load_schema(str(SCHEMAS / "kwf.HistoryEvent.avsc"))
    union = next(f["type"] for f in schema["fields"] if f["name"] == "event")
    names = [member["name"] if isinstance(member, dict) else member for member in union]
    assert names == [f"kwf.{kind.__name__}" for kind in EVENT_TYPES]
    assert {type(e) for e in ONE_OF_EACH} == set(EVENT_TYPES)


@pytest.mark.parametrize("body", ONE_OF_EACH, ids=lambda b: type(b).__name__)
def test_every_event_kind_round_trips_through_fastavro(body: object) -> None:
    schema = load_schema(str(SCHEMAS / "kwf.HistoryEvent.avsc"))
    event = HistoryEvent("inst-1", "exec-1", 7, WHEN, body)  # type: ignore[arg-type]
    out = io.BytesIO()
    fastavro.schemaless_writer(out, schema, history_event_to_record(event))
    out.seek(0)
    record = fastavro.schemaless_reader(out, schema, schema, return_record_name=True)
    assert history_event_from_record(record) == event


def test_reading_with_the_nullable_union_override_also_works() -> None:
    # streams.serde reads with return_record_name_override: nullable records come back bare.
    schema = load_schema(str(SCHEMAS / "kwf.HistoryEvent.avsc"))
    event = HistoryEvent("i", "e", 0, WHEN, ExecutionCompleted(WorkflowStatus.FAILED, None, FAILURE))
    out = io.BytesIO()
    fastavro.schemaless_writer(out, schema, history_event_to_record(event))
    out.seek(0)
    record = fastavro.schemaless_reader(
        out, schema, schema, return_record_name=True, return_record_name_override=True
    )
    assert history_event_from_record(record) == event


def test_records_use_the_schema_shapes() -> None:
    record = history_event_to_record(HistoryEvent("i", "e", 1, WHEN, ExecutionCompleted(WorkflowStatus.COMPLETED, "1")))
    assert record["event"] == ("kwf.ExecutionCompleted", {"status": "COMPLETED", "output": "1", "failure": None})
    assert failure_details_to_record(FAILURE)["inner"] == {
        "type": "OSError",
        "message": "disk",
        "stack_trace": None,
        "inner": None,
    }
    assert failure_details_from_record(failure_details_to_record(FAILURE)) == FAILURE


def test_timestamps_come_back_utc_aware() -> None:
    eastern = timezone(timedelta(hours=-5))
    record = history_event_to_record(HistoryEvent("i", "e", 1, WHEN, TaskCompleted(1)))
    record["timestamp"] = WHEN.replace(tzinfo=None)
    assert history_event_from_record(record).timestamp == WHEN
    record["timestamp"] = WHEN.astimezone(eastern)
    assert history_event_from_record(record).timestamp.tzinfo == UTC


def test_an_unknown_event_kind_or_a_bare_union_member_is_refused() -> None:
    record = history_event_to_record(HistoryEvent("i", "e", 1, WHEN, TaskCompleted(1)))
    with pytest.raises(ValueError, match="unknown history event kind"):
        history_event_from_record({**record, "event": ("kwf.Nope", {})})
    with pytest.raises(ValueError, match="return_record_name"):
        history_event_from_record({**record, "event": {"task_id": 1}})


def test_workflow_status_reads_like_dapr_and_is_the_schema_enum() -> None:
    assert str(wf.WorkflowStatus.COMPLETED) == "WorkflowStatus.COMPLETED"
    assert wf.WorkflowStatus is WorkflowStatus
    schema = load_schema(str(SCHEMAS / "kwf.RuntimeStatus.avsc"))
    assert [s.name for s in wf.WorkflowStatus] == schema["symbols"]


@pytest.mark.parametrize("good", ["a", "order-1_2.3:4", "x" * 128])
def test_valid_instance_ids(good: str) -> None:
    assert validate_instance_id(good) == good


@pytest.mark.parametrize("bad", ["", "x" * 129, "has space", "slash/no", "ünïcode"])
def test_invalid_instance_ids(bad: str) -> None:
    with pytest.raises(ValueError, match="1 to 128"):
        validate_instance_id(bad)
