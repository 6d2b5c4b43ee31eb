"""A finished workflow run is freed by reference counting alone: the runtime raises the cycle
collector's thresholds for speed, so a run that formed a cycle stayed in memory until a rare
full collection, and the process grew with every instance ever run."""

from __future__ import annotations

import gc

import engine as wf
from engine.core.history import ExecutionStarted, HistoryEvent, TaskCompleted, WorkflowStatus
from engine.replay.executor import Executor, Registry
from engine.replay.workflow_run import WorkflowRun
from tests.unit.engine.driver import START


def step(ctx: wf.WorkflowActivityContext, value: int) -> int:
    return value + 1


def chain3(ctx: wf.DaprWorkflowContext, value: int):
    value = yield ctx.call_activity(step, input=value)
    value = yield ctx.call_activity(step, input=value)
    value = yield ctx.call_activity(step, input=value)
    return value


def run_to_the_end(executor: Executor, instance_id: str) -> None:
    history: list[HistoryEvent] = []

    def deliver(body: object) -> WorkflowStatus:
        event = HistoryEvent(instance_id, "exec", len(history), START, body)  # type: ignore[arg-type]
        result = executor.execute(instance_id, history, [event])
        history.append(event)
        history.extend(HistoryEvent(instance_id, "exec", len(history) + n, START, action)
                       for n, action in enumerate(result.actions))
        return result.status

    deliver(ExecutionStarted("chain3", "1"))
    statuses = [deliver(TaskCompleted(task_id, str(task_id + 2))) for task_id in range(3)]
    assert statuses[-1] is WorkflowStatus.COMPLETED


def live_runs() -> int:
    return sum(type(o) is WorkflowRun for o in gc.get_objects())  # not isinstance: a proxy passes it


def test_finished_runs_leave_nothing_for_the_cycle_collector() -> None:
    registry = Registry()
    registry.register_workflow(chain3)
    registry.register_activity(step)
    executor = Executor(registry)
    gc.collect()
    gc.disable()
    try:
        before = live_runs()
        for n in range(50):
            run_to_the_end(executor, f"i{n}")
        assert executor.cached_instances == 0
        assert live_runs() == before
    finally:
        gc.enable()


def test_a_run_evicted_while_waiting_is_freed_too() -> None:
    registry = Registry()
    registry.register_workflow(chain3)
    registry.register_activity(step)
    executor = Executor(registry, cache_size=1)
    gc.collect()
    gc.disable()
    try:
        before = live_runs()
        for n in range(20):  # each start pushes the one before out of the cache, mid-workflow
            executor.execute(f"i{n}", [], [HistoryEvent(f"i{n}", "exec", 0, START, ExecutionStarted("chain3", "1"))])
        assert live_runs() == before + 1
    finally:
        gc.enable()
