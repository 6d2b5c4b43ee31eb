"""The wire contract as a producer in another language sees it: only fastavro, confluent-kafka
and the ``.avsc`` files, no ``engine`` or ``streams`` code.

The CRC-64-AVRO fingerprint is computed here from the Avro specification's algorithm, not
taken from a library, so these tests check the byte layout ``schemas/README.md`` promises.
"""

from __future__ import annotations

import io
import struct
import time
import uuid
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import fastavro
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from fastavro.schema import load_schema, to_parsing_canonical_form

SCHEMAS = Path(__file__).resolve().parents[3] / "schemas"
MARKER = b"\xc3\x01"
# The Avro spec's CRC-64-AVRO polynomial, which is also the fingerprint of empty input.
EMPTY = 0xC15D213AA4D7A795
# Records of one test arrive within seconds on an idle broker; the bound only stops a hang.
WAIT_S = 90.0


def _table() -> list[int]:
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (EMPTY & -(fp & 1))
        table.append(fp & 0xFFFFFFFFFFFFFFFF)
    return table


_TABLE = _table()


def crc64_avro(data: bytes) -> int:
    fp = EMPTY
    for byte in data:
        fp = (fp >> 8) ^ _TABLE[(fp ^ byte) & 0xFF]
    return fp


@cache
def schema(full_name: str) -> Any:
    """A schema from ``schemas/``, its named types resolved from the sibling files."""
    return load_schema(str(SCHEMAS / f"{full_name}.avsc"))


@cache
def header(full_name: str) -> bytes:
    """Marker plus the little-endian fingerprint of the schema's parsing canonical form."""
    canonical = to_parsing_canonical_form(schema(full_name)).encode()
    return MARKER + struct.pack("<Q", crc64_avro(canonical))


def encode(full_name: str, record: dict[str, Any]) -> bytes:
    out = io.BytesIO()
    out.write(header(full_name))
    fastavro.schemaless_writer(out, schema(full_name), record)
    return out.getvalue()


def decode(full_name: str, data: bytes) -> dict[str, Any]:
    expected = header(full_name)
    assert data[:10] == expected, f"header {data[:10].hex()} is not {full_name}'s {expected.hex()}"
    return fastavro.schemaless_reader(io.BytesIO(data[10:]), schema(full_name), return_record_name=True)


def history_event(instance_id: str, kind: str, body: dict[str, Any]) -> bytes:
    """A proposed inbox record: sequence -1, empty execution ID, the union branch ``kwf.<kind>``."""
    return encode("kwf.HistoryEvent", {
        "instance_id": instance_id,
        "execution_id": "",
        "sequence": -1,
        "timestamp": int(time.time() * 1000),
        "event": (f"kwf.{kind}", body),
    })


def producer(bootstrap: str) -> Producer:
    # murmur2_random: the Java client's partitioner, so the runtime finds the record where it looks.
    return Producer({"bootstrap.servers": bootstrap, "partitioner": "murmur2_random", "enable.idempotence": True})


def send(p: Producer, topic: str, key: str, value: bytes) -> None:
    p.produce(topic, key=key.encode(), value=value)
    assert p.flush(30) == 0, f"record for {key} not delivered"


class TopicReader:
    """Reads every partition of a topic from the beginning, read_committed, without a group."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.consumer = Consumer({
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{uuid.uuid4().hex}",  # never joins: partitions are assigned by hand
            # The runtime writes in transactions: see only committed records.
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        })
        partitions = self.consumer.list_topics(topic, timeout=30).topics[topic].partitions
        self.consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])

    def batch(self) -> list[Any]:
        """The records that arrived within half a second (possibly none)."""
        messages = self.consumer.consume(100, 0.5)
        for message in messages:
            assert message.error() is None, message.error()
        return messages

    def close(self) -> None:
        self.consumer.close()


class StatusReader(TopicReader):
    """A plain consumer of ``{prefix}.status``: the latest WorkflowStatus per instance."""

    def __init__(self, bootstrap: str, prefix: str) -> None:
        super().__init__(bootstrap, f"{prefix}.status")
        self.seen: dict[str, list[dict[str, Any] | None]] = {}
        self._cursor: dict[str, int] = {}

    def wait_for(self, instance_id: str, done: Callable[[dict[str, Any] | None], bool]) -> dict[str, Any] | None:
        """The next status of ``instance_id`` (None for the tombstone) that ``done`` accepts.

        Statuses are matched in the order they were written, each at most once, so a test
        can wait for RUNNING, SUSPENDED and RUNNING again.
        """
        deadline = time.monotonic() + WAIT_S
        while True:
            statuses = self.seen.get(instance_id, [])
            for index in range(self._cursor.get(instance_id, 0), len(statuses)):
                if done(statuses[index]):
                    self._cursor[instance_id] = index + 1
                    return statuses[index]
            if time.monotonic() > deadline:
                raise AssertionError(f"no matching status of {instance_id} within {WAIT_S} s; "
                                     f"saw {self.seen.get(instance_id)}")
            for message in self.batch():
                value = message.value()
                status = None if value is None else decode("kwf.WorkflowStatus", value)
                self.seen.setdefault(message.key().decode(), []).append(status)

    def wait_for_status(self, instance_id: str, runtime_status: str) -> dict[str, Any]:
        status = self.wait_for(instance_id, lambda s: s is not None and s["runtime_status"] == runtime_status)
        assert status is not None
        return status

    def wait_for_tombstone(self, instance_id: str) -> None:
        self.wait_for(instance_id, lambda s: s is None)
