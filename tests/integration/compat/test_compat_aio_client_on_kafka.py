"""``engine.aio.DaprWorkflowClient`` on Kafka: every sync call as a coroutine, none blocking the loop."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import pytest

import engine as wf
from engine.aio import DaprWorkflowClient, WorkflowClient
from tests.integration.compat import app

Status = wf.WorkflowStatus
# Generous bound for one instance to finish on a shared two-core machine.
DONE_S = 60


def new_id(label: str) -> str:
    return f"{label}-{uuid.uuid4().hex[:8]}"


async def ticks_while(awaitable: object) -> tuple[object, int]:
    """Await ``awaitable`` while a 10 ms ticker runs on the same loop; count the ticks it got."""
    ticks = 0
    stop = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not stop.is_set():
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    try:
        result = await awaitable  # type: ignore[misc]
    finally:
        stop.set()
        await task
    return result, ticks


def test_every_sync_method_is_a_coroutine_on_the_async_client(wfr: wf.WorkflowRuntime) -> None:
    assert WorkflowClient is DaprWorkflowClient
    for name in ("schedule_new_workflow", "get_workflow_state", "wait_for_workflow_start",
                 "wait_for_workflow_completion", "raise_workflow_event", "terminate_workflow",
                 "pause_workflow", "resume_workflow", "purge_workflow"):
        assert asyncio.iscoroutinefunction(getattr(DaprWorkflowClient, name)), name
        assert hasattr(wf.DaprWorkflowClient, name), name


def test_the_async_client_manages_an_instance_from_start_to_purge(wfr: wf.WorkflowRuntime) -> None:
    async def scenario() -> None:
        async with DaprWorkflowClient() as client:
            instance_id = new_id("aio")
            assert await client.schedule_new_workflow(app.waiter, instance_id=instance_id) == instance_id
            started = await client.wait_for_workflow_start(instance_id, timeout_in_seconds=DONE_S)
            assert started is not None and started.runtime_status is Status.RUNNING

            await client.pause_workflow(instance_id)
            assert (await client.get_workflow_state(instance_id)).runtime_status is Status.SUSPENDED
            await client.resume_workflow(instance_id)
            assert (await client.get_workflow_state(instance_id)).runtime_status is Status.RUNNING

            # The wait holds no thread and leaves the loop free: the ticker keeps ticking.
            waiting = asyncio.create_task(
                ticks_while(client.wait_for_workflow_completion(instance_id, timeout_in_seconds=DONE_S)))
            await asyncio.sleep(0.3)
            await client.raise_workflow_event(instance_id, "go", data={"approved": True})
            state, ticks = await waiting
            assert state.runtime_status is Status.COMPLETED
            assert json.loads(state.serialized_output) == {"approved": True}
            assert ticks >= 10

            running = await client.schedule_new_workflow(app.waiter, instance_id=new_id("aio-running"))
            with pytest.raises(ValueError, match="only ended instances"):
                await client.purge_workflow(running)
            await client.terminate_workflow(running, output="stop")
            assert (await client.get_workflow_state(running)).runtime_status is Status.TERMINATED

            await client.purge_workflow(instance_id, recursive=True)
            assert await client.get_workflow_state(instance_id) is None
            assert await client.get_workflow_state("no-such-instance") is None

    asyncio.run(scenario())


def test_many_waits_at_once_share_one_loop(wfr: wf.WorkflowRuntime) -> None:
    async def scenario() -> list[Status]:
        async with DaprWorkflowClient() as client:
            ids = await asyncio.gather(*(client.schedule_new_workflow(app.hello, input=f"n{i}")
                                         for i in range(20)))
            states = await asyncio.gather(*(client.wait_for_workflow_completion(i, timeout_in_seconds=DONE_S)
                                            for i in ids))
            return [s.runtime_status for s in states]

    began = time.monotonic()
    assert asyncio.run(scenario()) == [Status.COMPLETED] * 20
    assert time.monotonic() - began < DONE_S


def test_a_wait_times_out_with_timeout_error(wfr: wf.WorkflowRuntime) -> None:
    async def scenario() -> None:
        async with DaprWorkflowClient() as client:
            instance_id = await client.schedule_new_workflow(app.waiter)
            with pytest.raises(TimeoutError, match="did not reach"):
                await client.wait_for_workflow_completion(instance_id, timeout_in_seconds=0.5)
            await client.terminate_workflow(instance_id)

    asyncio.run(scenario())
