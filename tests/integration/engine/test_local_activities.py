"""Local activities through real ``kwf run`` processes: a step runs the activities its own
process has and records their results in the same transaction; a process split into an
orchestrator and a worker goes through Kafka as before.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

from confluent_kafka import Consumer, KafkaError, TopicPartition

from engine import WorkflowClient, WorkflowStatus
from engine.api.history_reader import read_history
from engine.core.history import TaskCompleted, TaskFailed, TaskScheduled
from engine.state.codec import decode_event, decode_task
from engine.state.config import Settings
from tests.integration.engine.runtime_process import read_runs, runtime_processes

WAIT_S = 60


def tasks_of(settings: Settings, instance_id: str) -> list[int]:
    """Task IDs of the committed ActivityTask records sent for the instance."""
    return [task.task_id for task in map(decode_task, records_of(settings, "activities"))
            if task.instance_id == instance_id]


def inbox_results_of(settings: Settings, instance_id: str) -> list[int]:
    """Task IDs of the activity results sent to the inbox for the instance."""
    return [event.event.task_id for event in map(decode_event, records_of(settings, "inbox"))
            if event.instance_id == instance_id and isinstance(event.event, TaskCompleted | TaskFailed)]


def records_of(settings: Settings, name: str) -> list[bytes]:
    """The committed values of one of the runtime's topics, read to its end."""
    topic = settings.topic(name)
    reader = Consumer({**settings.client(), "group.id": uuid.uuid4().hex, "enable.partition.eof": True,
                       "isolation.level": "read_committed", "enable.auto.commit": False})
    found: list[bytes] = []
    try:
        partitions = list(reader.list_topics(topic, timeout=10).topics[topic].partitions)
        reader.assign([TopicPartition(topic, p, 0) for p in partitions])
        at_end: set[int] = set()
        deadline = time.monotonic() + 30
        while len(at_end) < len(partitions):
            assert time.monotonic() < deadline, f"{topic} not read to its end"
            message = reader.poll(0.5)
            if message is None:
                continue
            if message.error() is not None:
                if message.error().code() == KafkaError._PARTITION_EOF:
                    at_end.add(message.partition())
                continue
            found.append(message.value())
    finally:
        reader.close()
    return found


def test_a_chain_in_one_process_runs_its_activities_locally_without_activity_tasks(
        settings: Settings, client: WorkflowClient, tmp_path: Path) -> None:
    runs_dir = tmp_path / "runs"
    runs_dir.mkdir()
    with runtime_processes(settings, tmp_path) as process:
        # A budget no loaded machine runs out of: every activity here runs within it.
        process("p0", KWF_TEST_RUNS_DIR=str(runs_dir), KWF_LOCAL_ACTIVITY_BUDGET_MS="5000")
        instance_id = client.schedule_new_workflow("echo_chain3", input="a", instance_id="local-chain")
        state = client.wait_for_workflow_completion(instance_id, timeout_in_seconds=WAIT_S)

    assert state is not None and state.runtime_status is WorkflowStatus.COMPLETED, state
    assert state.serialized_output == '[["a"]]'
    history = read_history(settings, instance_id)
    scheduled = [e.event.task_id for e in history if isinstance(e.event, TaskScheduled)]
    completed = [e.event.task_id for e in history if isinstance(e.event, TaskCompleted)]
    assert scheduled == completed == [0, 1, 2]
    # The start's step sends its activity as a task and runs it here once it has committed
    # (RUNNING shows first); the next transaction records its result, so the worker that reads
    # the task sends none to the inbox. The later ones run in their steps, with no task.
    assert tasks_of(settings, instance_id) == [0]
    assert inbox_results_of(settings, instance_id) == [], "the early run's result came through the inbox"
    assert len([r for r in read_runs(runs_dir) if r.what == "echo"]) == 3, "each activity ran once"


def test_an_activity_longer_than_the_budget_is_handed_over_and_runs_once(
        settings: Settings, client: WorkflowClient, tmp_path: Path) -> None:
    runs_dir = tmp_path / "runs"
    runs_dir.mkdir()
    with runtime_processes(settings, tmp_path) as process:
        process("p0", KWF_TEST_RUNS_DIR=str(runs_dir), KWF_LOCAL_ACTIVITY_BUDGET_MS="20")
        instance_id = client.schedule_new_workflow("echo_then_slow_step", input=0.3, instance_id="handed-over")
        state = client.wait_for_workflow_completion(instance_id, timeout_in_seconds=WAIT_S)

    assert state is not None and state.runtime_status is WorkflowStatus.COMPLETED, state
    assert state.serialized_output == '"slept 0.3"'
    # Sorted: the two tasks' records may sit in different partitions of the activities topic.
    assert sorted(tasks_of(settings, instance_id)) == [0, 1], "not done within the budget: an ordinary task"
    # (Task 0's early run goes through the inbox too when the loaded machine runs it past the budget.)
    assert 1 in inbox_results_of(settings, instance_id), "the handed-over run's result goes through the inbox"
    starts = [r for r in read_runs(runs_dir) if r.what == "start"]
    assert len(starts) == 1, f"the task read from Kafka ran again beside its local run: {starts}"


def test_an_orchestrator_and_a_worker_in_two_processes_still_go_through_kafka(
        settings: Settings, client: WorkflowClient, tmp_path: Path) -> None:
    with runtime_processes(settings, tmp_path) as process:
        process("orchestrator", role="orchestrator")
        process("worker", role="worker")
        instance_id = client.schedule_new_workflow("echo_chain3", input="b", instance_id="split-chain")
        state = client.wait_for_workflow_completion(instance_id, timeout_in_seconds=WAIT_S)

    assert state is not None and state.runtime_status is WorkflowStatus.COMPLETED, state
    assert state.serialized_output == '[["b"]]'
    assert sorted(tasks_of(settings, instance_id)) == [0, 1, 2]
