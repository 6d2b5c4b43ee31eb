"""Schema evolution: records written with an earlier schema version still decode, and old readers
resolve what the new versions add (a new enum symbol reads as the enum's default)."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime

import fastavro
from fastavro.schema import fingerprint, to_parsing_canonical_form

from engine.core.history import (
    ChildWorkflowScheduled,
    ExecutionCompleted,
    ExecutionStarted,
    HistoryEvent,
    ParentInstance,
    TaskScheduled,
    WorkflowStatus,
    history_event_to_record,
)
from engine.state.codec import (
    OLDER_SCHEMAS,
    SCHEMAS,
    StatusRecord,
    decode_event,
    decode_status,
    encode_event,
    status_to_record,
)
from streams.serde import MAGIC, load_named_schema, read_schema_json

WHEN = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)


def older(full_name: str) -> list[tuple[str, dict]]:
    return [(path.name.split(".")[-2], read_schema_json(path)) for path in OLDER_SCHEMAS.glob(f"{full_name}.*.avsc")]


def single_object(schema: dict, record: dict) -> bytes:
    parsed = fastavro.parse_schema(schema)
    out = io.BytesIO()
    out.write(MAGIC + bytes.fromhex(fingerprint(to_parsing_canonical_form(parsed), "CRC-64-AVRO")))
    fastavro.schemaless_writer(out, parsed, record)
    return out.getvalue()


def test_each_older_schema_file_is_named_for_its_fingerprint() -> None:
    files = list(OLDER_SCHEMAS.glob("*.avsc"))
    assert files
    for path in files:
        parsed = fastavro.parse_schema(json.loads(path.read_text()))
        assert path.name.split(".")[-2] == fingerprint(to_parsing_canonical_form(parsed), "CRC-64-AVRO")


def test_history_events_written_before_versioning_and_before_multi_app_still_decode() -> None:
    schemas = older("kwf.HistoryEvent")
    assert len(schemas) == 2
    parent = ParentInstance("p-1", "e-0", 2, "parent")
    for _, schema in schemas:
        for body in (TaskScheduled(3, "act", "[1]"), ExecutionCompleted(WorkflowStatus.COMPLETED, '"ok"'),
                     ExecutionStarted("child", "[1]", parent)):
            event = HistoryEvent("i-1", "e-1", 4, WHEN, body)
            assert decode_event(single_object(schema, history_event_to_record(event))) == event


def test_statuses_written_before_stalled_existed_still_decode() -> None:
    (_, schema), = older("kwf.WorkflowStatus")
    status = StatusRecord("i-1", "e-1", "flow", WorkflowStatus.RUNNING, WHEN, WHEN, input='"x"')
    assert decode_status(single_object(schema, status_to_record(status))) == status


def test_an_old_reader_reads_the_new_stalled_symbol_as_the_enum_default() -> None:
    (_, old_schema), = older("kwf.WorkflowStatus")
    new_schema = load_named_schema(SCHEMAS, "kwf.WorkflowStatus")
    stalled = StatusRecord("i-1", "e-1", "flow", WorkflowStatus.STALLED, WHEN, WHEN)
    out = io.BytesIO()
    fastavro.schemaless_writer(out, new_schema, status_to_record(stalled))
    out.seek(0)
    # The released enum declared a default (RUNNING) already; fastavro resolves an
    # unknown writer symbol to it.
    enum = next(f["type"] for f in old_schema["fields"] if f["name"] == "runtime_status")
    assert enum["default"] == "RUNNING" and "STALLED" not in enum["symbols"]
    record = fastavro.schemaless_reader(out, new_schema, fastavro.parse_schema(old_schema))
    assert record["runtime_status"] == "RUNNING"


def test_activity_tasks_written_before_propagation_still_decode() -> None:
    from engine.state.codec import ActivityTask, decode_task

    record = {"instance_id": "i-1", "execution_id": "e-1", "task_id": 3, "name": "act", "input": "[1]",
              "workflow_name": "flow", "scheduled_at": WHEN}
    schemas = older("kwf.ActivityTask")
    assert len(schemas) == 2
    for _, schema in schemas:
        # (before propagation, and before multi-app: no reply_to, so the result goes to this app's inbox)
        assert decode_task(single_object(schema, record)) == ActivityTask("i-1", "e-1", 3, "act", "[1]", "flow", WHEN)


def test_multi_app_fields_round_trip() -> None:
    from engine.state.codec import ActivityTask, decode_task, encode_task

    task = ActivityTask("i-1", "e-1", 3, "act", None, "flow", WHEN, reply_to="kwf.app1.inbox")
    assert decode_task(encode_task(task)) == task
    parent = ParentInstance("p-1", "e-0", 2, "parent", app_id="")
    for body in (TaskScheduled(3, "act", None, None, "app3"),
                 ChildWorkflowScheduled(4, "wf", "c-1", None, None, "app2"),
                 ExecutionStarted("wf", None, parent)):
        event = HistoryEvent("i-1", "e-1", 4, WHEN, body)
        assert decode_event(encode_event(event)) == event
