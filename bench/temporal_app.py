"""The workflow and activity ``bench.peer_temporal`` runs on Temporal (its SDK needs them at
module level); imported only in the child process, where ``temporalio`` is installed."""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity, workflow


@activity.defn(name="step")
async def step(value: int) -> int:
    return value + 1


@workflow.defn(name="Chain3", sandboxed=False)
class Chain3:
    @workflow.run
    async def run(self, value: int) -> int:
        for _ in range(3):
            value = await workflow.execute_activity(step, value, start_to_close_timeout=timedelta(seconds=10))
        return value
