"""Durability across SIGKILL: the seed's "100 tasks, 40 done, crash" claim and its relatives.

Every process that dies here is a real subprocess killed with SIGKILL, so no shutdown
code runs: open transactions stay open, offsets stay uncommitted, stores are not closed.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, TopicPartition

from engine import WorkflowClient, WorkflowStatus
from engine.api.history_reader import read_history
from engine.core.history import TaskCompleted, TaskScheduled
from engine.core.partitioner import partition_for
from engine.edges.worker import COMMIT_INTERVAL_S, skipped_offsets
from engine.state.codec import decode_task
from engine.state.config import Settings
from tests.integration.engine.runtime_process import read_runs, runtime_processes, wait_until

ITEMS = 100
KILL_AFTER = 40
# A finished task's offset is committed within the worker's commit interval of its result's
# delivery; a second covers the delivery and the commit's round trip on a loaded machine.
ACK_WITHIN_S = COMMIT_INTERVAL_S + 1.0


def acknowledged_items(settings: Settings) -> set[str]:
    """Fan-out items whose activity task the worker group's commit acknowledges.

    Below the committed offset, or listed as finished in the commit's metadata: what the
    next owner of a partition skips. Those tasks are done for good and must not run again,
    however close to the kill they finished. The rest (running, or finished with the result
    in transit or not yet committed) may.
    """
    topic = settings.topic("activities")
    group = Consumer({**settings.client(), "group.id": f"{settings.topic_prefix}.workers", "enable.auto.commit": False})
    try:
        partitions = list(group.list_topics(topic, timeout=10).topics[topic].partitions)
        found = group.committed([TopicPartition(topic, p) for p in partitions], timeout=10)
        committed = {tp.partition: tp.offset for tp in found}
        skipped = {tp.partition: skipped_offsets(tp.offset, tp.metadata) for tp in found}
    finally:
        group.close()
    reader = Consumer({**settings.client(), "group.id": uuid.uuid4().hex, "enable.partition.eof": True,
                       "isolation.level": "read_committed", "enable.auto.commit": False})
    done: set[str] = set()
    try:
        reader.assign([TopicPartition(topic, p, 0) for p in partitions])
        at_end: set[int] = set()
        while len(at_end) < len(partitions):
            message = reader.poll(1.0)
            if message is None:
                continue
            if message.error() is not None:
                if message.error().code() == KafkaError._PARTITION_EOF:
                    at_end.add(message.partition())
                continue
            if message.offset() < committed.get(message.partition(), -1) or \
                    message.offset() in skipped.get(message.partition(), set()):
                done.add(str(json.loads(decode_task(message.value()).input)))
    finally:
        reader.close()
    return done


def test_fan_out_of_100_survives_a_kill_after_40_and_reruns_only_what_was_in_flight(
        settings: Settings, client: WorkflowClient, tmp_path: Path) -> None:
    runs_dir = tmp_path / "runs"
    runs_dir.mkdir()
    with runtime_processes(settings, tmp_path) as process:
        runtime = process("p0", KWF_TEST_RUNS_DIR=str(runs_dir))
        instance_id = client.schedule_new_workflow("fan_out_recorded", input=ITEMS, instance_id="fan-out-crash")

        wait_until(lambda: sum(r.what == "end" for r in read_runs(runs_dir)) >= KILL_AFTER, 60,
                   lambda: f"{KILL_AFTER} activities never finished: {Counter(r.what for r in read_runs(runs_dir))}",
                   runtime.check_alive, interval=0.005)
        runtime.kill()
        killed_at = time.time()
        at_kill = read_runs(runs_dir)
        started = {r.item for r in at_kill if r.what == "start"}
        ended = {r.item for r in at_kill if r.what == "end"}
        in_flight = started - ended
        # Finished, but not acknowledged by the worker's committed offset when it died.
        acknowledged = acknowledged_items(settings)
        in_transit = ended - acknowledged
        # The worker acknowledges what it finished, promptly: only the last moments' results
        # may still be unacknowledged at a kill.
        stale = {r.item for r in at_kill if r.what == "end" and r.at < killed_at - ACK_WITHIN_S} - acknowledged
        assert not stale, (f"finished more than {ACK_WITHIN_S:.2f} s before the kill but not acknowledged by the "
                           f"worker's commit: {sorted(stale, key=int)}")
        assert len(ended) >= KILL_AFTER and len(ended) < ITEMS, f"killed too late: {len(ended)} had finished"

        runtime.start()
        state = client.wait_for_workflow_completion(instance_id, timeout_in_seconds=90)

    assert state is not None and state.runtime_status is WorkflowStatus.COMPLETED, state
    assert json.loads(state.serialized_output) == sum(2 * i for i in range(1, ITEMS + 1))

    history = read_history(settings, instance_id)
    scheduled = [e for e in history if isinstance(e.event, TaskScheduled)]
    completed = Counter(e.event.task_id for e in history if isinstance(e.event, TaskCompleted))
    assert len(scheduled) == ITEMS, f"{len(scheduled)} TaskScheduled events, want {ITEMS} (re-scheduled after restart?)"
    assert len({e.event.task_id for e in scheduled}) == ITEMS
    assert len(completed) == ITEMS and max(completed.values()) == 1, f"TaskCompleted per task: {completed}"

    all_runs = read_runs(runs_dir)
    starts = Counter(r.item for r in all_runs if r.what == "start")
    assert set(starts) == {str(i) for i in range(1, ITEMS + 1)}, "some item never ran"
    reran = {item for item, n in starts.items() if n > 1}
    print(f"finished before the kill: {len(ended)}, in flight: {len(in_flight)}, "
          f"finished but not committed: {len(in_transit)}, re-run: {len(reran)} "
          f"({len(reran & in_flight)} in flight, {len(reran & in_transit)} in transit)")
    # The seed: only the unfinished tasks run again. A task that finished well before the
    # kill (its result acknowledged) must not; one in flight may.
    assert reran <= in_flight | in_transit, (
        f"re-ran {sorted(reran - in_flight - in_transit, key=int)}, whose tasks the worker had committed "
        f"before the kill (in flight then: {sorted(in_flight, key=int)})")
    assert len(reran) <= len(in_flight) + len(in_transit)


def test_a_worker_killed_mid_activity_hands_it_to_a_new_worker(
        settings: Settings, client: WorkflowClient, tmp_path: Path) -> None:
    runs_dir = tmp_path / "runs"
    runs_dir.mkdir()
    with runtime_processes(settings, tmp_path) as process:
        orchestrator = process("orchestrator", role="orchestrator", wait=False)
        first = process("worker-1", role="worker", KWF_TEST_RUNS_DIR=str(runs_dir))
        orchestrator.wait_ready()
        instance_id = client.schedule_new_workflow("one_slow_step", input=2.0, instance_id="slow-step")

        wait_until(lambda: any(r.what == "start" for r in read_runs(runs_dir)), 30,
                   "the first worker never started the activity", first.check_alive)
        first.kill()
        assert not any(r.what == "end" for r in read_runs(runs_dir)), "the activity finished before the kill"
        second = process("worker-2", role="worker", KWF_TEST_RUNS_DIR=str(runs_dir))
        state = client.wait_for_workflow_completion(instance_id, timeout_in_seconds=60)
        assert state is not None and state.runtime_status is WorkflowStatus.COMPLETED, (
            state, orchestrator.current_log()[-2000:])

    assert json.loads(state.serialized_output) == "slept 2.0"
    runs = read_runs(runs_dir)
    assert [r.pid for r in runs if r.what == "start"] == [first.proc.pid, second.proc.pid], runs
    assert [r.pid for r in runs if r.what == "end"] == [second.proc.pid], runs
    history = read_history(settings, instance_id)
    completions = [e for e in history if isinstance(e.event, TaskCompleted)]
    kinds = [type(e.event).__name__ for e in history]
    assert len(completions) == 1, f"want exactly one TaskCompleted, history: {kinds}"


def test_instances_of_a_runtime_killed_for_good_complete_on_the_other(
        settings: Settings, client: WorkflowClient, tmp_path: Path) -> None:
    runs_dir = tmp_path / "runs"
    runs_dir.mkdir()
    with runtime_processes(settings, tmp_path) as process:
        doomed = process("a", KWF_TEST_RUNS_DIR=str(runs_dir))
        survivor = process("b", KWF_TEST_RUNS_DIR=str(runs_dir))
        # Cooperative rebalancing hands the second process its share in a second round.
        wait_until(lambda: survivor.assigned() and doomed.assigned() and
                   len(survivor.assigned() | doomed.assigned()) == settings.partitions, 30,
                   lambda: f"partitions not shared: a {doomed.assigned()}, b {survivor.assigned()}")
        ids = [f"pair-{i}" for i in range(20)]
        for instance_id in ids:
            client.schedule_new_workflow("timer_then_activity", input=3.0, instance_id=instance_id)
        for instance_id in ids:
            client.wait_for_workflow_start(instance_id, timeout_in_seconds=30)
        owned = doomed.assigned()
        doomed.kill()
        states = {i: client.wait_for_workflow_completion(i, timeout_in_seconds=60) for i in ids}

    orphaned = [i for i in ids if partition_for(i.encode(), settings.partitions) in owned]
    assert orphaned, f"no instance lived on the killed process (partitions {owned}): the test proves nothing"
    not_done = {i: s.runtime_status.name for i, s in states.items() if s.runtime_status is not WorkflowStatus.COMPLETED}
    assert not not_done, f"instances that did not complete: {not_done}"
    assert {i: json.loads(s.serialized_output) for i, s in states.items()} == {i: i for i in ids}
    ran_on = {r.item: r.pid for r in read_runs(runs_dir) if r.what == "echo"}
    assert set(ran_on) == set(ids)
    assert set(ran_on.values()) == {survivor.proc.pid}, "an activity ran on the killed process, after its kill?"
    # The killed process had committed on its partitions: the survivor aborted whatever it
    # left open by fencing its producer, instead of waiting for the transaction timeout.
    assert f"fenced the producer of departed {settings.topic_prefix}.orchestrator-{doomed.process_id}" in \
        survivor.log_path.read_text(errors="replace")


FAN_OUT = 200
# The worker's threads for plain activities (engine.worker.ActivityWorker's default): the
# most that can be running, or finished with their offsets not yet committed, at a kill.
WORKER_THREADS = 32
# The promise: a crash re-runs no more than the worker's threads, plus this margin.
RERUN_MARGIN = 2


@pytest.mark.parametrize("kill_at", [40, 96, 150])
def test_a_fan_out_of_plain_activities_killed_at_any_point_reruns_at_most_the_threads(
        settings: Settings, client: WorkflowClient, tmp_path: Path, kill_at: int) -> None:
    runs_dir = tmp_path / "runs"
    runs_dir.mkdir()
    with runtime_processes(settings, tmp_path) as process:
        runtime = process("p0", KWF_TEST_RUNS_DIR=str(runs_dir))
        instance_id = client.schedule_new_workflow("fan_out_plain", input=FAN_OUT, instance_id=f"plain-{kill_at}")

        wait_until(lambda: sum(r.what == "start" for r in read_runs(runs_dir)) >= kill_at, 60,
                   lambda: f"{kill_at} activities never started: {Counter(r.what for r in read_runs(runs_dir))}",
                   runtime.check_alive, interval=0.002)
        runtime.kill()
        at_kill = read_runs(runs_dir)
        started = {r.item for r in at_kill if r.what == "start"}
        ended = {r.item for r in at_kill if r.what == "end"}
        in_flight = started - ended
        assert len(started) < FAN_OUT, "killed too late: every activity had started"

        runtime.start()
        state = client.wait_for_workflow_completion(instance_id, timeout_in_seconds=90)

    assert state is not None and state.runtime_status is WorkflowStatus.COMPLETED, state
    assert json.loads(state.serialized_output) == sum(2 * i for i in range(1, FAN_OUT + 1))
    starts = Counter(r.item for r in read_runs(runs_dir) if r.what == "start")
    assert set(starts) == {str(i) for i in range(1, FAN_OUT + 1)}, "some item never ran"
    reran = {item for item, n in starts.items() if n > 1}
    print(f"kill at {kill_at} started: {len(started)} started, {len(ended)} finished, {len(in_flight)} in flight; "
          f"re-run: {len(reran)} ({len(reran & in_flight)} in flight, {len(reran & ended)} finished)")
    assert len(reran) <= WORKER_THREADS + RERUN_MARGIN, (
        f"re-ran {len(reran)}: {len(reran & ended)} of the {len(ended)} finished ones and "
        f"{len(reran & in_flight)} of the {len(in_flight)} in flight")
