"""``txn_rate``: transactions per second the broker commits, for one transactional producer and for N.

Each loop is what one orchestrator turn asks of the broker, without the orchestrator: begin,
``RECORDS_PER_TXN`` records of ``RECORD_BYTES`` to a partition of its own, the consumed
offsets added (KIP-447, to a group of its own), commit. Nothing is consumed (the offsets
only grow), so a loop waits on nothing but the broker. The same loop runs twice in one run:
confluent-kafka's producer called directly (``kafka-raw``) and this project's
``TransactionalWriter`` (``kwf``: its error handling, and the thread that bounds
``send_offsets_to_transaction``), with the runtime's producer settings. N producers are N
threads of one process (librdkafka does the I/O on threads of its own).

Reported for each client and number of producers: committed transactions per second, and
the CPU the broker processes used per transaction when they run on this machine
(``bench.broker_cpu``; a shared broker's background rate, sampled before and after, taken
off); on a replicated cluster that is every node's share of each commit.

    python -m bench.txn_rate [--producers 1,4,16] [--seconds 10]
"""

from __future__ import annotations

import argparse
import os
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from bench.broker_cpu import background_cores, broker_pids, total_cpu_seconds
from bench.common import broker, delete_prefix, emit, note
from streams.topics import TopicSpec, ensure_topics
from streams.transaction import TransactionalWriter

WORKLOAD = "txn_rate"
# A turn writes a history event, a state changelog record, a status and a task or two.
RECORDS_PER_TXN = 4
# A history event of a small step is 100-200 bytes of Avro.
RECORD_BYTES = 150
SECONDS = 10.0
PRODUCERS = (1, 4, 16)
# One partition per producer, as each orchestrator writes the partitions it owns.
PARTITIONS = max(PRODUCERS)

# One transaction: begin, produce, add the offset given, commit.
Turn = Callable[[int], None]


def producer_settings(bootstrap: str, transactional_id: str) -> dict[str, Any]:
    """The runtime's producer settings (streams.processor.ProcessorConfig.producer_settings)."""
    return {"bootstrap.servers": bootstrap, "transactional.id": transactional_id, "linger.ms": 5, "acks": "all",
            "compression.type": "zstd", "partitioner": "murmur2_random", "transaction.timeout.ms": 60000}


def group_metadata(bootstrap: str, group: str) -> tuple[Consumer, Any]:
    """The consumer group metadata a transaction's offsets are committed for (never joined)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    return consumer, consumer.consumer_group_metadata()


def raw_loop(bootstrap: str, topic: str, n: int) -> tuple[Turn, Consumer]:
    """Loop ``n`` through confluent-kafka's producer; its turn, and the consumer to close after."""
    producer = Producer(producer_settings(bootstrap, f"{topic}-raw-{n}"))
    producer.init_transactions(60)
    consumer, metadata = group_metadata(bootstrap, f"{topic}-raw-{n}")
    value = os.urandom(RECORD_BYTES)

    def turn(offset: int) -> None:
        producer.begin_transaction()
        for _ in range(RECORDS_PER_TXN):
            producer.produce(topic, value, b"k", n)
        producer.send_offsets_to_transaction([TopicPartition(topic, n, offset)], metadata, 30)
        producer.commit_transaction(30)

    return turn, consumer


def kwf_loop(bootstrap: str, topic: str, n: int) -> tuple[Turn, Consumer]:
    """Loop ``n`` through this project's TransactionalWriter; its turn, and the consumer to close after."""
    writer = TransactionalWriter(producer_settings(bootstrap, f"{topic}-kwf-{n}"))
    writer.init()
    consumer, metadata = group_metadata(bootstrap, f"{topic}-kwf-{n}")
    value = os.urandom(RECORD_BYTES)

    def turn(offset: int) -> None:
        writer.begin()
        for _ in range(RECORDS_PER_TXN):
            writer.produce(topic, b"k", value, n)
        writer.commit([TopicPartition(topic, n, offset)], metadata)

    return turn, consumer


def measure(bootstrap: str, topic: str, client: str, producers: int, seconds: float) -> None:
    """Run ``producers`` loops of ``client`` for ``seconds``; emit their rate and the broker's CPU."""
    make = raw_loop if client == "kafka-raw" else kwf_loop
    loops = [make(bootstrap, topic, n) for n in range(producers)]
    for turn, _ in loops:
        turn(1)  # the coordinators' first answers are not measured
    counts = [0] * producers
    start = threading.Barrier(producers + 1)

    def run(n: int) -> None:
        start.wait()
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            counts[n] += 1
            loops[n][0](counts[n] + 1)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(producers)]
    for thread in threads:
        thread.start()
    pids = broker_pids(bootstrap)
    background = background_cores([pids])[0]
    cpu_before = total_cpu_seconds(pids)
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    cpu = total_cpu_seconds(pids) - cpu_before
    background = (background + background_cores([pids])[0]) / 2
    net_cpu = cpu - background * elapsed
    for _, consumer in loops:
        consumer.close()
    total = sum(counts)
    label = f"{WORKLOAD}-{producers}p"
    emit(label, client, "txn_per_s", total / elapsed, "txn/s")
    message = f"{client}, {producers} producers: {total / elapsed:.0f} transactions/s"
    if pids:
        emit(label, client, "broker_cpu_ms_per_txn", net_cpu * 1000 / total, "ms")
        emit(label, client, "broker_cpu_ms_per_txn_gross", cpu * 1000 / total, "ms")
        emit(label, client, "background_cores", background, "cores")
        message += (f", {net_cpu * 1000 / total:.2f} ms of broker CPU each ({cpu * 1000 / total:.2f} ms gross, "
                    f"background {background:.2f} cores, {len(pids)} broker processes)")
    note(message)


def run(bootstrap: str, *, producers: tuple[int, ...] = PRODUCERS, seconds: float = SECONDS) -> None:
    prefix = f"bench-{WORKLOAD}-{uuid.uuid4().hex[:8]}"
    topic = f"{prefix}.out"
    ensure_topics(AdminClient({"bootstrap.servers": bootstrap}), [TopicSpec(topic, max(PARTITIONS, *producers))])
    try:
        for count in producers:
            for client in ("kafka-raw", "kwf"):
                measure(bootstrap, topic, client, count, seconds)
    finally:
        delete_prefix(bootstrap, prefix)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.txn_rate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--producers", default=",".join(map(str, PRODUCERS)), help="comma-separated producer counts")
    parser.add_argument("--seconds", type=float, default=SECONDS)
    parser.add_argument("--broker-warm-up", type=float, default=30.0, help="longest broker warm-up in seconds")
    args = parser.parse_args()
    with broker(args.broker_warm_up) as bootstrap:
        run(bootstrap, producers=tuple(int(n) for n in args.producers.split(",") if n.strip()), seconds=args.seconds)


if __name__ == "__main__":
    main()
