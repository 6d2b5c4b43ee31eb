"""Every producer puts an instance's records in the partition Kafka's Java producer picks:
librdkafka with ``partitioner=murmur2_random``, ``engine.core.partitioner`` and Java's
ConsoleProducer agree on ~200 instance IDs, and ``engine.core.partitioner`` matches Kafka's
published murmur2 vectors.
"""

from __future__ import annotations

import os
import random
import string
import subprocess
import time
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from engine.core.partitioner import murmur2, partition_for
from streams.broker import find_java, resolve_jars
from tests.integration.contract.wire import WAIT_S, TopicReader, producer

REPO = Path(__file__).resolve().parents[3]
# An odd, non-power-of-two count, so a wrong modulus or sign cannot agree by accident.
PARTITIONS = 7
ALPHABET = string.ascii_letters + string.digits + "-_.:"

# Kafka's UtilsTest.testMurmur2 (org.apache.kafka.common.utils).
KAFKA_MURMUR2_VECTORS = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


@pytest.mark.parametrize(("data", "expected"), KAFKA_MURMUR2_VECTORS.items())
def test_murmur2_matches_kafkas_vectors(data: bytes, expected: int) -> None:
    assert murmur2(data) == expected


def test_partition_for_masks_the_sign_bit() -> None:
    # toPositive(-790332482) = 1357151166, and 1357151166 % 10 = 6.
    assert partition_for(b"foobar", 10) == 6


def instance_ids(count: int) -> list[str]:
    """Valid instance IDs of every length class: all four tail lengths, up to the 128 maximum."""
    rng = random.Random(20250301)
    ids = {f"order-{i}" for i in range(40)} | {f"parent:{i}" for i in range(20)}
    while len(ids) < count:
        ids.add("".join(rng.choice(ALPHABET) for _ in range(rng.randint(1, 128))))
    return sorted(ids)


def create_topics(bootstrap: str, names: list[str]) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(n, PARTITIONS, 1) for n in names]).values():
        future.result(timeout=30)


def landed(bootstrap: str, topic: str, count: int) -> dict[str, int]:
    """Where each key's record landed, read back from the topic."""
    reader = TopicReader(bootstrap, topic)
    where: dict[str, int] = {}
    deadline = time.monotonic() + WAIT_S
    try:
        while len(where) < count and time.monotonic() < deadline:
            for message in reader.batch():
                where[message.key().decode()] = message.partition()
    finally:
        reader.close()
    return where


def java_console_produce(bootstrap: str, topic: str, ids: list[str]) -> None:
    jars = resolve_jars(Path(os.environ.get("KWF_HOME", REPO / ".kwf")).resolve())
    result = subprocess.run(
        [find_java(), "-Xmx128m", "-cp", f"{jars}/*", "org.apache.kafka.tools.ConsoleProducer",
         "--bootstrap-server", bootstrap, "--topic", topic,
         "--property", "parse.key=true", "--property", "key.separator=,"],
        input="".join(f"{i},{i}\n" for i in ids), capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]


def test_python_producers_pick_the_java_producers_partition(kafka_bootstrap: str, topic_prefix: str) -> None:
    ids = instance_ids(200)
    java_topic, python_topic = f"{topic_prefix}.java", f"{topic_prefix}.python"
    create_topics(kafka_bootstrap, [java_topic, python_topic])

    java_console_produce(kafka_bootstrap, java_topic, ids)
    by_java = landed(kafka_bootstrap, java_topic, len(ids))
    assert set(by_java) == set(ids)

    p = producer(kafka_bootstrap)  # librdkafka, partitioner=murmur2_random
    for instance_id in ids:
        p.produce(python_topic, key=instance_id.encode(), value=instance_id.encode())
    assert p.flush(30) == 0
    by_librdkafka = landed(kafka_bootstrap, python_topic, len(ids))

    by_engine = {i: partition_for(i.encode(), PARTITIONS) for i in ids}
    assert by_librdkafka == by_java
    assert by_engine == by_java
    assert len(set(by_java.values())) == PARTITIONS  # the keys spread over every partition
