"""What every benchmark shares: the broker, result lines, runtime subprocesses, a status watcher.

Results go to stdout as one JSON object per line (``emit``); progress and the final table go
to stderr through one rich console.
"""

from __future__ import annotations

import json
import math
import os
import platform
import shutil
import socket
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from engine.core.history import WorkflowStatus
from engine.state.codec import decode_status
from engine.state.config import Settings
from engine.state.instance_state import ENDED
from engine.state.topics import STATUS, ensure_workflow_topics
from engine.testing import RuntimeProcess
from streams.broker import KAFKA_VERSION, broker_answers, fresh_local_broker
from streams.topics import TopicSpec, delete_topics_with_prefix, ensure_topics

REPO = Path(__file__).resolve().parent.parent
APP = "bench.apps:runtime"
PARTITIONS = 8

console = Console(stderr=True)


# -- results -------------------------------------------------------------------------------


@dataclass
class Results:
    """Result lines printed so far, for the table at the end."""

    rows: list[dict[str, Any]] = field(default_factory=list)

    def emit(self, workload: str, system: str, metric: str, value: float, unit: str) -> None:
        row = {"workload": workload, "system": system, "metric": metric, "value": round(value, 3), "unit": unit}
        self.rows.append(row)
        print(json.dumps(row), flush=True)

    def table(self) -> Table:
        table = Table(title="kafka-workflows benchmarks")
        for column in ("workload", "system", "metric", "value", "unit"):
            table.add_column(column, no_wrap=True, justify="right" if column == "value" else "left")
        for row in self.rows:
            table.add_row(row["workload"], row["system"], row["metric"], f"{row['value']:,}", row["unit"])
        return table


results = Results()
emit = results.emit


def note(message: str) -> None:
    """A progress line on stderr, as plain text (an error's ``[...]`` is not rich markup)."""
    console.log(message, markup=False)


def progress_bar() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console, transient=True)


def percentile(values: list[float], p: float) -> float:
    """The p-th percentile (0-100), nearest-rank."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(p / 100 * len(ordered))))
    return ordered[rank - 1]


def median(values: Iterable[float]) -> float:
    return statistics.median(list(values))


# -- the broker and topics -----------------------------------------------------------------


@contextmanager
def broker(warm_up_s: float = 60.0) -> Iterator[str]:
    """``KWF_BOOTSTRAP_SERVERS`` when set, else a local broker (8 partitions) stopped afterwards.

    The broker is first warmed up with transactions for at most ``warm_up_s`` (``warm_up``).
    """
    configured = os.environ.get("KWF_BOOTSTRAP_SERVERS")
    if configured:
        if not broker_answers(configured, timeout=10):
            raise RuntimeError(f"KWF_BOOTSTRAP_SERVERS={configured} is set but no broker answers there")
        if warm_up_s > 0:
            warm_up(configured, warm_up_s)
        yield configured
        return
    note(f"starting a local broker (Kafka {KAFKA_VERSION})")
    with fresh_local_broker((REPO / ".kwf").resolve(), "bench-broker") as address:
        if warm_up_s > 0:
            warm_up(address, warm_up_s)
        yield address


def pingpong(bootstrap: str, topic: str, seconds: float, value: bytes) -> int:
    """Dependent transactions on ``topic`` partition 0 for ``seconds``; how many committed.

    Each turn reads the one record in flight (read_committed), produces the next in a
    transaction together with the consumed offset (KIP-447) and commits.
    """
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": topic, "isolation.level": "read_committed",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest", "fetch.wait.max.ms": 5})
    consumer.assign([TopicPartition(topic, 0, 0)])
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": topic, "linger.ms": 5})
    producer.init_transactions(60)
    producer.begin_transaction()
    producer.produce(topic, value, b"k", 0)
    producer.commit_transaction(30)
    turns = 0
    began = time.perf_counter()
    try:
        while time.perf_counter() - began < seconds:
            message = consumer.poll(10)
            if message is None or message.error() is not None:
                raise RuntimeError(f"the record in flight did not come back: {message and message.error()}")
            producer.begin_transaction()
            producer.produce(topic, value, b"k", 0)
            producer.send_offsets_to_transaction([TopicPartition(topic, 0, message.offset() + 1)],
                                                 consumer.consumer_group_metadata(), 30)
            producer.commit_transaction(30)
            turns += 1
    finally:
        consumer.close()
    return turns


# A fresh broker JVM commits a transaction with offsets in 30-50 ms; after some 30,000 of
# them (once the JIT has compiled the coordinators' paths) in 3-5 ms. Their rate swings too
# much from round to round on shared cores to stop on it, so the warm-up counts them, within
# a time budget.
WARM_UP_LOOPS = 8
WARM_UP_TRANSACTIONS = 30_000
WARM_UP_ROUND_S = 10.0


def warm_up(bootstrap: str, max_seconds: float) -> None:
    """Run ``WARM_UP_TRANSACTIONS`` transactions with offsets in parallel loops, or stop after ``max_seconds``."""
    prefix = f"bench-warmup-{uuid.uuid4().hex[:8]}"
    topics = [f"{prefix}.{n}" for n in range(WARM_UP_LOOPS)]
    ensure_topics(AdminClient({"bootstrap.servers": bootstrap}), [TopicSpec(t, 1) for t in topics])
    total = 0
    try:
        for round_ in range(max(1, round(max_seconds / WARM_UP_ROUND_S))):
            counts: list[int] = []

            def loop(topic: str, into: list[int] = counts) -> None:
                into.append(pingpong(bootstrap, topic, WARM_UP_ROUND_S, b"x" * 150))

            threads = [threading.Thread(target=loop, args=(t,)) for t in topics]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            total += sum(counts)
            note(f"broker warm-up round {round_ + 1}: {sum(counts) / WARM_UP_ROUND_S:.0f} transactions/s")
            if total >= WARM_UP_TRANSACTIONS:
                break
    finally:
        delete_prefix(bootstrap, prefix)


def delete_prefix(bootstrap: str, prefix: str) -> None:
    """Remove the topics under ``prefix`` (cleanup only: a failure here changes no result)."""
    delete_topics_with_prefix(AdminClient({"bootstrap.servers": bootstrap}), prefix)


def fresh_settings(bootstrap: str, workload: str) -> Settings:
    """Settings with a topic prefix of their own and a fresh state folder."""
    prefix = f"bench-{workload}-{uuid.uuid4().hex[:8]}"
    state = Path(tempfile.mkdtemp(prefix=f"kwf-bench-{workload}-"))
    return Settings(bootstrap_servers=bootstrap, topic_prefix=prefix, partitions=PARTITIONS, state_dir=state,
                    process_id=f"bench-{uuid.uuid4().hex[:6]}")


def delete_topics(settings: Settings) -> None:
    """Remove a workload's topics."""
    delete_prefix(settings.bootstrap_servers, settings.topic_prefix)


# -- the runtime in a subprocess -----------------------------------------------------------


def bench_runtime(settings: Settings, profile_to: Path | None = None,
                  env: dict[str, str] | None = None, http_port: int | None = None) -> RuntimeProcess:
    """The benchmark app in a runtime subprocess, its state and log under ``settings.state_dir``.

    The runtime's code comes from this checkout, or from the one named by
    ``KWF_BENCH_RUNTIME_CHECKOUT`` (to compare a change against a baseline in one run).
    ``profile_to``: run it under py-spy (``python -m bench.profile FILE`` sums the samples up).
    ``env``: more environment variables of the runtime.
    ``http_port``: serve the runtime's HTTP API there (default: none).
    """
    checkout = Path(os.environ.get("KWF_BENCH_RUNTIME_CHECKOUT") or REPO)
    return RuntimeProcess(settings, settings.process_id, settings.state_dir, APP, profile_to=profile_to,
                          checkout=checkout, env=dict(env or {}), http_port=http_port)


@contextmanager
def running_runtime(settings: Settings, profile_to: Path | None = None,
                    env: dict[str, str] | None = None, http_port: int | None = None) -> Iterator[RuntimeProcess]:
    """A ready runtime subprocess for one workload (``env``: more of its environment;
    ``http_port``: its HTTP API's port); stopped and its topics deleted afterwards."""
    ensure_workflow_topics(settings)
    runtime = bench_runtime(settings, profile_to, env, http_port)
    try:
        seconds = runtime.start()
        note(f"runtime ready in {seconds:.1f} s ({settings.topic_prefix})")
        yield runtime
    finally:
        runtime.stop()
        delete_topics(settings)
        shutil.rmtree(settings.state_dir, ignore_errors=True)


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds the process ``pid`` has used so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- watching kwf.status -------------------------------------------------------------------


@dataclass
class Seen:
    """When the watcher first saw an instance running and ended, in this process's clock."""

    ended_at: float | None = None
    status: WorkflowStatus | None = None
    history_length: int = 0
    server_ms: float | None = None  # last_updated_at - created_at of the ended record


class StatusWatcher:
    """Reads ``kwf.status`` (read_committed) on a thread and notes when each instance ends.

    Times are ``time.perf_counter()`` of the moment the record was received: client-side,
    so start-to-completion includes every hop from the client's produce to the status
    record a client can read.
    """

    def __init__(self, settings: Settings) -> None:
        self.topic = settings.topic(STATUS)
        self._consumer = Consumer({
            **settings.client(),
            "group.id": f"{settings.topic_prefix}.bench-watcher",  # assigned, never joined
            "enable.auto.commit": "false",
            "isolation.level": "read_committed",
            "fetch.wait.max.ms": "5",
        })
        self.seen: dict[str, Seen] = {}
        self.ended = 0
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-status-watcher", daemon=True)

    def __enter__(self) -> StatusWatcher:
        meta = self._consumer.list_topics(self.topic, timeout=30).topics[self.topic]
        self._consumer.assign([TopicPartition(self.topic, p, 0) for p in meta.partitions])
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        self._consumer.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            messages = self._consumer.consume(2000, 0.02)
            if not messages:
                continue
            now = time.perf_counter()
            with self._changed:
                for message in messages:
                    if message.error() is not None:
                        if message.error().code() != KafkaError._PARTITION_EOF:
                            note(f"status watcher: {message.error()}")
                        continue
                    if message.value() is None:
                        continue
                    record = decode_status(message.value())
                    seen = self.seen.setdefault(record.instance_id, Seen())
                    seen.status = record.runtime_status
                    seen.history_length = record.history_length
                    if record.runtime_status in ENDED and seen.ended_at is None:
                        seen.ended_at = now
                        seen.server_ms = (record.last_updated_at - record.created_at).total_seconds() * 1000
                        self.ended += 1
                self._changed.notify_all()

    def wait(self, accept: Callable[[], bool], timeout: float, on_tick: Callable[[], None] | None = None) -> None:
        """Wait until ``accept()`` holds (checked under the watcher's lock)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not accept():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"gave up after {timeout:.0f} s ({self.ended} instances ended)")
                self._changed.wait(min(left, 0.2))
                if on_tick is not None:
                    on_tick()

    def wait_ended(self, ids: Iterable[str], timeout: float, label: str = "instances") -> float:
        """Wait until every instance in ``ids`` ended (with a progress bar); the last end time."""
        wanted = list(ids)
        with progress_bar() as bar:
            task = bar.add_task(label, total=len(wanted))

            def done() -> int:
                return sum(1 for i in wanted if (s := self.seen.get(i)) is not None and s.ended_at is not None)

            self.wait(lambda: done() == len(wanted), timeout, lambda: bar.update(task, completed=done()))
        failed = [i for i in wanted if self.seen[i].status is not WorkflowStatus.COMPLETED]
        if failed:
            raise RuntimeError(f"{len(failed)} instances did not complete, e.g. {failed[0]}: "
                               f"{self.seen[failed[0]].status}")
        return max(self.seen[i].ended_at or 0.0 for i in wanted)


# -- the machine ---------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        memory_kb = int(Path("/proc/meminfo").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        memory_kb = 0
    return {"nproc": os.cpu_count(), "memory_gib": round(memory_kb / 1024 / 1024, 1), "cpu": cpu,
            "python": platform.python_version()}
