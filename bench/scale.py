"""``scale``: what N completed chain3 instances cost, and what a purge of 90% of them gives back.

One ``kwf run`` process; N chain3 instances started through the bulk start and completed.
Then, as rows of JSON:

* ``restore_s``: the runtime SIGKILLed, its state folder deleted (a lost machine), started
  again: seconds until it says it is ready (restore included), and the records it read;
* ``first_answer_s``: a new client's ``WorkflowClient()`` + ``get_workflow_state``;
* ``rss_mb``: the runtime's resident memory after the run;
* ``state_disk_mb``, ``topics_disk_mb``: the state folder, and the workload's topics on the
  local broker's disk (only with the broker ``python -m bench`` starts);
* ``list_s``: ``list_workflows()`` of a client that has caught up;
* then 90% of the instances are purged (one bulk purge, the path retention takes), the
  topics compacted, and ``restore_after_purge_s`` measured the same way.

The topics are created with fast compaction (segments of 5 s) so that the compacted state
is reached within the run; the runtime's own default compacts within a day.

    python -m bench.scale [--count 10000]
"""

from __future__ import annotations

import argparse
import shutil
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from bench.common import REPO, RuntimeProcess, StatusWatcher, broker, delete_topics, emit, fresh_settings, note
from engine.api.client import WorkflowClient
from engine.api.status_view import StatusView
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


def run(bootstrap: str, *, count: int = COUNT) -> None:
    settings = fresh_settings(bootstrap, WORKLOAD)
    compacted = {settings.topic(HISTORY), settings.topic(STATUS)}
    ensure_topics(AdminClient(settings.client()), [
        TopicSpec(s.name, s.partitions, {**s.config, **FAST_COMPACTION} if s.name in compacted else s.config,
                  s.replication_factor, s.co_partitioned) for s in workflow_topics(settings)])
    runtime = RuntimeProcess(settings)
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
        measure(settings, runtime, count, "")
        if not hasattr(WorkflowClient, "purge_workflows"):
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
        measure(settings, runtime, count, "_after_purge")
    finally:
        runtime.stop()
        StatusView.close_shared()
        delete_topics(settings)
        shutil.rmtree(settings.state_dir, ignore_errors=True)


def measure(settings: Settings, runtime: RuntimeProcess, count: int, suffix: str) -> None:
    emit(WORKLOAD, f"kwf n={count}", "rss_mb" + suffix, rss_mb(runtime), "MB")
    emit(WORKLOAD, f"kwf n={count}", "state_disk_mb" + suffix, disk_mb(settings.state_dir / "state"), "MB")
    topics = topics_disk_mb(settings)
    if topics is not None:
        emit(WORKLOAD, f"kwf n={count}", "topics_disk_mb" + suffix, topics, "MB")
    StatusView.close_shared()  # a new client, with a view of its own
    began = time.perf_counter()
    fresh = WorkflowClient(settings=settings)
    fresh.get_workflow_state("s-00000000")
    emit(WORKLOAD, f"kwf n={count}", "first_answer_s" + suffix, time.perf_counter() - began, "s")
    began = time.perf_counter()
    listed = len(fresh.list_workflows())
    emit(WORKLOAD, f"kwf n={count}", "list_s" + suffix, time.perf_counter() - began, "s")
    note(f"scale: list_workflows returned {listed}")
    fresh.close()
    StatusView.close_shared()
    runtime.kill()
    shutil.rmtree(settings.state_dir / "state", ignore_errors=True)
    began = time.perf_counter()
    runtime.start(wait=False)
    runtime.wait_ready()
    emit(WORKLOAD, f"kwf n={count}", "restore_s" + suffix, time.perf_counter() - began, "s")
    records, _ = runtime.restored()
    emit(WORKLOAD, f"kwf n={count}", "restored_records" + suffix, records, "records")
    emit(WORKLOAD, f"kwf n={count}", "state_disk_mb_restored" + suffix, disk_mb(settings.state_dir / "state"), "MB")


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
    args = parser.parse_args()
    with broker(warm_up_s=0) as bootstrap:
        run(bootstrap, count=args.count)


if __name__ == "__main__":
    main()
