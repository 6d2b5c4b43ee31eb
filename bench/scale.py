"""``scale``: what N completed chain3 instances cost, and what a purge of 90% of them gives back.

One ``kwf run`` process; N chain3 instances started through the bulk start and completed.
Then, as rows of JSON:

* ``restore_s``: the runtime SIGKILLed, its state folder deleted (a lost machine), started
  again: seconds until it says it is ready (restore included), and the records it read;
* ``first_answer_cold_s``: a new client's ``WorkflowClient()`` + ``get_workflow_state`` with
  no view folder (it reads the whole status topic), and ``first_answer_s`` the same for a
  new client that resumes the folder the first one left (it reads only the tail);
* ``first_answer_runtime_s``: the same cold client while a second process serving the HTTP
  API runs (started then, ``--role worker``): the client finds it in ``{prefix}.runtimes``
  and asks it; ``first_answer_runtime_url_s`` given its URL; ``runtime_announced_s`` how
  long after its start that process announced itself (its own view read the topic first);
* ``first_page_ms``: ``list_workflows_page(page_size=100)``, the first page, and
  ``page_p99_ms`` over 100 first pages of random filters (status, name, created range);
* ``history_view_cold_s``: the first history read of a process with no history folder (it
  reads the whole history topic), then ``history_p50_ms``/``history_p99_ms`` over 500 reads
  of random instances (each waits for the partition's committed end, then one prefix scan);
* ``rss_mb``: the runtime's resident memory after the run;
* ``state_disk_mb``, ``topics_disk_mb``: the state folder, and the workload's topics on the
  local broker's disk (only with the broker ``python -m bench`` starts); ``view_disk_mb``:
  the client's status and history folders;
* ``list_s``: ``list_workflows()`` (every page) of a client that has caught up;
* then 90% of the instances are purged (one bulk purge, the path retention takes), the
  topics compacted, and ``restore_after_purge_s`` measured the same way.

The topics are created with fast compaction (segments of 5 s) so that the compacted state
is reached within the run; the runtime's own default compacts within a day.

    python -m bench.scale [--count 10000]
"""

from __future__ import annotations

import argparse
import random
import shutil
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from bench.common import (
    REPO,
    RuntimeProcess,
    StatusWatcher,
    bench_runtime,
    broker,
    delete_topics,
    emit,
    free_port,
    fresh_settings,
    note,
)
from engine.api.client import WorkflowClient
from engine.api.history_reader import read_history
from engine.api.runtime_directory import find_runtimes
from engine.api.status_view import StatusView
from engine.core.history import WorkflowStatus
from engine.state.config import Settings
from engine.state.topics import HISTORY, STATUS, workflow_topics
from streams.topics import TopicSpec, ensure_topics

WORKLOAD = "scale"
COUNT = 10_000
TIMEOUT_S = 900.0
SEGMENT_S = 5
FAST_COMPACTION = {"segment.ms": str(SEGMENT_S * 1000), "min.cleanable.dirty.ratio": "0.01",
                   "delete.retention.ms": "5000", "max.compaction.lag.ms": "5000"}
# The broker's cleaner looks every 15 s, and a busy broker cleans late.
COMPACTION_TIMEOUT_S = 300.0


def run(bootstrap: str, *, count: int = COUNT, purge: bool = True) -> None:
    settings = fresh_settings(bootstrap, WORKLOAD)
    settings = replace(settings, view_dir=settings.state_dir / "views")
    compacted = {settings.topic(HISTORY), settings.topic(STATUS)}
    ensure_topics(AdminClient(settings.client()), [
        TopicSpec(s.name, s.partitions, {**s.config, **FAST_COMPACTION} if s.name in compacted else s.config,
                  s.replication_factor, s.co_partitioned) for s in workflow_topics(settings)])
    runtime = bench_runtime(settings)
    try:
        note(f"scale: runtime ready in {runtime.start():.1f} s")
        ids = [f"s-{n:08d}-{uuid.uuid4().hex[:6]}" for n in range(count)]
        cut_at = int(count * 0.9)
        with StatusWatcher(settings) as watcher:
            client = WorkflowClient(settings=settings)
            began = time.perf_counter()
            client.schedule_new_workflows("chain3", ((i, 1) for i in ids[:cut_at]))
            watcher.wait_ended(ids[:cut_at], TIMEOUT_S, "scale: first 90%")
            time.sleep(0.1)
            cut = datetime.now(UTC)
            client.schedule_new_workflows("chain3", ((i, 1) for i in ids[cut_at:]))
            watcher.wait_ended(ids[cut_at:], TIMEOUT_S, "scale: last 10%")
            note(f"scale: {count} chain3 instances completed in {time.perf_counter() - began:.1f} s")
            client.close()
        measure(settings, runtime, count, "", ids)
        if not purge or not hasattr(WorkflowClient, "purge_workflows"):
            return  # a runtime checkout from before bulk purge: the first half is the baseline
        client = WorkflowClient(settings=settings)
        operation = client.purge_workflows(status=["COMPLETED"], name="chain3", created_before=cut)
        purged = operation.wait(timeout=TIMEOUT_S)
        client.close()
        note(f"scale: purged {purged} instances; waiting for compaction")
        written = history_records(settings)
        roll = WorkflowClient(settings=settings)
        deadline = time.monotonic() + COMPACTION_TIMEOUT_S
        while True:
            # New records roll the segments the purge wrote and make the log dirty again, so
            # the cleaner comes back for the tombstones once they are older than their 5 s.
            time.sleep(SEGMENT_S)
            roll.schedule_new_workflows("chain3", ((f"roll-{uuid.uuid4().hex[:8]}-{n}", 1) for n in range(16)))
            left = history_records(settings)
            if left <= written // 4 or time.monotonic() > deadline:
                break
        roll.close()
        note(f"scale: history records {written} before compaction, {left} after")
        measure(settings, runtime, count, "_after_purge", ids[cut_at:])
    finally:
        runtime.stop()
        StatusView.close_shared()
        delete_topics(settings)
        shutil.rmtree(settings.state_dir, ignore_errors=True)


def measure(settings: Settings, runtime: RuntimeProcess, count: int, suffix: str, ids: list[str]) -> None:
    system = f"kwf n={count}"
    emit(WORKLOAD, system, "rss_mb" + suffix, rss_mb(runtime), "MB")
    state_mb = disk_mb(runtime.state_dir)
    emit(WORKLOAD, system, "state_disk_mb" + suffix, state_mb, "MB")
    emit(WORKLOAD, system, "state_disk_kb_per_instance" + suffix, state_mb * 1000 / count, "KB")
    topics = topics_disk_mb(settings)
    if topics is not None:
        emit(WORKLOAD, system, "topics_disk_mb" + suffix, topics, "MB")
    StatusView.close_shared()  # a new client, with a view of its own
    shutil.rmtree(settings.view_dir, ignore_errors=True)
    for cold in (True, False):
        began = time.perf_counter()
        fresh = WorkflowClient(settings=settings, ask_runtimes=False)
        fresh.get_workflow_state(ids[0])
        emit(WORKLOAD, system, ("first_answer_cold_s" if cold else "first_answer_s") + suffix,
             time.perf_counter() - began, "s")
        if cold:
            fresh.close()
            StatusView.close_shared()  # the next client resumes the folder this one left
            # A second process, serving the HTTP API, started now: its view reads the topic first.
            asked_runtime(WORKLOAD, replace(settings, process_id=settings.process_id + "-api"), system, ids[0],
                          suffix, role="worker")
    began = time.perf_counter()
    first = fresh.list_workflows_page(page_size=100)
    emit(WORKLOAD, system, "first_page_ms" + suffix, (time.perf_counter() - began) * 1000, "ms")
    note(f"scale: first page of {len(first.workflows)}, more: {first.continuation_token is not None}")
    emit(WORKLOAD, system, "page_p99_ms" + suffix, page_p99_ms(fresh, ids), "ms")
    began = time.perf_counter()
    read_history(settings, ids[-1])
    emit(WORKLOAD, system, "history_view_cold_s" + suffix, time.perf_counter() - began, "s")
    p50, p99 = history_ms(settings, ids)
    emit(WORKLOAD, system, "history_p50_ms" + suffix, p50, "ms")
    emit(WORKLOAD, system, "history_p99_ms" + suffix, p99, "ms")
    emit(WORKLOAD, system, "view_disk_mb" + suffix, disk_mb(settings.view_dir), "MB")
    began = time.perf_counter()
    listed = len(fresh.list_workflows())
    emit(WORKLOAD, system, "list_s" + suffix, time.perf_counter() - began, "s")
    note(f"scale: list_workflows returned {listed}")
    fresh.close()
    StatusView.close_shared()
    shutil.rmtree(settings.view_dir, ignore_errors=True)  # the next measure starts cold again
    runtime.kill()
    shutil.rmtree(runtime.state_dir, ignore_errors=True)
    began = time.perf_counter()
    runtime.start(wait=False)
    runtime.wait_ready()
    emit(WORKLOAD, f"kwf n={count}", "restore_s" + suffix, time.perf_counter() - began, "s")
    records, _ = runtime.restored()
    emit(WORKLOAD, f"kwf n={count}", "restored_records" + suffix, records, "records")
    emit(WORKLOAD, f"kwf n={count}", "state_disk_mb_restored" + suffix, disk_mb(runtime.state_dir), "MB")


def asked_runtime(workload: str, settings: Settings, system: str, instance: str, suffix: str = "",
                  role: str = "all") -> None:
    """The first answer of new clients with no view folder while a runtime serving the HTTP API
    (started here, as ``role``) runs on the topics: found in ``{prefix}.runtimes``
    (``first_answer_runtime_s``) and given by URL (``first_answer_runtime_url_s``)."""
    runtime = bench_runtime(settings, env={"KWF_VIEW_DIR": str(settings.state_dir / "runtime-views")},
                            http_port=free_port())
    runtime.role = role
    emit(workload, system, "runtime_ready_s" + suffix, runtime.start(), "s")
    try:
        began = time.perf_counter()
        url = f"http://127.0.0.1:{runtime.http_port}"
        while url not in [entry.url for entry in find_runtimes(settings)]:
            runtime.check_alive()
            time.sleep(0.1)
        emit(workload, system, "runtime_announced_s" + suffix, time.perf_counter() - began, "s")
        for figure, given in (("first_answer_runtime_s", None), ("first_answer_runtime_url_s", url)):
            StatusView.close_shared()
            asking = replace(settings, view_dir=settings.state_dir / "views-asking")
            shutil.rmtree(asking.view_dir, ignore_errors=True)
            began = time.perf_counter()
            client = WorkflowClient(settings=asking, runtime_url=given)
            assert client.get_workflow_state(instance) is not None
            emit(workload, system, figure + suffix, time.perf_counter() - began, "s")
            assert client.runtime_reads is not None and client.runtime_reads.answers == 1, "the runtime was not asked"
            client.close()
    finally:
        StatusView.close_shared()
        runtime.stop()


def page_p99_ms(client: WorkflowClient, ids: list[str]) -> float:
    """p99 of first pages of random filters: by status, by name, by both, by a created range."""
    pick = random.Random(7)
    newest = client.get_workflow_state(ids[-1])
    oldest = client.get_workflow_state(ids[0])
    assert newest is not None and oldest is not None
    span = (newest.created_at - oldest.created_at).total_seconds()
    times = []
    for _ in range(100):
        after = oldest.created_at + timedelta(seconds=pick.uniform(0, span))
        query = pick.choice([{"status": WorkflowStatus.COMPLETED}, {"name": "chain3"},
                             {"status": WorkflowStatus.COMPLETED, "name": "chain3"}, {"created_after": after}])
        began = time.perf_counter()
        client.list_workflows_page(page_size=100, **query)  # type: ignore[arg-type]
        times.append((time.perf_counter() - began) * 1000)
    return percentile(times, 0.99)


def history_ms(settings: Settings, ids: list[str], reads: int = 500) -> tuple[float, float]:
    """p50 and p99 of one instance's history read through a caught-up history view."""
    pick = random.Random(11)
    times = []
    for _ in range(reads):
        began = time.perf_counter()
        events = read_history(settings, pick.choice(ids))
        times.append((time.perf_counter() - began) * 1000)
        assert events, "an instance without history"
    return percentile(times, 0.5), percentile(times, 0.99)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def history_records(settings: Settings) -> int:
    """Records in the history topic now (read_committed, tombstones included)."""
    topic = settings.topic(HISTORY)
    consumer = Consumer({**settings.client(), "group.id": f"scale-{uuid.uuid4().hex}", "enable.auto.commit": False,
                         "isolation.level": "read_committed"})
    try:
        partitions = consumer.list_topics(topic, timeout=30).topics[topic].partitions
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1] for p in partitions}
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        count = 0
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            count += sum(1 for m in consumer.consume(5000, 0.2) if m.error() is None)
            positions = consumer.position([TopicPartition(topic, p) for p in partitions])
            if all(tp.offset >= ends[tp.partition] for tp in positions):
                break
        return count
    finally:
        consumer.close()


def rss_mb(runtime: RuntimeProcess) -> float:
    assert runtime.proc is not None
    for line in Path(f"/proc/{runtime.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def disk_mb(folder: Path) -> float:
    """Blocks in use, like ``du``: Kafka preallocates its index files sparsely."""
    return sum(p.stat().st_blocks * 512 for p in folder.rglob("*") if p.is_file()) / 1e6


def topics_disk_mb(settings: Settings) -> float | None:
    """The workload's topic folders on the local bench broker, if that is the broker in use."""
    folders = list((REPO / ".kwf").glob(f"bench-broker/**/{settings.topic_prefix}.*-*"))
    if not folders:
        return None
    return sum(disk_mb(f) for f in folders if f.is_dir())


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=COUNT)
    parser.add_argument("--no-purge", action="store_true", help="skip the purge of 90%% and its measures")
    args = parser.parse_args()
    with broker(warm_up_s=0) as bootstrap:
        run(bootstrap, count=args.count, purge=not args.no_purge)


if __name__ == "__main__":
    main()
