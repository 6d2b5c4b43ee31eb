"""Workflows and activities the runtime subprocesses of the integration tests run.

``kwf run --app tests.integration.engine.apps:runtime`` hosts them; the configuration
comes from ``KWF_*`` like any runtime. Activities that the tests watch append lines to
``$KWF_TEST_RUNS_DIR/{pid}.log`` (``start|end ITEM PID UNIX_TIME``), so runs can be
counted across processes, including ones killed with SIGKILL.
"""

from __future__ import annotations

import os
import random
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import engine as wf

runtime = wf.WorkflowRuntime()


def record_run(what: str, item: object) -> None:
    """Append one line about an activity run; O_APPEND keeps concurrent lines whole."""
    folder = os.environ.get("KWF_TEST_RUNS_DIR")
    if not folder:
        return
    line = f"{what} {item} {os.getpid()} {time.time():.3f}\n".encode()
    fd = os.open(Path(folder) / f"{os.getpid()}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


# -- fan-out of recorded activities (the crash test) --------------------------------------


@runtime.workflow(name="fan_out_recorded")
def fan_out_recorded(ctx: wf.DaprWorkflowContext, count: int):
    results = yield wf.when_all([ctx.call_activity(recorded_item, input=i) for i in range(1, count + 1)])
    return sum(results)


# Four at a time, so the fan-out lasts ~2 s and some items finish long before a kill.
_item_slots = threading.Semaphore(4)


@runtime.activity(name="recorded_item")
def recorded_item(ctx: Any, item: int) -> int:
    with _item_slots:
        record_run("start", item)
        time.sleep(random.uniform(0.05, 0.1))  # the seed's "work", short
        record_run("end", item)
    return item * 2


@runtime.workflow(name="fan_out_plain")
def fan_out_plain(ctx: wf.DaprWorkflowContext, count: int):
    results = yield wf.when_all([ctx.call_activity(plain_item, input=i) for i in range(1, count + 1)])
    return sum(results)


# A plain activity of 50 ms with no limit of its own: as many run at once as the worker
# has threads, the case of a fan-out on default settings.
@runtime.activity(name="plain_item")
def plain_item(ctx: Any, item: int) -> int:
    record_run("start", item)
    time.sleep(0.05)
    record_run("end", item)
    return item * 2


# -- one slow activity (the worker crash test) --------------------------------------------


@runtime.workflow(name="one_slow_step")
def one_slow_step(ctx: wf.DaprWorkflowContext, seconds: float):
    result = yield ctx.call_activity(slow_step, input=seconds)
    return result


@runtime.workflow(name="echo_then_slow_step")
def echo_then_slow_step(ctx: wf.DaprWorkflowContext, seconds: float):
    yield ctx.call_activity(echo, input=ctx.instance_id)
    result = yield ctx.call_activity(slow_step, input=seconds)
    return result


@runtime.activity(name="slow_step")
def slow_step(ctx: Any, seconds: float) -> str:
    record_run("start", ctx.task_id)
    time.sleep(seconds)
    record_run("end", ctx.task_id)
    return f"slept {seconds}"


# -- timers ---------------------------------------------------------------------------


@runtime.workflow(name="timer_then_activity")
def timer_then_activity(ctx: wf.DaprWorkflowContext, seconds: float):
    yield ctx.create_timer(timedelta(seconds=seconds))
    result = yield ctx.call_activity(echo, input=ctx.instance_id)
    return result


@runtime.workflow(name="sleeper")
def sleeper(ctx: wf.DaprWorkflowContext, seconds: float):
    yield ctx.create_timer(timedelta(seconds=seconds))
    return "woke"


@runtime.activity(name="echo")
def echo(ctx: Any, value: Any) -> Any:
    record_run("echo", value)
    return value


@runtime.workflow(name="echo_chain3")
def echo_chain3(ctx: wf.DaprWorkflowContext, value: Any):
    first = yield ctx.call_activity(echo, input=value)
    second = yield ctx.call_activity(echo, input=[first])
    third = yield ctx.call_activity(echo, input=[second])
    return third


# -- external events (the CLI test) ---------------------------------------------------


@runtime.workflow(name="await_approval")
def await_approval(ctx: wf.DaprWorkflowContext, order: dict):
    ctx.set_custom_status("waiting")
    approval = yield ctx.wait_for_external_event("approval")
    result = yield ctx.call_activity(echo, input={"order": order, "approval": approval})
    return result


# Versions of one workflow. ``KWF_TEST_ORDER_VERSIONS`` says which this process registers
# ("v1", "v2" or "v1,v2"; default both), the last one listed being the latest: a redeploy
# is a restart with another value.
def versioned_order_v1(ctx: wf.DaprWorkflowContext, _: Any = None):
    first = yield ctx.call_activity(echo, input="v1 step")
    go = yield ctx.wait_for_external_event("go")
    return [first, go, "v1"]


def versioned_order_v2(ctx: wf.DaprWorkflowContext, _: Any = None):
    go = yield ctx.wait_for_external_event("go")
    return [go, "v2"]


_ORDER_VERSIONS = {"v1": versioned_order_v1, "v2": versioned_order_v2}
_wanted = [v for v in os.environ.get("KWF_TEST_ORDER_VERSIONS", "v1,v2").split(",") if v]
for _version in _wanted:
    runtime.register_versioned_workflow(_ORDER_VERSIONS[_version], name="versioned_order", version_name=_version,
                                        is_latest=_version == _wanted[-1])
