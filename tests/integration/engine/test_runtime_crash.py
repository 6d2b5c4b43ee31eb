"""Durability across SIGKILL: the seed's "100 tasks, 40 done, crash" claim and its relatives.

Every process that dies here is a real subprocess killed with SIGKILL, so no shutdown
code runs: open transactions stay open, offsets stay uncommitted, stores are not closed.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import pytest

from engine import TaskCompleted, TaskScheduled, WorkflowClient, WorkflowStatus
from engine.config import Settings
from engine.history_reader import read_history
from engine.partitioner import partition_for
from tests.integration.engine.runtime_process import read_runs, runtime_processes, wait_until

ITEMS = 100
KILL_AFTER = 40
# Between an activity's return and its worker's offset commit its result is in transit
# (report loop, delivery, commit: ~50 ms here); a task that ended this close to the kill
# may run again. The margin covers a busy machine.
IN_TRANSIT_S = 0.3


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
        in_transit = {r.item for r in at_kill if r.what == "end" and r.at > killed_at - IN_TRANSIT_S}
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
          f"finished in the last {IN_TRANSIT_S} s: {len(in_transit)}, re-run: {len(reran)} "
          f"({len(reran & in_flight)} in flight, {len(reran & in_transit)} in transit)")
    # The seed: only the unfinished tasks run again. A task that finished well before the
    # kill (its result acknowledged) must not; one in flight may.
    assert reran <= in_flight | in_transit, (
        f"re-ran {sorted(reran - in_flight - in_transit, key=int)} that had finished more than {IN_TRANSIT_S} s "
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
