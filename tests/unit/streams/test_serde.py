"""Avro single-object encoding: every kind round-trips, old writers decode, garbage fails."""

from __future__ import annotations

import copy
import json
import struct
from datetime import UTC, datetime
from pathlib import Path

import fastavro
import pytest

from streams.serde import MAGIC, AvroSerde, SerdeError, load_named_schema, schema_fingerprint

SCHEMAS = Path(__file__).resolve().parents[3] / "schemas"
NOW = datetime(2026, 11, 28, 12, 0, 0, 123000, tzinfo=UTC)
FAILURE = {"type": "ValueError", "message": "boom", "stack_trace": "line 1", "inner": None}

EVENTS = {
    "ExecutionStarted": {"name": "wf", "input": "1", "scheduled_start": NOW,
                         "parent": {"instance_id": "p", "execution_id": "e", "task_id": 2, "name": "parent",
                                    "app_id": "app1"},
                         "propagated_history": None},
    "TaskScheduled": {"task_id": 1, "name": "step1", "input": "[1, 2]", "propagated_history": '{"scope":"x"}',
                      "app_id": "app3"},
    "TaskCompleted": {"task_id": 1, "result": None},
    "TaskFailed": {"task_id": 1, "failure": {**FAILURE, "inner": dict(FAILURE)}},
    "TimerCreated": {"timer_id": 4, "fire_at": NOW},
    "TimerFired": {"timer_id": 4, "fire_at": NOW},
    "EventRaised": {"name": "approval_received", "data": '{"approver": "Jane"}'},
    "ChildWorkflowScheduled": {"task_id": 5, "name": "child", "instance_id": "p:5", "input": None,
                               "propagated_history": None, "app_id": None},
    "ChildWorkflowCompleted": {"task_id": 5, "result": '"ok"'},
    "ChildWorkflowFailed": {"task_id": 5, "failure": FAILURE},
    "CustomStatusSet": {"status": '"x"'},
    "ExecutionSuspended": {"reason": "maintenance"},
    "ExecutionResumed": {"reason": None},
    "ExecutionTerminated": {"reason": "stop", "output": '"bye"', "recurse": False},
    "ContinuedAsNew": {"input": "3"},
    "ExecutionCompleted": {"status": "FAILED", "output": None, "failure": FAILURE},
    "PurgeRequested": {},
    "VersionMarker": {"version": "v2", "patch": None},
    "ExecutionStalled": {"reason": "VERSION_NOT_AVAILABLE", "message": "version 'v1' is not registered"},
}


@pytest.fixture(scope="module")
def history_serde() -> AvroSerde:
    return AvroSerde(load_named_schema(SCHEMAS, "kwf.HistoryEvent"))


@pytest.mark.parametrize("kind", sorted(EVENTS))
def test_every_event_kind_round_trips(history_serde: AvroSerde, kind: str) -> None:
    record = {"instance_id": "order-1", "execution_id": "e1", "sequence": 7, "timestamp": NOW,
              "event": (f"kwf.{kind}", EVENTS[kind])}
    data = history_serde.encode(record)
    assert data[:2] == MAGIC and data[2:10] == history_serde.fingerprint
    assert history_serde.decode(data) == record


def test_history_union_covers_every_kind_in_the_schema() -> None:
    union = json.loads((SCHEMAS / "kwf.HistoryEvent.avsc").read_text())["fields"][-1]["type"]
    assert sorted(name.removeprefix("kwf.") for name in union) == sorted(EVENTS)


@pytest.mark.parametrize("name,record", [
    ("kwf.ActivityTask", {"instance_id": "i", "execution_id": "e", "task_id": 3, "name": "a", "input": None,
                          "workflow_name": "wf", "scheduled_at": NOW, "propagated_history": None,
                          "reply_to": "kwf.app1.inbox"}),
    ("kwf.WorkflowStatus", {"instance_id": "i", "execution_id": "e", "name": "wf", "runtime_status": "COMPLETED",
                            "created_at": NOW, "last_updated_at": NOW, "input": "1", "output": "2",
                            "custom_status": None, "failure": None, "parent_instance_id": None,
                            "history_length": 9}),
])
def test_task_and_status_round_trip(name: str, record: dict) -> None:
    serde = AvroSerde(load_named_schema(SCHEMAS, name))
    assert serde.decode(serde.encode(record)) == record


def test_record_from_older_schema_version_decodes_with_newer_reader() -> None:
    current = json.loads((SCHEMAS / "kwf.ActivityTask.avsc").read_text())
    older = copy.deepcopy(current)
    older["fields"] = [f for f in older["fields"] if f["name"] != "workflow_name"]
    old_writer = AvroSerde(older)
    reader = AvroSerde(current, older=[older])
    assert old_writer.fingerprint != reader.fingerprint
    data = old_writer.encode({"instance_id": "i", "execution_id": "e", "task_id": 1, "name": "a",
                              "input": "1", "scheduled_at": NOW})
    decoded = reader.decode(data)
    assert decoded["workflow_name"] == ""  # the new field's default
    assert decoded["input"] == "1"


def test_unknown_fingerprint_raises(history_serde: AvroSerde) -> None:
    other = AvroSerde({"type": "record", "name": "Other", "fields": [{"name": "x", "type": "int"}]})
    with pytest.raises(SerdeError, match="unknown schema fingerprint"):
        history_serde.decode(other.encode({"x": 1}))


@pytest.mark.parametrize("garbage", [b"", b"hello world", MAGIC, b"\x00" * 40])
def test_garbage_raises(history_serde: AvroSerde, garbage: bytes) -> None:
    with pytest.raises(SerdeError):
        history_serde.decode(garbage)


def test_truncated_body_raises(history_serde: AvroSerde) -> None:
    data = history_serde.encode({"instance_id": "i", "execution_id": "e", "sequence": 1, "timestamp": NOW,
                                 "event": ("kwf.TaskScheduled", EVENTS["TaskScheduled"])})
    with pytest.raises(SerdeError):
        history_serde.decode(data[:-4])


def test_encode_of_wrong_shape_raises(history_serde: AvroSerde) -> None:
    with pytest.raises(SerdeError, match="cannot encode"):
        history_serde.encode({"instance_id": 5})


def test_fingerprint_matches_the_avro_spec_reference_value() -> None:
    # The spec: CRC-64-AVRO of the schema "null" is 7195948357588979594, written little-endian.
    assert schema_fingerprint("null") == struct.pack("<Q", 7195948357588979594)


def test_fingerprint_is_crc64_avro_of_canonical_form() -> None:
    schema = fastavro.parse_schema({"type": "record", "name": "R", "fields": [{"name": "a", "type": "long"}]})
    # Known CRC-64-AVRO of the canonical form {"name":"R","type":"record","fields":[{"name":"a","type":"long"}]}
    assert len(schema_fingerprint(schema)) == 8
    assert schema_fingerprint(schema) != schema_fingerprint(
        fastavro.parse_schema({"type": "record", "name": "R", "fields": [{"name": "a", "type": "int"}]}))
