"""Where clients find the HTTP APIs of running runtimes: the compacted ``{prefix}.runtimes`` topic.

A process serving the HTTP API, once its status view is caught up, writes one record
keyed by its process ID: ``{"url", "process_id", "started_at_ms"}`` as JSON; a clean stop
writes a tombstone on that key. A killed process's entry stays until a process with its
ID announces again; clients skip an address that does not answer. The topic holds one
key per process ever announced (compacted), so reading it whole is a read of a handful
of records, whatever the number of instances.
"""

from __future__ import annotations

import json
import logging
import socket
import time
from dataclasses import dataclass
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from engine.state.config import Settings
from engine.state.topics import COMPACTED
from streams.topics import TopicSpec, ensure_topics

log = logging.getLogger("engine.api.runtime_directory")

RUNTIMES = "runtimes"
# A runtime's entry goes out and is read back whole: a short wait bounds a client's
# first answer when the broker is slow, and the client then waits for its own view.
LOOKUP_TIMEOUT_S = 2.0
# Announcing happens once per process; a broker that does not take it in this long is down.
ANNOUNCE_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class RuntimeEntry:
    """One announced HTTP API."""

    process_id: str
    url: str
    started_at_ms: int


def runtimes_topic(settings: Settings) -> TopicSpec:
    # One partition: a client reads every entry, and there are few.
    return TopicSpec(settings.topic(RUNTIMES), 1, dict(COMPACTED), settings.replication_factor,
                     co_partitioned=False)


def advertised_url(settings: Settings, host: str, port: int) -> str:
    """The base URL to announce: ``KWF_ADVERTISED_URL``, else the address listened on (the
    host name when it listens on every address)."""
    if settings.advertised_url:
        return settings.advertised_url.rstrip("/")
    if host in ("", "0.0.0.0", "::"):
        host = socket.gethostname()
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class Announcement:
    """This process's entry in the directory; ``withdraw()`` removes it (a clean stop)."""

    def __init__(self, settings: Settings, url: str) -> None:
        self.topic = settings.topic(RUNTIMES)
        # Without a process ID (not a runtime's settings) the URL is the identity.
        self.key = (settings.process_id or url).encode()
        self.entry = RuntimeEntry(self.key.decode(), url, int(time.time() * 1000))
        ensure_topics(AdminClient(settings.client()), [runtimes_topic(settings)])
        self._producer = Producer(settings.producer())
        self._send(json.dumps(self.entry.__dict__).encode())

    def withdraw(self) -> None:
        try:
            self._send(None)
        except Exception as err:  # a stop goes on: the entry is skipped by clients as a dead address
            log.warning("runtime directory: could not withdraw %s: %s", self.entry.url, err)
        self._producer.close()

    def _send(self, value: bytes | None) -> None:
        self._producer.produce(self.topic, key=self.key, value=value)
        if self._producer.flush(ANNOUNCE_TIMEOUT_S) > 0:
            raise TimeoutError(f"{self.topic}: the broker did not take {self.entry.url}'s entry within "
                               f"{ANNOUNCE_TIMEOUT_S:.0f} s")


def find_runtimes(settings: Settings, timeout: float = LOOKUP_TIMEOUT_S) -> list[RuntimeEntry]:
    """The announced runtimes, the latest started first; [] when none is (or the topic is missing)."""
    topic = settings.topic(RUNTIMES)
    consumer = Consumer({**settings.client(), "group.id": f"{topic}.lookup", "enable.auto.commit": "false",
                         "enable.partition.eof": "true", "fetch.wait.max.ms": "10",
                         "isolation.level": "read_committed"})
    deadline = time.monotonic() + timeout
    entries: dict[bytes, RuntimeEntry] = {}
    try:
        meta = consumer.list_topics(topic, timeout=timeout).topics.get(topic)
        if meta is None or meta.error is not None or not meta.partitions:
            return []
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in meta.partitions])
        open_partitions = set(meta.partitions)
        while open_partitions and time.monotonic() < deadline:
            message = consumer.poll(max(0.0, min(0.1, deadline - time.monotonic())))
            if message is None:
                continue
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    open_partitions.discard(message.partition())
                continue
            _fold(entries, message.key() or b"", message.value())
    except KafkaException as err:
        log.warning("runtime directory: %s unreadable: %s", topic, err)
    finally:
        consumer.close()
    return sorted(entries.values(), key=lambda e: e.started_at_ms, reverse=True)


def _fold(entries: dict[bytes, RuntimeEntry], key: bytes, value: Any) -> None:
    if value is None:
        entries.pop(key, None)
        return
    try:
        fields = json.loads(value)
        entries[key] = RuntimeEntry(str(fields["process_id"]), str(fields["url"]), int(fields["started_at_ms"]))
    except (ValueError, KeyError, TypeError):
        log.warning("runtime directory: skipping an unreadable entry for %r", key)
