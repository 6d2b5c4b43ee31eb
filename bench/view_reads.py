"""``view_reads``: what a client's reads cost at N instances, without running N workflows.

Writes N final status records and N chain3-shaped histories (8 events each) straight to a
fresh status and history topic, as the orchestrator would have left them, then measures,
as rows of JSON:

* ``first_answer_cold_s``: ``WorkflowClient()`` + ``get_workflow_state`` with no view folder
  (the whole status topic is read), ``first_answer_s`` the same resuming that folder after
  1% of the instances changed (only the tail is read);
* ``first_answer_runtime_s``: the same with no view folder while a runtime serving the HTTP
  API runs on the topics: the client finds it in ``{prefix}.runtimes`` and asks it;
  ``first_answer_runtime_url_s`` the same given its URL (``KWF_RUNTIME_URL``);
  ``runtime_ready_s`` how long that runtime took to start (its restore of the history
  included), and ``runtime_announced_s`` how long after that it announced itself (its own
  status view read the topic first; ``bench.scale.asked_runtime``);
* ``first_page_ms``: the first ``list_workflows_page(page_size=100)``; ``page_p99_ms``: 200
  first pages of random filters (status, name, both, a created range);
* ``history_view_cold_s``: a first history read with no history folder (the whole history
  topic is read); ``history_p50_ms``/``history_p99_ms``: 500 reads of random instances;
* ``view_disk_mb`` and ``view_disk_kb_per_instance``: the status and history folders.

``--no-history`` leaves the history out (for N where writing 8 N events takes too long).

    python -m bench.view_reads [--count 100000] [--no-history]
"""

from __future__ import annotations

import argparse
import random
import shutil
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from confluent_kafka import Producer

from bench.common import broker, delete_topics, emit, fresh_settings, note
from bench.scale import asked_runtime, disk_mb, percentile
from engine.api.client import WorkflowClient
from engine.api.history_reader import read_history
from engine.api.status_view import StatusView
from engine.core.history import (
    ExecutionCompleted,
    ExecutionStarted,
    HistoryEvent,
    TaskCompleted,
    TaskScheduled,
    WorkflowStatus,
)
from engine.core.partitioner import partition_for
from engine.state.codec import StatusRecord, encode_event, encode_status
from engine.state.config import Settings
from engine.state.history_log import event_key
from engine.state.topics import HISTORY, STATUS, ensure_workflow_topics

WORKLOAD = "view_reads"
COUNT = 100_000
# How long a cold copy may take to read the status topic here.
COLD_TIMEOUT_S = 900.0
EPOCH = datetime(2026, 11, 1, tzinfo=UTC)
# Statuses the instances end in, so a status filter matches a share of them.
FINAL = [WorkflowStatus.COMPLETED] * 8 + [WorkflowStatus.FAILED, WorkflowStatus.TERMINATED]


def instance_id(n: int) -> str:
    return f"r-{n:08d}"


def status_of(n: int, status: WorkflowStatus | None = None) -> StatusRecord:
    created = EPOCH + timedelta(milliseconds=n * 10)
    return StatusRecord(instance_id(n), "x1", "chain3" if n % 4 else "other", status or FINAL[n % len(FINAL)],
                        created, created + timedelta(seconds=1), "1", "4")


def history_of(n: int) -> list[HistoryEvent]:
    at = EPOCH + timedelta(milliseconds=n * 10)
    events: list[object] = [ExecutionStarted("chain3", "1")]
    for task in range(3):
        events += [TaskScheduled(task, f"step{task + 1}", str(task + 1)), TaskCompleted(task, str(task + 2))]
    events.append(ExecutionCompleted(WorkflowStatus.COMPLETED, "4"))
    return [HistoryEvent(instance_id(n), "x1", sequence, at, event) for sequence, event in enumerate(events)]  # type: ignore[arg-type]


def produce(settings: Settings, count: int, history: bool) -> None:
    producer = Producer({**settings.producer(), "linger.ms": "50"})
    status_topic, history_topic = settings.topic(STATUS), settings.topic(HISTORY)
    for n in range(count):
        key = instance_id(n).encode()
        _send(producer, status_topic, key, encode_status(status_of(n)), None)
        if history:
            partition = partition_for(key, settings.partitions)
            for event in history_of(n):
                _send(producer, history_topic, event_key(event.instance_id, event.sequence), encode_event(event),
                      partition)
    producer.flush(300)


def _send(producer: Producer, topic: str, key: bytes, value: bytes, partition: int | None) -> None:
    while True:
        try:
            if partition is None:
                producer.produce(topic, key=key, value=value)
            else:
                producer.produce(topic, key=key, value=value, partition=partition)
            return
        except BufferError:
            producer.poll(0.05)


def run(bootstrap: str, count: int, history: bool) -> None:
    settings = fresh_settings(bootstrap, WORKLOAD)
    settings = replace(settings, view_dir=settings.state_dir / "views")
    system = f"kwf n={count}"
    ensure_workflow_topics(settings)
    try:
        began = time.perf_counter()
        produce(settings, count, history)
        note(f"view_reads: wrote {count} instances in {time.perf_counter() - began:.1f} s")
        asked_runtime(WORKLOAD, settings, system, instance_id(0))
        began = time.perf_counter()
        client = WorkflowClient(settings=settings, ask_runtimes=False)
        # Waited for explicitly: on a loaded machine a cold copy of 100k takes longer than
        # the client's own minute.
        StatusView.shared(settings, wait=False).wait_caught_up(COLD_TIMEOUT_S)
        assert client.get_workflow_state(instance_id(0)) is not None
        emit(WORKLOAD, system, "first_answer_cold_s", time.perf_counter() - began, "s")
        client.close()
        StatusView.close_shared()
        changed = max(1, count // 100)
        producer = Producer(settings.producer())
        for n in range(changed):
            _send(producer, settings.topic(STATUS), instance_id(n).encode(),
                  encode_status(status_of(n, WorkflowStatus.TERMINATED)), None)
        producer.flush(60)
        began = time.perf_counter()
        client = WorkflowClient(settings=settings)
        assert client.get_workflow_state(instance_id(0)) is not None
        emit(WORKLOAD, system, "first_answer_s", time.perf_counter() - began, "s")
        note(f"view_reads: the resumed view read {client.view.mirror.records_read} records")
        began = time.perf_counter()
        page = client.list_workflows_page(page_size=100)
        emit(WORKLOAD, system, "first_page_ms", (time.perf_counter() - began) * 1000, "ms")
        assert len(page.workflows) == 100 and page.continuation_token is not None
        emit(WORKLOAD, system, "page_p99_ms", pages_p99_ms(client, count), "ms")
        if history:
            began = time.perf_counter()
            assert read_history(settings, instance_id(count - 1))
            emit(WORKLOAD, system, "history_view_cold_s", time.perf_counter() - began, "s")
            p50, p99 = history_ms(settings, count)
            emit(WORKLOAD, system, "history_p50_ms", p50, "ms")
            emit(WORKLOAD, system, "history_p99_ms", p99, "ms")
        folder = disk_mb(settings.view_dir)
        emit(WORKLOAD, system, "view_disk_mb", folder, "MB")
        emit(WORKLOAD, system, "view_disk_kb_per_instance", folder * 1000 / count, "KB")
        client.close()
    finally:
        StatusView.close_shared()
        delete_topics(settings)
        shutil.rmtree(settings.state_dir, ignore_errors=True)


def pages_p99_ms(client: WorkflowClient, count: int, pages: int = 200) -> float:
    pick = random.Random(7)
    times = []
    for _ in range(pages):
        after = EPOCH + timedelta(milliseconds=pick.randrange(count) * 10)
        query = pick.choice([{"status": WorkflowStatus.FAILED}, {"name": "other"},
                             {"status": WorkflowStatus.COMPLETED, "name": "chain3"}, {"created_after": after}])
        began = time.perf_counter()
        client.list_workflows_page(page_size=100, **query)  # type: ignore[arg-type]
        times.append((time.perf_counter() - began) * 1000)
    return percentile(times, 0.99)


def history_ms(settings: Settings, count: int, reads: int = 500) -> tuple[float, float]:
    pick = random.Random(11)
    times = []
    for _ in range(reads):
        began = time.perf_counter()
        events = read_history(settings, instance_id(pick.randrange(count)))
        times.append((time.perf_counter() - began) * 1000)
        assert len(events) == 8, events
    return percentile(times, 0.5), percentile(times, 0.99)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.view_reads", description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=COUNT)
    parser.add_argument("--no-history", action="store_true", help="measure the status view only")
    args = parser.parse_args()
    with broker(warm_up_s=0) as bootstrap:
        run(bootstrap, args.count, not args.no_history)


if __name__ == "__main__":
    main()
