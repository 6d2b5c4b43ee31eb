"""The workflows and activities the benchmarks run: ``kwf run --app bench.apps:runtime``.

Activities are trivial on purpose: the benchmarks measure the runtime, not the work.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import engine as wf

runtime = wf.WorkflowRuntime()

# Set in the environment of a runtime restarted after a kill: ``hold`` then returns at once.
RELEASE_ENV = "KWF_BENCH_RELEASE"


@runtime.activity(name="step")
def step(ctx: Any, value: int) -> int:
    return value + 1


@runtime.activity(name="sleep_1s")
async def sleep_1s(ctx: Any, value: int) -> int:
    await asyncio.sleep(1)
    return value


@runtime.activity(name="hold")
async def hold(ctx: Any, value: int) -> int:
    """Waits forever in the first runtime process, returns at once in a released one."""
    if not os.environ.get(RELEASE_ENV):
        await asyncio.Event().wait()
    return value


@runtime.workflow(name="chain3")
def chain3(ctx: wf.DaprWorkflowContext, value: int):
    value = yield ctx.call_activity(step, input=value)
    value = yield ctx.call_activity(step, input=value)
    value = yield ctx.call_activity(step, input=value)
    return value


# The application of the second runtime process of the multi-app benchmark (bench.multi_app).
REMOTE_APP = "bench-workers"


@runtime.workflow(name="chain3_remote")
def chain3_remote(ctx: wf.DaprWorkflowContext, value: int):
    """``chain3`` with each step run by the workers of another application."""
    for _ in range(3):
        value = yield ctx.call_activity(step, input=value, app_id=REMOTE_APP)
    return value


@runtime.workflow(name="fan_out")
def fan_out(ctx: wf.DaprWorkflowContext, count: int):
    results = yield wf.when_all([ctx.call_activity(step, input=i) for i in range(count)])
    return len(results)


@runtime.workflow(name="fan_out_async")
def fan_out_async(ctx: wf.DaprWorkflowContext, count: int):
    results = yield wf.when_all([ctx.call_activity(sleep_1s, input=i) for i in range(count)])
    return len(results)


@runtime.workflow(name="chain3_then_hold")
def chain3_then_hold(ctx: wf.DaprWorkflowContext, value: int):
    """Three steps of history, then an activity in flight until the runtime is restarted released."""
    for _ in range(3):
        value = yield ctx.call_activity(step, input=value)
    value = yield ctx.call_activity(hold, input=value)
    return value


@runtime.workflow(name="wait_for_go")
def wait_for_go(ctx: wf.DaprWorkflowContext, value: int):
    """Waits for the ``go`` event and returns its data: instances parked on a partition (failover)."""
    data = yield ctx.wait_for_external_event("go")
    return data
