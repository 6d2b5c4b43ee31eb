"""A Dapr-style workflow program for the compatibility tests, registered on one shared runtime.

Written as a ``dapr.ext.workflow`` program would be (``import engine as wf``, decorators
on a ``WorkflowRuntime``). The activities run in the test process, so they record what
they did in module-level lists the tests read.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from datetime import timedelta
from typing import Any

import engine as wf

# What the activities did, for the tests to check.
GREETINGS: list[tuple[str, int, str]] = []  # (instance ID, pid, thread name)
PART_RUNS: Counter[str] = Counter()  # runs per child instance
ATTEMPT_TIMES: dict[str, list[float]] = {}  # monotonic start time of each attempt, per instance

# Short real-time intervals: the retry test observes them on durable timers.
RETRY_POLICY = wf.RetryPolicy(
    first_retry_interval=timedelta(seconds=0.5),
    max_number_of_attempts=4,
    backoff_coefficient=2,
    max_retry_interval=timedelta(seconds=1),
)
RACE_TIMEOUT = timedelta(seconds=3)


def register(wfr: wf.WorkflowRuntime) -> None:
    """Register the program the way Dapr programs do: decorators, names and register_* calls."""
    wfr.activity(greet)
    wfr.activity(name="count_part")(part)
    wfr.register_activity(flaky_fetch)
    wfr.register_workflow(hello, name="renamed_hello")
    wfr.workflow(waiter)
    wfr.workflow(three_parts)
    wfr.workflow(ten_children)
    wfr.workflow(parent_of_waiter)
    wfr.workflow(race)
    wfr.workflow(short_wait)
    wfr.workflow(retried_fetch)
    wfr.workflow(restarts_at_once)
    wfr.activity(ancestry)
    wfr.workflow(lineage_child)
    wfr.workflow(lineage_parent)


def greet(ctx: wf.WorkflowActivityContext, name: str) -> str:
    GREETINGS.append((ctx.workflow_id, os.getpid(), threading.current_thread().name))
    return f"hello {name}"


def hello(ctx: wf.DaprWorkflowContext, name: str):
    ctx.set_custom_status("x")
    return (yield ctx.call_activity(greet, input=name))


def waiter(ctx: wf.DaprWorkflowContext, _=None):
    return (yield ctx.wait_for_external_event("go"))


def part(ctx: wf.WorkflowActivityContext, n: int) -> int:
    PART_RUNS[ctx.workflow_id] += 1
    return n + 1


def three_parts(ctx: wf.DaprWorkflowContext, n: int):
    for _ in range(3):
        n = yield ctx.call_activity(part, input=n)
    return n


def ten_children(ctx: wf.DaprWorkflowContext, _=None):
    return (yield wf.when_all([ctx.call_child_workflow(three_parts, input=i * 100) for i in range(10)]))


def parent_of_waiter(ctx: wf.DaprWorkflowContext, _=None):
    return (yield ctx.call_child_workflow(waiter))


def race(ctx: wf.DaprWorkflowContext, _=None):
    approval = ctx.wait_for_external_event("approval")
    timeout = ctx.create_timer(RACE_TIMEOUT)
    winner = yield wf.when_any([approval, timeout])
    if winner == timeout:
        return "timeout"
    return ["event", approval.get_result()]


def short_wait(ctx: wf.DaprWorkflowContext, _=None):
    try:
        yield ctx.wait_for_external_event("never", timeout=timedelta(seconds=1))
    except TimeoutError as err:
        return f"timed out: {err}"
    return "got an event"


def flaky_fetch(ctx: wf.WorkflowActivityContext, url: str) -> str:
    ATTEMPT_TIMES.setdefault(ctx.workflow_id, []).append(time.monotonic())
    raise ConnectionError(f"no route to {url}")


def retried_fetch(ctx: wf.DaprWorkflowContext, url: str):
    page = yield ctx.call_activity(flaky_fetch, input=url, retry_policy=RETRY_POLICY)  # uncaught on purpose
    return page


def restarts_at_once(ctx: wf.DaprWorkflowContext, generation: int):
    # Continues as new in its very first step, before yielding anything.
    if generation < 2:
        ctx.continue_as_new(generation + 1)
        return None
    return (yield ctx.call_activity(greet, input=f"generation {generation}"))


def ancestry(ctx: wf.WorkflowActivityContext, _: Any = None) -> list[Any]:
    """What the propagated history says: the chain of workflows and the parent's last greeting."""
    history = ctx.get_propagated_history()
    greeting = history.get_last_workflow_by_name("lineage_parent").get_last_activity_by_name("greet")
    return [[w.name for w in history.get_workflows()], greeting.output]


def lineage_child(ctx: wf.DaprWorkflowContext, _: Any = None):
    return (yield ctx.call_activity(ancestry, propagation=wf.PropagationScope.LINEAGE))


def lineage_parent(ctx: wf.DaprWorkflowContext, name: str):
    yield ctx.call_activity(greet, input=name)
    return (yield ctx.call_child_workflow(lineage_child, propagation=wf.PropagationScope.LINEAGE))
