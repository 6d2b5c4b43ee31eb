"""Exactly-once stateful throughput: the streams processor against a bare confluent-kafka loop.

Both read the same input (``RECORDS`` JSON increments over ``KEYS`` accounts, 8 partitions)
and run the same running-totals job with the same transactions: one Kafka transaction per
poll batch of up to 500 records, each record emitting its new total to a changelog topic
and to an output topic, the consumed offsets committed in the transaction (KIP-447).

* ``kwf``: ``streams.processor.Processor`` with ``examples.running_totals.RunningTotals``,
  state in RocksDB (read per key, written after each commit with the changelog offset).
* ``kafka-raw``: the loop written by hand with confluent-kafka, totals in a Python dict,
  no RocksDB, no framework.

Prints one JSON line per system on stdout; progress on stderr. The clock starts when the
partitions are assigned (after group join and restore) and stops when every record's
transaction has committed.

    python -m bench.streams [--records 200000]
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from examples.running_totals import RunningTotals
from streams.kafka_config import client_settings
from streams.processor import Batch, Processor, ProcessorConfig
from streams.store import PartitionStore, StoreBatch
from streams.topics import TopicSpec, delete_topics_with_prefix, ensure_topics

RECORDS = 200_000
KEYS = 10_000
PARTITIONS = 8
# Same batch bound for both systems: records per transaction.
BATCH_RECORDS = 500
# Same batch time bound for both systems.
BATCH_MS = 20
# A run that takes this long is broken, not slow.
RUN_TIMEOUT_S = 600.0
# Rounds per system, alternated; the median is reported: one run is at the mercy of the
# broker's log flushes and of other work on a shared machine.
ROUNDS = 3


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def create_topics(client: dict[str, str], prefix: str, rounds: int) -> None:
    names = ["in"]
    for round_ in range(rounds):
        names += [f"kwf{round_}.changelog", f"kwf{round_}.out", f"kwf{round_}.dlq", f"raw{round_}.changelog",
                  f"raw{round_}.out"]
    ensure_topics(AdminClient(client), [TopicSpec(f"{prefix}.{name}", PARTITIONS) for name in names])


def produce_input(client: dict[str, str], topic: str, records: int) -> None:
    rng = random.Random(1)
    producer = Producer({**client, "linger.ms": 50, "partitioner": "murmur2_random"})
    for _ in range(records):
        value = json.dumps({"amount": rng.randint(1, 9)}).encode()
        key = f"acct-{rng.randrange(KEYS)}".encode()
        while True:
            try:
                producer.produce(topic, value, key)
                break
            except BufferError:
                producer.poll(0.05)
    producer.flush(60)


class CountingTotals(RunningTotals):
    """RunningTotals that counts the records whose transaction committed."""

    def __init__(self, output_topic: str, target: int) -> None:
        super().__init__(output_topic)
        self.committed = 0
        self.target = target
        self.done = threading.Event()

    def apply_changelog(
        self, store_batch: StoreBatch, store: PartitionStore, key: bytes | None, value: bytes | None, decoded: Any
    ) -> None:
        super().apply_changelog(store_batch, store, key, value, decoded)
        if decoded is not None:
            self.committed += 1
            if self.committed >= self.target:
                self.done.set()

    def process(self, batch: Batch) -> None:
        super().process(batch)


def run_kwf(client: dict[str, str], prefix: str, round_: int, records: int, state_dir: Path,
            profile: Path | None = None) -> float:
    """Seconds for the streams processor to commit ``records`` records (profiled into ``profile``)."""
    handler = CountingTotals(f"{prefix}.kwf{round_}.out", records)
    config = ProcessorConfig(
        group_id=f"{prefix}.kwf{round_}",
        input_topic=f"{prefix}.in",
        changelog_topic=f"{prefix}.kwf{round_}.changelog",
        dlq_topic=f"{prefix}.kwf{round_}.dlq",
        state_dir=state_dir,
        process_id="bench",
        client=client,
        max_batch_records=BATCH_RECORDS,
        max_batch_ms=BATCH_MS,
    )
    processor = Processor(config, handler)

    def run() -> None:
        if profile is None:
            processor.run()
            return
        # cProfile sees only its own thread: profile the processor's loop where it runs.
        profiler = cProfile.Profile()
        profiler.runcall(processor.run)
        profiler.dump_stats(profile)
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("tottime").print_stats(25)

    runner = threading.Thread(target=run, name="kwf-processor", daemon=True)
    runner.start()
    if not processor.ready.wait(RUN_TIMEOUT_S):
        raise RuntimeError("the processor did not get its partitions")
    began = time.monotonic()
    if not handler.done.wait(RUN_TIMEOUT_S):
        raise RuntimeError(f"the processor committed only {handler.committed} of {records} records")
    elapsed = time.monotonic() - began
    processor.stop()
    runner.join(60)
    return elapsed


def run_raw(client: dict[str, str], prefix: str, round_: int, records: int) -> float:
    """Seconds for the same job written with confluent-kafka only (transactional)."""
    output, changelog = f"{prefix}.raw{round_}.out", f"{prefix}.raw{round_}.changelog"
    producer = Producer({**client, "transactional.id": f"{prefix}.raw{round_}", "linger.ms": 5,
                         "partitioner": "murmur2_random"})
    producer.init_transactions()
    consumer = Consumer({**client, "group.id": f"{prefix}.raw{round_}", "isolation.level": "read_committed",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    assigned = threading.Event()
    consumer.subscribe([f"{prefix}.in"], on_assign=lambda c, p: assigned.set())
    totals: dict[bytes, int] = {}
    done = 0
    began = None
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while done < records and time.monotonic() < deadline:
        messages = consumer.consume(BATCH_RECORDS, BATCH_MS / 1000)
        if began is None and assigned.is_set():
            began = time.monotonic()
        if not messages:
            continue
        producer.begin_transaction()
        positions: dict[int, int] = {}
        for message in messages:
            if message.error() is not None:
                continue
            key = message.key()
            total = totals.get(key, 0) + json.loads(message.value())["amount"]
            totals[key] = total
            value = str(total).encode()
            producer.produce(changelog, value, key, message.partition())
            producer.produce(output, value, key)
            positions[message.partition()] = message.offset() + 1
        producer.send_offsets_to_transaction(
            [TopicPartition(f"{prefix}.in", p, o) for p, o in positions.items()], consumer.consumer_group_metadata()
        )
        producer.commit_transaction()
        done += len(messages)
    elapsed = time.monotonic() - (began or time.monotonic())
    consumer.close()
    if done < records:
        raise RuntimeError(f"the raw loop processed only {done} of {records} records")
    return elapsed


def report(system: str, records: int, seconds: float) -> None:
    rate = records / seconds
    print(json.dumps({"workload": "eos-stateful", "system": system, "metric": "records_per_s",
                      "value": round(rate), "unit": "records/s"}), flush=True)
    progress(f"{system}: {records} records in {seconds:.1f} s ({rate:,.0f} records/s)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.streams", description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=RECORDS)
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--profile", type=Path, default=None, help="write cProfile stats of one kwf run here")
    args = parser.parse_args(argv)
    client = client_settings()
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    create_topics(client, prefix, args.rounds)
    progress(f"producing {args.records} input records to {prefix}.in")
    produce_input(client, f"{prefix}.in", args.records)
    state_root = Path(tempfile.mkdtemp(prefix="kwf-bench-"))
    ours: list[float] = []
    raw: list[float] = []
    try:
        for round_ in range(args.rounds):
            raw.append(run_raw(client, prefix, round_, args.records))
            progress(f"round {round_}: kafka-raw {args.records / raw[-1]:,.0f} records/s")
            profile = args.profile if round_ == 0 else None
            ours.append(run_kwf(client, prefix, round_, args.records, state_root / str(round_), profile))
            progress(f"round {round_}: kwf {args.records / ours[-1]:,.0f} records/s")
    finally:
        shutil.rmtree(state_root, ignore_errors=True)
        delete_topics_with_prefix(AdminClient(client), prefix)
    ours_s, raw_s = statistics.median(ours), statistics.median(raw)
    report("kwf", args.records, ours_s)
    report("kafka-raw", args.records, raw_s)
    progress(f"ratio kwf/raw: {raw_s / ours_s:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
