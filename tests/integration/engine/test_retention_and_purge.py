"""Purge deletes, retention purges on time, and a lost state folder comes back as exactly what is live."""

from __future__ import annotations

import logging
import re
import shutil
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

import engine as wf
from engine import WorkflowClient, WorkflowRuntime, WorkflowStatus
from engine.core.partitioner import partition_for
from engine.state.config import Settings
from engine.state.history_log import instance_of
from engine.state.topics import HISTORY, STATUS, workflow_topics
from streams.store import PartitionStore
from streams.topics import TopicSpec, ensure_topics
from tests.integration.engine.runtime_process import kwf, runtime_processes, wait_until

# Compaction a test can wait for: segments roll after a second and any dirt is cleaned
# (the broker's cleaner looks every 15 s).
FAST_COMPACTION = {"segment.ms": "1000", "min.cleanable.dirty.ratio": "0.01", "delete.retention.ms": "1000",
                   "max.compaction.lag.ms": "1000"}
COMPACTION_TIMEOUT_S = 90.0
RETENTION_S = 6.0
# A restart takes about 3 s and punctuation runs every 100 ms.
RETENTION_LATENESS_S = 8.0


def register(runtime: WorkflowRuntime) -> None:
    @runtime.activity(name="step")
    def step(ctx: Any, value: int) -> int:
        return value + 1

    @runtime.workflow(name="chain3")
    def chain3(ctx: wf.DaprWorkflowContext, value: int):
        for _ in range(3):
            value = yield ctx.call_activity(step, input=value)
        return value

    @runtime.workflow(name="waiter")
    def waiter(ctx: wf.DaprWorkflowContext, _: Any):
        got = yield ctx.wait_for_external_event("go")
        return got


def read_topic(settings: Settings, topic: str) -> list[tuple[int, bytes | None, bytes | None]]:
    """Every committed record of ``topic`` up to its current end: (partition, key, value)."""
    consumer = Consumer({**settings.client(), "group.id": f"read-{uuid.uuid4().hex}", "enable.auto.commit": False,
                         "isolation.level": "read_committed"})
    records = []
    try:
        partitions = consumer.list_topics(topic, timeout=30).topics[topic].partitions
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1] for p in partitions}
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        deadline = time.monotonic() + 30
        while True:
            for message in consumer.consume(1000, 0.2):
                if message.error() is None:
                    records.append((message.partition(), message.key(), message.value()))
            positions = consumer.position([TopicPartition(topic, p) for p in partitions])
            if all(tp.offset >= ends[tp.partition] for tp in positions):
                return records
            assert time.monotonic() < deadline, f"{topic} not read to its end"
    finally:
        consumer.close()


def snapshot_stores(settings: Settings) -> dict[bytes, bytes]:
    """Every key and value of the orchestrator's stores in this state folder."""
    found: dict[bytes, bytes] = {}
    for folder in sorted((settings.state_dir / "orchestrator").glob("*/*.inbox-*")):
        with PartitionStore.open(folder) as store:
            found.update(store.scan_prefix(b""))
    return found


def id_in_each_partition(prefix: str, partitions: int) -> list[str]:
    ids: dict[int, str] = {}
    n = 0
    while len(ids) < partitions:
        candidate = f"{prefix}-{n}"
        ids.setdefault(partition_for(candidate.encode(), partitions), candidate)
        n += 1
    return list(ids.values())


def live_values(records: list[tuple[int, bytes | None, bytes | None]], instance_id: str) -> list[bytes]:
    key = instance_id.encode()
    return [v for _, k, v in records if v is not None and instance_of(k) == key]


def test_a_purged_instance_leaves_store_and_topics_and_a_lost_state_folder_comes_back_as_what_is_live(
        settings: Settings, client: WorkflowClient, start_runtime: Callable[..., WorkflowRuntime],
        caplog: pytest.LogCaptureFixture) -> None:
    specs = [TopicSpec(s.name, s.partitions, {**s.config, **FAST_COMPACTION}, s.replication_factor, s.co_partitioned)
             if s.name in (settings.topic(HISTORY), settings.topic(STATUS)) else s for s in workflow_topics(settings)]
    ensure_topics(AdminClient(settings.client()), specs)
    runtime = start_runtime(register)
    chains = [client.schedule_new_workflow("chain3", input=i, instance_id=f"chain-{i}") for i in range(20)]
    waiter = client.schedule_new_workflow("waiter", instance_id="waiter")
    for instance_id in chains:
        state = client.wait_for_workflow_completion(instance_id, timeout_in_seconds=60)
        assert state is not None and state.runtime_status is WorkflowStatus.COMPLETED
    purged, kept = chains[:10], chains[10:]
    for instance_id in purged:
        client.purge_workflow(instance_id)
        assert client.get_workflow_state(instance_id) is None
    assert all(live_values(read_topic(settings, settings.topic(HISTORY)), i) for i in kept)

    # The active segment is never compacted: roll every partition with a new instance.
    time.sleep(1.5)
    fillers = id_in_each_partition("filler", settings.partitions)
    for instance_id in fillers:
        client.schedule_new_workflow("chain3", input=0, instance_id=instance_id)
    for instance_id in fillers:
        client.wait_for_workflow_completion(instance_id, timeout_in_seconds=60)

    def compacted() -> bool:
        history = read_topic(settings, settings.topic(HISTORY))
        statuses = read_topic(settings, settings.topic(STATUS))
        return not any(live_values(history, i) or live_values(statuses, i) for i in purged)

    wait_until(compacted, COMPACTION_TIMEOUT_S, "the purged instances are still in the compacted topics",
               interval=2.0)
    history = read_topic(settings, settings.topic(HISTORY))
    for instance_id in kept:
        assert len(live_values(history, instance_id)) == 8, instance_id  # start, 3 x (scheduled, done), end

    runtime.shutdown()
    before = snapshot_stores(settings)
    assert before, "the stores are empty"
    for instance_id in purged:
        assert not [k for k in before if instance_id.encode() + b"\x00" in k or k.endswith(instance_id.encode())], \
            f"{instance_id} is still in the store"

    shutil.rmtree(settings.state_dir)  # the machine is lost
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="streams.restore"):
        restored = start_runtime(register)
    restored_records = sum(int(m.group(1)) for m in re.finditer(r"restored \S+: (\d+) records", caplog.text))
    restored.shutdown()
    assert snapshot_stores(settings) == before
    written = sum(_ends(settings, settings.topic(HISTORY)).values())
    print(f"restore read {restored_records} records of {written} written")
    assert restored_records < written

    again = start_runtime(register)
    client.raise_workflow_event(waiter, "go", data="went")
    state = client.wait_for_workflow_completion(waiter, timeout_in_seconds=60)
    assert state is not None and state.serialized_output == '"went"'
    again.shutdown()


def _ends(settings: Settings, topic: str) -> dict[int, int]:
    consumer = Consumer({**settings.client(), "group.id": f"ends-{uuid.uuid4().hex}"})
    try:
        partitions = consumer.list_topics(topic, timeout=30).topics[topic].partitions
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1] for p in partitions}
    finally:
        consumer.close()


def test_retention_purges_an_ended_instance_on_time_across_a_restart(
        settings: Settings, client: WorkflowClient, tmp_path: Path) -> None:
    with runtime_processes(settings, tmp_path) as process:
        runtime = process("p0", KWF_RETENTION_COMPLETED=f"{RETENTION_S:g}s")
        done = client.schedule_new_workflow("sleeper", input=0.1, instance_id="done")
        waiting = client.schedule_new_workflow("await_approval", input={"item": "lamp"}, instance_id="waiting")
        stopped = client.schedule_new_workflow("await_approval", input={"item": "desk"}, instance_id="stopped")
        state = client.wait_for_workflow_completion(done, timeout_in_seconds=30)
        assert state is not None and state.runtime_status is WorkflowStatus.COMPLETED
        ended_at = state.last_updated_at.timestamp()
        client.terminate_workflow(stopped)
        # The retention is durable: the process that purges is not the one that saw the end.
        runtime.stop()
        assert client.get_workflow_state(done) is not None
        runtime.start()
        wait_until(lambda: client.get_workflow_state(done) is None, RETENTION_S + RETENTION_LATENESS_S,
                   "the completed instance was not purged by retention", runtime.check_alive, interval=0.1)
        purged_after = time.time() - ended_at
        print(f"purged {purged_after:.2f} s after it completed (retention {RETENTION_S:g} s)")
        assert purged_after >= RETENTION_S - 0.5
        assert "purging done: COMPLETED longer than its retention" in runtime.current_log()
        # Retention applies to completed instances only: the others stay.
        state = client.get_workflow_state(stopped)
        assert state is not None and state.runtime_status is WorkflowStatus.TERMINATED
        state = client.get_workflow_state(waiting)
        assert state is not None and state.runtime_status is WorkflowStatus.RUNNING
        runtime.stop()
    assert not [k for k in snapshot_stores(_subprocess_settings(settings, runtime.folder, runtime.process_id))
                if b"done" in k]


def _subprocess_settings(settings: Settings, folder: Path, process_id: str) -> Settings:
    return Settings.from_env(bootstrap_servers=settings.bootstrap_servers, topic_prefix=settings.topic_prefix,
                             partitions=settings.partitions, state_dir=folder / f"state-{process_id}",
                             process_id=process_id)


def test_bulk_purge_and_terminate_by_filter_are_one_command_each(
        settings: Settings, client: WorkflowClient, start_runtime: Callable[..., WorkflowRuntime],
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Small chunks, so each partition's command goes on in several transactions.
    monkeypatch.setattr("engine.orchestration.orchestrator.BULK_CHUNK", 2)
    start_runtime(register)
    early = [client.schedule_new_workflow("chain3", input=i, instance_id=f"early-{i}") for i in range(6)]
    for instance_id in early:
        client.wait_for_workflow_completion(instance_id, timeout_in_seconds=60)
    time.sleep(0.05)
    cut = datetime.now(UTC)
    late = [client.schedule_new_workflow("chain3", input=i, instance_id=f"late-{i}") for i in range(3)]
    waiters = [client.schedule_new_workflow("waiter", instance_id=f"waiter-{i}") for i in range(5)]
    for instance_id in late:
        client.wait_for_workflow_completion(instance_id, timeout_in_seconds=60)
    for instance_id in waiters:
        client.wait_for_workflow_start(instance_id, timeout_in_seconds=60)

    purge = client.purge_workflows(status=["COMPLETED"], name="chain3", created_before=cut)
    assert purge.partitions == settings.partitions
    assert sorted(purge.matched) == sorted(early)
    assert purge.wait(timeout=60) == len(early)
    assert all(client.get_workflow_state(i) is None for i in early)
    assert all(client.get_workflow_state(i) is not None for i in [*late, *waiters])

    terminate = client.terminate_workflows(name="waiter", output="closed")
    assert terminate.wait(timeout=60) == len(waiters)
    for instance_id in waiters:
        state = client.get_workflow_state(instance_id)
        assert state is not None and state.runtime_status is WorkflowStatus.TERMINATED
        assert state.serialized_output == '"closed"'

    done = kwf(settings, "purge", "--status", "TERMINATED", "--created-after", cut.isoformat())
    assert done.returncode == 0, done.stderr
    assert f"done: {len(waiters)} instances" in done.stdout, done.stdout
    assert all(client.get_workflow_state(i) is None for i in waiters)
    assert all(client.get_workflow_state(i) is not None for i in late)
    refused = kwf(settings, "purge", "--status", "RUNNING")
    assert refused.returncode == 1 and "cannot be purged" in refused.stderr
