"""A restore begins reading a store's changelog before the log's offsets are known (while
the previous owner is fenced). A store that does not match the log, here one ahead of it as
after the topic was recreated, must not be read into from elsewhere meanwhile: it is wiped
once the offsets are known and rebuilt from the log's start."""

from __future__ import annotations

import time
from pathlib import Path

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from streams.restore import ChangelogRestorer, RestoreReport
from streams.store import PartitionStore, StoreBatch
from streams.topics import TopicSpec, ensure_topics

# Reading five records from a local broker takes well under a second.
WAIT_S = 30.0


def put(batch: StoreBatch, _store: PartitionStore, key: bytes | None, value: bytes | None) -> None:
    assert key is not None and value is not None
    batch.put(key, value)


def test_a_store_ahead_of_its_changelog_is_rebuilt_from_the_start(
        kafka_bootstrap: str, topic_prefix: str, tmp_path: Path) -> None:
    topic = f"{topic_prefix}.history"
    ensure_topics(AdminClient({"bootstrap.servers": kafka_bootstrap}), [TopicSpec(topic, 1)])
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for i in range(5):
        producer.produce(topic, key=f"k{i}".encode(), value=f"v{i}".encode(), partition=0)
    assert producer.flush(10) == 0
    store = PartitionStore.open(tmp_path / "0")
    stale = store.batch()
    stale.put(b"stale", b"x")
    store.write(stale, changelog_offset=100)
    restorer = ChangelogRestorer({"bootstrap.servers": kafka_bootstrap}, topic)
    try:
        restorer.begin({0: store})
        for _ in range(10):  # offset 101 is out of range: nothing is read, nor finished
            assert restorer.step(put) == []
            time.sleep(0.1)
        assert store.changelog_offset == 100
        done: list[RestoreReport] = restorer.set_ends(restorer.watermarks([0]))
        deadline = time.monotonic() + WAIT_S
        while restorer.restoring:
            assert time.monotonic() < deadline, "the rebuilt store never reached the log's end"
            done += restorer.step(put)
            time.sleep(0.05)
        assert [(report.partition, report.records) for report in done] == [(0, 5)]
        assert store.get(b"stale") is None
        assert [store.get(f"k{i}".encode()) for i in range(5)] == [f"v{i}".encode() for i in range(5)]
        assert store.changelog_offset == 4
    finally:
        restorer.close()
        store.close()
