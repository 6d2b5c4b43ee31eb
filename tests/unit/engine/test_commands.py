"""Parsing and validation of JSON commands (engine/edges/commands.py), without a broker."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from engine.core.history import (
    EventRaised,
    ExecutionResumed,
    ExecutionStarted,
    ExecutionSuspended,
    ExecutionTerminated,
    HistoryEvent,
    PurgeRequested,
)
from engine.edges.commands import MalformedCommand, parse_command
from engine.state.codec import decode_event, encode_event

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
LIMIT = 100


def parse(command: Any, key: bytes | None = None, **kwargs: Any) -> HistoryEvent:
    value = command if isinstance(command, bytes) else json.dumps(command).encode()
    return parse_command(value, key, max_payload_bytes=LIMIT, now=NOW, **kwargs)


def refused(command: Any, key: bytes | None = None) -> str:
    with pytest.raises(MalformedCommand) as caught:
        parse(command, key)
    return str(caught.value)


# -- each command type ---------------------------------------------------------------------


def test_start_becomes_an_execution_started_proposal() -> None:
    event = parse({"type": "start", "workflow": "order", "instanceID": "order-1", "input": {"qty": 2, "x": "é"}})
    assert event == HistoryEvent("order-1", "", -1, NOW, ExecutionStarted("order", '{"qty":2,"x":"é"}'))


def test_start_without_input_has_null_input() -> None:
    assert parse({"type": "start", "workflow": "w", "instanceID": "a"}).event == ExecutionStarted("w", None)


def test_start_at_is_read_as_utc() -> None:
    event = parse({"type": "start", "workflow": "w", "instanceID": "a", "startAt": "2030-01-01T10:00:00+01:00"})
    assert event.event.scheduled_start == datetime(2030, 1, 1, 9, 0, tzinfo=UTC)  # type: ignore[union-attr]
    naive = parse({"type": "start", "workflow": "w", "instanceID": "a", "startAt": "2030-01-01T09:00:00"})
    assert naive.event.scheduled_start == datetime(2030, 1, 1, 9, 0, tzinfo=UTC)  # type: ignore[union-attr]


def test_start_without_an_id_gets_a_fresh_one() -> None:
    event = parse({"type": "start", "workflow": "w"}, new_instance_id=lambda: "generated-1")
    assert event.instance_id == "generated-1"
    first, second = parse({"type": "start", "workflow": "w"}), parse({"type": "start", "workflow": "w"})
    assert first.instance_id != second.instance_id


def test_raise_becomes_event_raised() -> None:
    event = parse({"type": "raise", "instanceID": "order-1", "event": "Approval", "data": [1, None]})
    assert event == HistoryEvent("order-1", "", -1, NOW, EventRaised("Approval", "[1,null]"))


def test_raise_without_data_has_null_data() -> None:
    assert parse({"type": "raise", "instanceID": "a", "event": "go"}).event == EventRaised("go", None)


def test_terminate_carries_output_reason_and_recursion() -> None:
    event = parse({"type": "terminate", "instanceID": "a", "output": "stopped", "reason": "ops", "recursive": False})
    assert event.event == ExecutionTerminated("ops", '"stopped"', False)
    assert parse({"type": "terminate", "instanceID": "a"}).event == ExecutionTerminated(None, None, True)


@pytest.mark.parametrize(("kind", "expected"), [
    ("suspend", ExecutionSuspended(None)),
    ("resume", ExecutionResumed(None)),
    ("purge", PurgeRequested()),
])
def test_management_commands(kind: str, expected: object) -> None:
    assert parse({"type": kind, "instanceID": "a"}) == HistoryEvent("a", "", -1, NOW, expected)  # type: ignore[arg-type]


def test_suspend_reason() -> None:
    assert parse({"type": "suspend", "instanceID": "a", "reason": "maintenance"}).event == \
        ExecutionSuspended("maintenance")


def test_every_command_encodes_as_an_inbox_record() -> None:
    for command in ({"type": "start", "workflow": "w", "instanceID": "a", "input": 1},
                    {"type": "raise", "instanceID": "a", "event": "e", "data": "x"},
                    {"type": "terminate", "instanceID": "a", "output": {"k": 1}},
                    {"type": "suspend", "instanceID": "a"}, {"type": "resume", "instanceID": "a"},
                    {"type": "purge", "instanceID": "a"}):
        event = parse(command)
        assert decode_event(encode_event(event)) == event


# -- the instance ID and the record key ----------------------------------------------------


def test_key_is_the_instance_id_when_the_body_has_none() -> None:
    assert parse({"type": "purge"}, key=b"from-key").instance_id == "from-key"
    assert parse({"type": "start", "workflow": "w"}, key=b"k-1").instance_id == "k-1"


def test_key_and_instance_id_must_agree() -> None:
    assert parse({"type": "purge", "instanceID": "same"}, key=b"same").instance_id == "same"
    assert "differ" in refused({"type": "purge", "instanceID": "one"}, key=b"other")


def test_non_utf8_key_is_refused() -> None:
    assert "not UTF-8" in refused({"type": "purge"}, key=b"\xff\xfe")


@pytest.mark.parametrize("kind", ["raise", "terminate", "suspend", "resume", "purge"])
def test_only_start_may_omit_the_instance_id(kind: str) -> None:
    command = {"type": kind, "event": "e"} if kind == "raise" else {"type": kind}
    assert "needs instanceID" in refused(command)


@pytest.mark.parametrize("instance_id", ["", "has space", "a/b", "x" * 129, 42, None, "é"])
def test_invalid_instance_ids_are_refused(instance_id: object) -> None:
    assert "invalid instance ID" in refused({"type": "purge", "instanceID": instance_id})


# -- malformed records ---------------------------------------------------------------------


@pytest.mark.parametrize("value", [b"{not json", b"\xff\xfe", b"", b'{"type": "purge", "instanceID": NaN}'])
def test_bad_json_is_refused(value: bytes) -> None:
    assert "not JSON" in refused(value)


def test_tombstone_is_refused() -> None:
    with pytest.raises(MalformedCommand, match="tombstone"):
        parse_command(None, b"a", max_payload_bytes=LIMIT)


@pytest.mark.parametrize("value", [b"[1, 2]", b'"start"', b"3", b"null"])
def test_json_that_is_not_an_object_is_refused(value: bytes) -> None:
    assert "not an object" in refused(value)


@pytest.mark.parametrize("kind", ["strat", "START", None, 3, ["start"]])
def test_unknown_types_are_refused(kind: object) -> None:
    message = refused({"type": kind, "instanceID": "a"})
    assert "unknown command type" in message and "start, raise, terminate, suspend, resume, purge" in message


def test_unknown_fields_are_refused() -> None:
    message = refused({"type": "start", "workflow": "w", "instanceId": "typo"})
    assert "unknown field(s) instanceId" in message


@pytest.mark.parametrize("workflow", [None, "", 7, "w" * 257])
def test_start_needs_a_workflow_name(workflow: object) -> None:
    assert "needs workflow" in refused({"type": "start", "instanceID": "a", "workflow": workflow})


@pytest.mark.parametrize("start_at", ["tomorrow", 1700000000, "2030-13-01T00:00:00Z"])
def test_bad_start_at_is_refused(start_at: object) -> None:
    assert "startAt" in refused({"type": "start", "instanceID": "a", "workflow": "w", "startAt": start_at})


@pytest.mark.parametrize("name", [None, "", "x" * 257, "bad\nname", 5])
def test_bad_event_names_are_refused(name: object) -> None:
    assert "invalid event name" in refused({"type": "raise", "instanceID": "a", "event": name})


def test_terminate_recursive_must_be_a_boolean() -> None:
    assert "recursive" in refused({"type": "terminate", "instanceID": "a", "recursive": "no"})


def test_reason_must_be_text() -> None:
    assert "reason must be a string" in refused({"type": "suspend", "instanceID": "a", "reason": {"why": 1}})


@pytest.mark.parametrize(("command", "field"), [
    ({"type": "start", "workflow": "w", "instanceID": "a", "input": "x" * LIMIT}, "input"),
    ({"type": "raise", "instanceID": "a", "event": "e", "data": ["é" * 50]}, "data"),
    ({"type": "terminate", "instanceID": "a", "output": {"k": "v" * LIMIT}}, "output"),
    ({"type": "suspend", "instanceID": "a", "reason": "r" * (LIMIT + 1)}, "reason"),
])
def test_payloads_over_the_limit_are_refused(command: dict[str, Any], field: str) -> None:
    message = refused(command)
    assert message.startswith(f"the {field} is ") and f"the limit is {LIMIT} bytes" in message


def test_payload_at_the_limit_is_accepted() -> None:
    text = "x" * (LIMIT - 2)  # plus the two quotes of its JSON text
    assert parse({"type": "raise", "instanceID": "a", "event": "e", "data": text}).event == \
        EventRaised("e", json.dumps(text))
