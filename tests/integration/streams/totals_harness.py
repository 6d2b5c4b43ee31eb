"""Shared pieces of the processor tests: topics, input, the running-totals subprocess, output checks."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from streams.topics import TopicSpec, ensure_topics

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
PARTITIONS = 8
# A killed member is noticed after this; the broker allows down to 1 s.
SESSION_TIMEOUT_MS = 2000
# Long enough for a test's slowest step on a busy 2-core machine, short enough to fail fast.
WAIT_S = 90.0


@dataclass(frozen=True)
class TotalsTopics:
    input: str
    changelog: str
    output: str
    dlq: str

    @classmethod
    def create(cls, bootstrap: str, prefix: str) -> TotalsTopics:
        topics = cls(f"{prefix}.in", f"{prefix}.changelog", f"{prefix}.out", f"{prefix}.dlq")
        ensure_topics(
            AdminClient({"bootstrap.servers": bootstrap}),
            [TopicSpec(name, PARTITIONS) for name in (topics.input, topics.changelog, topics.output, topics.dlq)],
        )
        return topics


def increments(count: int, keys: int, seed: int) -> list[tuple[bytes, int]]:
    """``count`` (account, amount) pairs over ``keys`` accounts, reproducible from ``seed``."""
    rng = random.Random(seed)
    return [(f"acct-{rng.randrange(keys)}".encode(), rng.randint(1, 9)) for _ in range(count)]


def produce(bootstrap: str, topic: str, records: list[tuple[bytes | None, bytes]]) -> None:
    """Write records in order per key (idempotent producer, murmur2 like the processor)."""
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 20,
                         "partitioner": "murmur2_random"})
    for key, value in records:
        while True:
            try:
                producer.produce(topic, value, key)
                break
            except BufferError:
                producer.poll(0.05)
    assert producer.flush(30) == 0, "input records were not all delivered"


def produce_increments(bootstrap: str, topic: str, pairs: list[tuple[bytes, int]]) -> None:
    produce(bootstrap, topic, [(key, json.dumps({"amount": amount}).encode()) for key, amount in pairs])


def prefix_sums(pairs: list[tuple[bytes, int]]) -> dict[bytes, list[int]]:
    """Per key, the totals the processor must emit, in order."""
    sums: dict[bytes, list[int]] = {}
    for key, amount in pairs:
        seq = sums.setdefault(key, [])
        seq.append((seq[-1] if seq else 0) + amount)
    return sums


class ProcessorProcess:
    """``python -m examples.running_totals`` as a subprocess, with its log in a file."""

    def __init__(self, bootstrap: str, topics: TotalsTopics, group: str, state_dir: Path, process_id: str,
                 log_dir: Path, *extra: str, module: str = "examples.running_totals",
                 env: dict[str, str] | None = None) -> None:
        self.args = [
            sys.executable, "-m", module,
            "--input", topics.input, "--changelog", topics.changelog, "--output", topics.output,
            "--dlq", topics.dlq, "--group", group, "--state-dir", str(state_dir), "--process-id", process_id,
            "--session-timeout-ms", str(SESSION_TIMEOUT_MS), *extra,
        ]
        # This folder too, for test-only handlers such as faulty_totals.
        self.env = {**os.environ, **(env or {}), "KWF_BOOTSTRAP_SERVERS": bootstrap,
                    "PYTHONPATH": os.pathsep.join([str(REPO), str(HERE)])}
        self.log_dir = log_dir
        self.name = process_id
        self.runs = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"{self.name}-{self.runs}.log"

    def start(self) -> ProcessorProcess:
        self.runs += 1
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env=self.env)
        return self

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait: the graceful path."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def logs(self) -> str:
        return "\n".join(
            f"--- {path.name}\n{path.read_text(errors='replace')[-6000:]}"
            for path in sorted(self.log_dir.glob(f"{self.name}-*.log"))
        )


class TopicReader:
    """Reads every partition of a topic from the beginning (assigned, no group), incrementally."""

    def __init__(self, bootstrap: str, topic: str, isolation: str = "read_committed") -> None:
        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "unused", "enable.auto.commit": False,
                                  "isolation.level": isolation})
        self.consumer.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
        self.records: list = []
        self.by_key: dict[bytes, list[int]] = {}

    def poll(self, seconds: float) -> int:
        """Read for ``seconds``; return how many records arrived."""
        deadline = time.monotonic() + seconds
        got = 0
        while time.monotonic() < deadline:
            for message in self.consumer.consume(1000, 0.1):
                if message.error() is not None:
                    continue
                got += 1
                self.records.append(message)
                if message.value() is not None and message.value().isdigit():
                    self.by_key.setdefault(message.key(), []).append(int(message.value()))
        return got

    def wait_for(self, count: int, timeout: float = WAIT_S, alive: ProcessorProcess | None = None) -> None:
        deadline = time.monotonic() + timeout
        while len(self.records) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"only {len(self.records)} of {count} records after {timeout:.0f} s")
            if alive is not None and not alive.alive():
                raise AssertionError(f"processor exited with {alive.proc.returncode if alive.proc else '?'}")
            self.poll(0.2)

    def close(self) -> None:
        self.consumer.close()


def assert_exactly_once(observed: dict[bytes, list[int]], pairs: list[tuple[bytes, int]]) -> None:
    """Each key's output is exactly its prefix sums: no update lost, none repeated."""
    expected = prefix_sums(pairs)
    assert set(observed) == set(expected)
    for key, sums in expected.items():
        seen = observed[key]
        if seen != sums:
            diverge = next((i for i, (a, b) in enumerate(zip(seen, sums, strict=False)) if a != b),
                           min(len(seen), len(sums)))
            raise AssertionError(f"{key!r}: {len(seen)} totals for {len(sums)} increments, first difference at "
                                 f"update {diverge}: {seen[diverge:diverge + 3]} vs {sums[diverge:diverge + 3]}")


def stored_totals(state_dir: Path, group: str, topic: str) -> dict[bytes, int]:
    """The totals in every partition store under ``state_dir`` (the processor must be stopped)."""
    from streams.store import PartitionStore

    totals: dict[bytes, int] = {}
    for partition in range(PARTITIONS):
        folder = state_dir / group / f"{topic}-{partition}"
        if not folder.exists():
            continue
        with PartitionStore.open(folder) as store:
            for key, value in store.scan_prefix(b""):
                totals[key] = int(value)
    return totals


@contextmanager
def cleaned_up(*processes: ProcessorProcess, output: TopicReader) -> Iterator[None]:
    """Around a test's body: print the processes' logs if it fails, then kill what is still
    alive and close the output reader, whatever happened."""
    try:
        yield
    except BaseException:
        for proc in processes:
            print(proc.logs())
        raise
    finally:
        for proc in processes:
            if proc.alive():
                proc.kill()
        output.close()
