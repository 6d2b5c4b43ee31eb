"""The JSON commands door: ``{prefix}.commands`` in, ``HistoryEvent`` records on the inbox out.

Producers without Avro send one JSON object per record, for example::

    {"type": "start", "workflow": "order_processing", "instanceID": "order-1", "input": {"qty": 2}}
    {"type": "raise", "instanceID": "order-1", "event": "approval", "data": {"approved": true}}
    {"type": "terminate", "instanceID": "order-1", "output": "cancelled"}
    {"type": "suspend", "instanceID": "order-1"}
    {"type": "resume", "instanceID": "order-1"}
    {"type": "purge", "instanceID": "order-1"}

A ``streams`` processor turns each into the same inbox record ``WorkflowClient`` writes, in
the transaction that also commits the consumed offsets, so every command reaches the inbox
exactly once. A command that cannot be understood goes to ``{prefix}.dlq`` with the reason
in the ``streams.error`` header. ``parse_command`` is the pure part and holds every rule.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from engine.core.clock import now_utc
from engine.core.history import (
    EventRaised,
    ExecutionResumed,
    ExecutionStarted,
    ExecutionSuspended,
    ExecutionTerminated,
    HistoryEvent,
    PurgeRequested,
    validate_event_name,
    validate_instance_id,
)
from engine.core.partitioner import partition_for
from engine.core.payload import PayloadTooLarge, check_size
from engine.state.codec import encode_event
from engine.state.config import Settings
from engine.state.topics import DLQ, INBOX
from streams.handler import Batch
from streams.processor import ProcessorConfig
from streams.topics import DAY_MS, TopicSpec

COMMANDS = "commands"
COMMAND_TYPES = ("start", "raise", "terminate", "suspend", "resume", "purge")
# Workflow names are registry keys and travel in every status record; 256 is generous.
_WORKFLOW_NAME_MAX = 256

_FIELDS: dict[str, frozenset[str]] = {
    "start": frozenset({"type", "instanceID", "workflow", "input", "startAt"}),
    "raise": frozenset({"type", "instanceID", "event", "data"}),
    "terminate": frozenset({"type", "instanceID", "output", "reason", "recursive"}),
    "suspend": frozenset({"type", "instanceID", "reason"}),
    "resume": frozenset({"type", "instanceID", "reason"}),
    "purge": frozenset({"type", "instanceID"}),
}


class MalformedCommand(ValueError):
    """A record on the commands topic is not a valid command; it goes to the dead-letter topic."""


def parse_command(value: bytes | None, key: bytes | None, *, max_payload_bytes: int,
                  now: datetime | None = None, new_instance_id: Callable[[], str] | None = None) -> HistoryEvent:
    """Turn one commands-topic record into the inbox ``HistoryEvent`` it asks for.

    The instance ID is the ``instanceID`` field, else the record key (UTF-8); when both are
    there they must agree. A ``start`` with neither gets a fresh ID. Unknown fields are
    refused, so a misspelt ``instanceId`` is an error rather than a start under a new ID.

    Args:
        value: The record value, a JSON object.
        key: The record key, or None.
        max_payload_bytes: The largest ``input``, ``data``, ``output`` or ``reason`` (UTF-8 JSON text).
        now: The event's timestamp (default: the wall clock).
        new_instance_id: Makes the ID of a ``start`` without one (default: a random UUID, hex).

    Raises:
        MalformedCommand: The record is not valid JSON or not a valid command; the message says why.
    """
    command = _json_object(value)
    kind = command.get("type")
    if not isinstance(kind, str) or kind not in _FIELDS:
        raise MalformedCommand(f"unknown command type {kind!r}: use one of {', '.join(COMMAND_TYPES)}")
    unknown = sorted(set(command) - _FIELDS[kind])
    if unknown:
        raise MalformedCommand(f"{kind} command has unknown field(s) {', '.join(unknown)}: "
                               f"it takes {', '.join(sorted(_FIELDS[kind] - {'type'}))}")
    instance_id = _instance_id(command, key, kind, new_instance_id)
    when = now or now_utc()

    def payload(name: str) -> str | None:
        return _payload(command, name, max_payload_bytes)

    event: Any
    if kind == "start":
        event = ExecutionStarted(_workflow_name(command.get("workflow")), payload("input"), None,
                                 _start_at(command.get("startAt")))
    elif kind == "raise":
        name = command.get("event")
        try:
            validate_event_name(name)  # type: ignore[arg-type]
        except ValueError as err:
            raise MalformedCommand(f"raise command: {err}") from None
        event = EventRaised(name, payload("data"))  # type: ignore[arg-type]
    elif kind == "terminate":
        recursive = command.get("recursive", True)
        if not isinstance(recursive, bool):
            raise MalformedCommand(f"terminate command: recursive must be true or false, got {recursive!r}")
        event = ExecutionTerminated(_reason(command, max_payload_bytes), payload("output"), recursive)
    elif kind == "suspend":
        event = ExecutionSuspended(_reason(command, max_payload_bytes))
    elif kind == "resume":
        event = ExecutionResumed(_reason(command, max_payload_bytes))
    else:
        event = PurgeRequested()
    # An empty execution ID: the runtime allocates one on a start and ignores it otherwise.
    return HistoryEvent(instance_id, "", -1, when, event)


def _json_object(value: bytes | None) -> dict[str, Any]:
    if value is None:
        raise MalformedCommand("the record has no value (a tombstone); send a JSON object")
    try:
        command = json.loads(value, parse_constant=_refuse_constant)
    except (ValueError, UnicodeDecodeError) as err:
        raise MalformedCommand(f"the value is not JSON ({err}); send a JSON object such as "
                               '{"type": "start", "workflow": "...", "instanceID": "..."}') from None
    if not isinstance(command, dict):
        raise MalformedCommand(f"the value is JSON {type(command).__name__}, not an object; send a JSON object")
    return command


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _instance_id(command: dict[str, Any], key: bytes | None, kind: str,
                 new_instance_id: Callable[[], str] | None) -> str:
    from_key: str | None = None
    if key is not None:
        try:
            from_key = key.decode()
        except UnicodeDecodeError:
            raise MalformedCommand(f"the record key {key!r} is not UTF-8; use the instance ID as the key") from None
    if "instanceID" in command:
        instance_id = command["instanceID"]
        if from_key is not None and from_key != instance_id:
            raise MalformedCommand(f"the record key {from_key!r} and instanceID {instance_id!r} differ; "
                                   "key each command by its instance ID")
    elif from_key is not None:
        instance_id = from_key
    elif kind == "start":
        instance_id = (new_instance_id or _random_id)()
    else:
        raise MalformedCommand(f"{kind} command needs instanceID (or the instance ID as the record key)")
    try:
        return validate_instance_id(instance_id)
    except ValueError as err:
        raise MalformedCommand(str(err)) from None


def _random_id() -> str:
    return uuid.uuid4().hex


def _workflow_name(name: Any) -> str:
    if not isinstance(name, str) or not 0 < len(name) <= _WORKFLOW_NAME_MAX:
        raise MalformedCommand(f"start command needs workflow, the registered workflow name "
                               f"(1 to {_WORKFLOW_NAME_MAX} characters), got {name!r}")
    return name


def _start_at(value: Any) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        moment = None
    if moment is None:
        raise MalformedCommand(f"start command: startAt must be an ISO 8601 time such as "
                               f"2030-01-01T09:00:00Z, got {value!r}")
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _payload(command: dict[str, Any], name: str, limit: int) -> str | None:
    value = command.get(name)
    if value is None:
        return None
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    _check_size(text, name, limit)
    return text


def _reason(command: dict[str, Any], limit: int) -> str | None:
    reason = command.get("reason")
    if reason is None:
        return None
    if not isinstance(reason, str):
        raise MalformedCommand(f"reason must be a string, got {type(reason).__name__}")
    _check_size(reason, "reason", limit)
    return reason


def _check_size(text: str, name: str, limit: int) -> None:
    try:
        check_size(text, name, limit)
    except PayloadTooLarge as err:
        raise MalformedCommand(str(err)) from None


def commands_topic(settings: Settings) -> TopicSpec:
    """``{prefix}.commands``: the door re-partitions onto the inbox, so its partition count is free."""
    return TopicSpec(settings.topic(COMMANDS), settings.partitions, {"retention.ms": str(7 * DAY_MS)},
                     settings.replication_factor, co_partitioned=False)


class CommandsDoor:
    """The handler of the commands processor (see ``streams.processor.Handler``).

    The runtime hosts it beside the orchestrator (``engine.runtime.hosted``).

    Args:
        settings: Topics, identity and the payload limit.
        inbox_partitions: The inbox's partition count, for placing each instance's events.
    """

    def __init__(self, settings: Settings, inbox_partitions: int) -> None:
        self.settings = settings
        self.inbox = settings.topic(INBOX)
        self.inbox_partitions = inbox_partitions

    def processor_config(self) -> ProcessorConfig:
        return ProcessorConfig(
            group_id=f"{self.settings.app_prefix}.{COMMANDS}",
            input_topic=self.settings.topic(COMMANDS),
            changelog_topic=None,  # stateless: the consumed offsets are all it keeps
            dlq_topic=self.settings.topic(DLQ),
            state_dir=self.settings.state_dir / COMMANDS,
            process_id=self.settings.process_id,
            client=self.settings.client(),
        )

    # -- the streams handler ------------------------------------------------------------

    def decode(self, topic: str, key: bytes | None, value: bytes | None) -> HistoryEvent:
        return parse_command(value, key, max_payload_bytes=self.settings.max_payload_bytes)

    def process(self, batch: Batch) -> None:
        partitions = self.inbox_partitions
        for record in batch.records:
            event: HistoryEvent = record.value
            key = event.instance_id.encode()
            # Explicitly murmur2, whatever partitioner the client settings name: the
            # orchestrator owns an instance in exactly this partition.
            batch.emit(self.inbox, key, encode_event(event), partition=partition_for(key, partitions))
