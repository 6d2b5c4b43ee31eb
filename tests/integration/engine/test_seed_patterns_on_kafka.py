"""The seed's Python examples, unchanged but for their import line, end to end on Kafka."""

from __future__ import annotations

import json
from collections.abc import Callable
from types import SimpleNamespace

from engine import WorkflowClient, WorkflowRuntime, WorkflowStatus
from examples import fan_out, task_chain


def register_module(runtime: WorkflowRuntime, module: object, workflows: list[str], activities: list[str]) -> None:
    for name in workflows:
        runtime.register_workflow(getattr(module, name))
    for name in activities:
        runtime.register_activity(getattr(module, name))


def test_task_chain_gives_the_results_its_activities_compute(
        start_runtime: Callable[..., WorkflowRuntime], client: WorkflowClient) -> None:
    start_runtime(lambda r: register_module(r, task_chain, ["task_chain_workflow"],
                                            ["step1", "step2", "step3", "error_handler"]))
    instance_id = client.schedule_new_workflow(task_chain.task_chain_workflow, input=10)
    state = client.wait_for_workflow_completion(instance_id, timeout_in_seconds=60)
    assert state is not None
    assert state.runtime_status is WorkflowStatus.COMPLETED, state.failure_details
    # step1: 10+1=11, step2: 11*2=22, step3: 22^2=20 (xor)
    assert json.loads(state.serialized_output) == [11, 22, 20]


def test_fan_out_sums_a_batch_of_100(start_runtime: Callable[..., WorkflowRuntime], client: WorkflowClient,
                                     monkeypatch) -> None:
    # The seed sleeps 5 s per item; patch only the module's view of time, not every thread's.
    monkeypatch.setattr(fan_out, "time", SimpleNamespace(sleep=lambda _: None))
    totals: list[int] = []
    original = fan_out.process_results

    def record(ctx, final_result: int):
        totals.append(final_result)
        return original(ctx, final_result)

    def register(runtime: WorkflowRuntime) -> None:
        runtime.register_workflow(fan_out.batch_processing_workflow)
        runtime.register_activity(fan_out.get_work_batch)
        runtime.register_activity(fan_out.process_work_item)
        runtime.register_activity(record, name="process_results")

    start_runtime(register)
    instance_id = client.schedule_new_workflow(fan_out.batch_processing_workflow, input=100)
    state = client.wait_for_workflow_completion(instance_id, timeout_in_seconds=90)
    assert state is not None and state.runtime_status is WorkflowStatus.COMPLETED, state
    assert totals == [sum(2 * (i + 1) for i in range(100))]
