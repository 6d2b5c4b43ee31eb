"""``ceiling``: what plain confluent-kafka does with transactions on the same broker.

The orchestrator's cycle without the orchestrator: a read_committed consumer and a
transactional producer, each transaction carrying the consumed offsets (KIP-447). Records
are ``RECORD_BYTES`` long, the size of our history events.

* ``txn_roundtrips_per_s``: one record in flight. Each turn consumes it, produces the next
  one to the same partition in a transaction, commits, and waits until it can read it:
  the fastest a sequence of dependent steps (a chain) can go through Kafka transactions.
* ``records_per_s``: a pre-filled topic consumed in batches of up to ``BATCH_RECORDS``, one
  transaction per batch, every record produced once to an output topic: the most records
  one Python process moves through transactions.

    python -m bench.ceiling [--records 100000] [--seconds 5]
"""

from __future__ import annotations

import argparse
import os
import time
import uuid

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from bench.common import broker, delete_prefix, emit, note, pingpong, progress_bar
from streams.topics import TopicSpec, ensure_topics

WORKLOAD = "ceiling"
PARTITIONS = 8
# A history event of a small step is 100-200 bytes of Avro.
RECORD_BYTES = 150
# Same bound as the orchestrator's batches.
BATCH_RECORDS = 500
RECORDS = 100_000
ROUNDTRIP_SECONDS = 5.0
# A run that takes this long is broken, not slow.
TIMEOUT_S = 300.0


def _consumer(bootstrap: str, group: str) -> Consumer:
    return Consumer({
        "bootstrap.servers": bootstrap, "group.id": group, "isolation.level": "read_committed",
        "enable.auto.commit": False, "auto.offset.reset": "earliest", "fetch.wait.max.ms": 5,
    })


def roundtrips(bootstrap: str, prefix: str, seconds: float) -> float:
    """Dependent transactions per second, one record in flight."""
    topic = f"{prefix}.pingpong"
    ensure_topics(AdminClient({"bootstrap.servers": bootstrap}), [TopicSpec(topic, PARTITIONS)])
    began = time.perf_counter()
    turns = pingpong(bootstrap, topic, seconds, os.urandom(RECORD_BYTES))
    return turns / (time.perf_counter() - began)


def throughput(bootstrap: str, prefix: str, records: int) -> float:
    """Records per second through consume, transactional produce and offset commit."""
    source, sink = f"{prefix}.in", f"{prefix}.out"
    ensure_topics(AdminClient({"bootstrap.servers": bootstrap}),
                  [TopicSpec(source, PARTITIONS), TopicSpec(sink, PARTITIONS)])
    filler = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
    for n in range(records):
        while True:
            try:
                filler.produce(source, os.urandom(RECORD_BYTES), f"key-{n % 5000}".encode())
                break
            except BufferError:
                filler.poll(0.05)
    filler.flush(60)
    consumer = _consumer(bootstrap, f"{prefix}.throughput")
    consumer.subscribe([source])
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": f"{prefix}-throughput", "linger.ms": 5})
    producer.init_transactions(60)
    moved = 0
    began: float | None = None
    deadline = time.monotonic() + TIMEOUT_S
    with progress_bar() as bar:
        task = bar.add_task("ceiling: transactional records", total=records)
        while moved < records:
            if time.monotonic() > deadline:
                raise TimeoutError(f"moved {moved} of {records} records in {TIMEOUT_S:.0f} s")
            messages = consumer.consume(BATCH_RECORDS, 0.02)
            messages = [m for m in messages if m.error() is None]
            if not messages:
                continue
            if began is None:
                began = time.perf_counter()  # from the first batch: group join is not measured
            producer.begin_transaction()
            last: dict[int, int] = {}
            for message in messages:
                while True:
                    try:
                        producer.produce(sink, message.value(), message.key(), message.partition())
                        break
                    except BufferError:
                        producer.poll(0.01)
                last[message.partition()] = message.offset()
            offsets = [TopicPartition(source, p, o + 1) for p, o in last.items()]
            producer.send_offsets_to_transaction(offsets, consumer.consumer_group_metadata(), 30)
            producer.commit_transaction(30)
            moved += len(messages)
            bar.update(task, completed=moved)
    assert began is not None
    elapsed = time.perf_counter() - began
    consumer.close()
    return moved / elapsed


def run(bootstrap: str, *, records: int = RECORDS, seconds: float = ROUNDTRIP_SECONDS) -> None:
    prefix = f"bench-ceiling-{uuid.uuid4().hex[:8]}"
    try:
        rate = roundtrips(bootstrap, prefix, seconds)
        note(f"ceiling: {rate:.0f} dependent transactions/s ({1000 / rate:.1f} ms each)")
        emit(WORKLOAD, "kafka-raw", "txn_roundtrips_per_s", rate, "txn/s")
        emit(WORKLOAD, "kafka-raw", "records_per_s", throughput(bootstrap, prefix, records), "records/s")
    finally:
        delete_prefix(bootstrap, prefix)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ceiling", description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=RECORDS)
    parser.add_argument("--seconds", type=float, default=ROUNDTRIP_SECONDS)
    args = parser.parse_args()
    with broker() as bootstrap:
        run(bootstrap, records=args.records, seconds=args.seconds)


if __name__ == "__main__":
    main()
