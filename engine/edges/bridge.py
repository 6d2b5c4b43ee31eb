"""The pub/sub bridge: records of an external topic become external events of instances.

A route names the topic (``payments``), the event (``payment_received``) and where the
instance ID is: the record key, or a field of the JSON payload (``order.id``). Payloads
are JSON, or Avro single-object encoded with a given schema. Each record becomes one
``EventRaised`` on the inbox in the same transaction as its consumed offset: exactly
once. A record that names no instance goes to the dead-letter topic with the reason.

Whether the instance exists is not the bridge's to decide: a start may be on the inbox
and not yet in any status, and only the orchestrator, reading the inbox in order, knows.
So every event goes to the inbox carrying where it came from (the dead-letter source
headers), and the orchestrator sends the ones for unknown instances to the dead-letter
topic with the reason.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.core.clock import now_utc
from engine.core.history import EventRaised, HistoryEvent, validate_instance_id
from engine.core.partitioner import partition_for
from engine.core.payload import check_size
from engine.state.codec import encode_event
from engine.state.config import Settings
from engine.state.topics import DLQ, INBOX
from streams import dlq
from streams.handler import Batch, Headers, Record
from streams.processor import ProcessorConfig
from streams.serde import AvroSerde, read_schema_json


@dataclass(frozen=True)
class BridgeRoute:
    """Where events come from and which instance each one is for.

    Attributes:
        topic: The external topic, e.g. ``payments``.
        event_name: The event raised, e.g. ``payment_received``.
        instance_id_field: Dotted path of the instance ID in the JSON payload
            (``order.id``); None takes the record key.
        avro_schema: An ``.avsc`` file when payloads are Avro single-object encoded.
    """

    topic: str
    event_name: str
    instance_id_field: str | None = None
    avro_schema: Path | None = None


@dataclass(frozen=True)
class Routed:
    """One external record, decoded: the instance it is for and the event data."""

    instance_id: str
    data: Any
    raw: bytes | None


class PubSubBridge:
    """The ``streams`` handler of one route."""

    def __init__(self, settings: Settings, route: BridgeRoute, partitions: int) -> None:
        self.settings = settings
        self.route = route
        self.partitions = partitions
        self.inbox = settings.topic(INBOX)
        self.dlq = settings.topic(DLQ)
        self._serde = None if route.avro_schema is None else AvroSerde(read_schema_json(route.avro_schema))

    def processor_config(self) -> ProcessorConfig:
        return ProcessorConfig(
            group_id=f"{self.settings.app_prefix}.bridge.{self.route.topic}",
            input_topic=self.route.topic,
            changelog_topic=None,
            dlq_topic=self.dlq,
            state_dir=self.settings.state_dir / "bridge",
            process_id=self.settings.process_id,
            client=self.settings.client(),
        )

    def decode(self, topic: str, key: bytes | None, value: bytes | None) -> Routed:
        if value is None:
            raise ValueError("the record has no value")
        data = self._serde.decode(value) if self._serde is not None else _json(value)
        field = self.route.instance_id_field
        if field is None:
            if not key:
                raise ValueError("the record has no key, and the route takes the instance ID from the key")
            instance_id = key.decode("utf-8", errors="replace")
        else:
            instance_id = _field(data, field)
        validate_instance_id(instance_id)
        # Refused here, so an oversized record goes to the dead-letter topic, not to history.
        check_size(json.dumps(data, default=str), "event data", self.settings.max_payload_bytes)
        return Routed(instance_id, data, value)

    def process(self, batch: Batch) -> None:
        now = now_utc()
        for record in batch.records:
            routed: Routed = record.value
            event = EventRaised(self.route.event_name, json.dumps(routed.data, default=str))
            key = routed.instance_id.encode()
            batch.emit(self.inbox, key, encode_event(HistoryEvent(routed.instance_id, "", -1, now, event)),
                       partition=partition_for(key, self.partitions), headers=source_headers(record))



def source_headers(record: Record) -> Headers:
    """Where an event came from, in the dead-letter headers' terms, for the orchestrator to
    dead-letter it with if its instance turns out not to exist."""
    return [
        (dlq.SOURCE_TOPIC, record.topic.encode()),
        (dlq.SOURCE_PARTITION, str(record.partition).encode()),
        (dlq.SOURCE_OFFSET, str(record.offset).encode()),
    ]


def _json(value: bytes) -> Any:
    try:
        return json.loads(value)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"the payload is not valid JSON: {err}") from err


def _field(data: Any, path: str) -> str:
    current = data
    for part in path.split("."):
        if not isinstance(current, dict) or part not in current:
            raise ValueError(f"the payload has no field {path!r} naming the instance")
        current = current[part]
    if not isinstance(current, str | int):
        raise ValueError(f"field {path!r} is {type(current).__name__}, not an instance ID")
    return str(current)
