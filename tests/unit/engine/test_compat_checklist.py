"""The compatibility checklist items that the other engine tests leave uncovered, on the in-memory driver.

Covered elsewhere, and not repeated here: current_utc_datetime and is_replaying across
replay, None output and unknown workflows (test_context.py); retry delays, retry_timeout,
non-retryable types, retries in when_all/when_any and parent -> child -> activity retries
(test_retry.py); buffering, order, case, wait timeouts, event/timer races, suspension,
terminate and continue-as-new with and without saved events (test_events.py); every
non-determinism case and stray results (test_nondeterminism.py, test_context.py); the
deterministic helpers, when_all's wait for every task, datetime event deadlines,
alternate_name, the runtime's constructor keywords and the activity's inner context
(test_dapr_surface.py); versions, patches and STALLED (test_versioning.py); history
propagation (test_propagation.py); the asyncio
client (tests/integration/compat/test_compat_aio_client_on_kafka.py).

``DAPR_SURFACE`` below is the table of what a ``dapr-ext-workflow`` 1.19 program may use:
every name listed is there under ``import engine as wf`` (and ``engine.aio``); what differs
in behaviour is listed in the README's compatibility table.
"""

from __future__ import annotations

import random
from datetime import timedelta

import pytest

import engine as wf
from engine.core.history import TaskCompleted, TaskFailed, TimerCreated
from tests.unit.engine.driver import Driver

SECOND = timedelta(seconds=1)

# owner: the attributes a program of dapr-ext-workflow 1.19 may use on it.
DAPR_SURFACE: dict[str, tuple[str, ...]] = {
    "engine": (
        "WorkflowRuntime", "DaprWorkflowClient", "WorkflowClient", "DaprWorkflowContext", "WorkflowContext",
        "WorkflowActivityContext", "WorkflowState", "WorkflowStatus", "RetryPolicy", "when_all", "when_any",
        "alternate_name", "Task", "TaskFailedError", "PropagationScope", "PropagatedHistory",
        "PropagationNotFoundError",
    ),
    "engine.WorkflowRuntime": (
        "workflow", "activity", "register_workflow", "register_activity", "versioned_workflow",
        "register_versioned_workflow", "start", "shutdown", "wait_for_worker_ready",
    ),
    "engine.DaprWorkflowContext": (
        "instance_id", "is_replaying", "current_utc_datetime", "call_activity", "call_child_workflow",
        "create_timer", "wait_for_external_event", "continue_as_new", "set_custom_status", "is_patched",
        "new_guid", "uuid4", "random", "random_string", "now", "get_propagated_history",
    ),
    "engine.WorkflowActivityContext": ("workflow_id", "task_id", "get_inner_context", "get_propagated_history"),
    "engine.PropagationScope": ("NONE", "OWN_HISTORY", "LINEAGE"),
    "engine.PropagatedHistory": ("get_workflows", "get_workflows_by_name", "get_last_workflow_by_name", "get_app_ids"),
    "engine.WorkflowResult": ("get_activities_by_name", "get_last_activity_by_name", "get_child_workflows_by_name",
                              "get_last_child_workflow_by_name"),
    "engine.DaprWorkflowClient": (
        "schedule_new_workflow", "get_workflow_state", "wait_for_workflow_start", "wait_for_workflow_completion",
        "raise_workflow_event", "terminate_workflow", "pause_workflow", "resume_workflow", "purge_workflow",
    ),
    "engine.aio.DaprWorkflowClient": (
        "schedule_new_workflow", "get_workflow_state", "wait_for_workflow_start", "wait_for_workflow_completion",
        "raise_workflow_event", "terminate_workflow", "pause_workflow", "resume_workflow", "purge_workflow",
    ),
    "engine.WorkflowStatus": (
        "RUNNING", "COMPLETED", "CONTINUED_AS_NEW", "FAILED", "TERMINATED", "PENDING", "SUSPENDED", "STALLED",
    ),
}


@pytest.mark.parametrize("owner", sorted(DAPR_SURFACE))
def test_every_name_of_the_dapr_surface_is_there(owner: str) -> None:
    import importlib

    target: object
    if owner.startswith("engine.aio."):
        target = getattr(importlib.import_module("engine.aio"), owner.rsplit(".", 1)[1])
    else:
        target = importlib.import_module("engine")
        for part in owner.split(".")[1:]:
            target = getattr(target, part)
    missing = [name for name in DAPR_SURFACE[owner] if not hasattr(target, name)]
    assert not missing, f"{owner} lacks {missing}"


# Context ----------------------------------------------------------------------------------


def test_the_workflow_sees_its_input_and_instance_id() -> None:
    wfr = wf.WorkflowRuntime()

    @wfr.workflow
    def flow(ctx: wf.DaprWorkflowContext, wf_input):
        yield ctx.create_timer(SECOND)  # read them again after a step, replayed or not
        return {"input": wf_input, "id": ctx.instance_id, "name": ctx.workflow_name}

    for cache_size in (10_000, 0):
        driver = Driver(wfr.registry, cache_size=cache_size)
        driver.start(flow, {"n": [1, 2]}, instance_id="order-17")
        driver.run()
        assert driver.instance("order-17").result == {"input": {"n": [1, 2]}, "id": "order-17", "name": "flow"}


# Activities ---------------------------------------------------------------------------------


def test_a_chain_of_ten_activities_passes_each_result_on() -> None:
    wfr = wf.WorkflowRuntime()

    @wfr.activity
    def add_step(ctx, trail: list[int]) -> list[int]:
        return [*trail, len(trail) * 10]

    @wfr.workflow
    def chain(ctx, _):
        trail: list[int] = []
        for _ in range(10):
            trail = yield ctx.call_activity(add_step, input=trail)
        return trail

    driver = Driver(wfr.registry, cache_size=0)  # every step replays the whole chain so far
    driver.start(chain)
    driver.run()
    assert driver.instance().result == [n * 10 for n in range(10)]
    assert driver.activity_runs["add_step"] == 10


def test_a_failed_activity_is_caught_as_task_failed_error_and_compensated() -> None:
    wfr = wf.WorkflowRuntime()
    refunds: list[str] = []

    @wfr.activity
    def charge(ctx, amount):
        raise ValueError(f"card declined for {amount}")

    @wfr.activity
    def refund(ctx, reason):
        refunds.append(reason)

    @wfr.workflow
    def pay(ctx, amount):
        try:
            yield ctx.call_activity(charge, input=amount)
        except wf.TaskFailedError as err:
            yield ctx.call_activity(refund, input=str(err))
            return {"type": err.details.type, "message": err.details.message}
        return "charged"

    driver = Driver(wfr.registry)
    driver.start(pay, 30)
    driver.run()
    inst = driver.instance()
    assert inst.status is wf.WorkflowStatus.COMPLETED
    assert inst.result == {"type": "ValueError", "message": "card declined for 30"}
    assert len(refunds) == 1 and "card declined for 30" in refunds[0]


def test_an_uncaught_activity_failure_fails_the_workflow_with_type_message_and_stacks() -> None:
    wfr = wf.WorkflowRuntime()

    @wfr.activity
    def fetch(ctx, url):
        raise ConnectionError(f"no route to {url}")  # the activity line its stack must show

    @wfr.workflow
    def crawl(ctx, url):
        page = yield ctx.call_activity(fetch, input=url)  # the workflow line its stack must show
        return page

    driver = Driver(wfr.registry)
    driver.start(crawl, "http://x")
    driver.run()
    inst = driver.instance()
    assert inst.status is wf.WorkflowStatus.FAILED
    failure = inst.failure
    assert failure is not None
    assert failure.type == "TaskFailedError"
    assert "ConnectionError: no route to http://x" in failure.message
    assert "yield ctx.call_activity(fetch, input=url)  # the workflow line" in (failure.stack_trace or "")
    assert failure.inner is not None and failure.inner.type == "ConnectionError"
    assert 'raise ConnectionError(f"no route to {url}")  # the activity line' in (failure.inner.stack_trace or "")


# Retry --------------------------------------------------------------------------------------


def test_the_default_backoff_coefficient_keeps_the_delay_constant() -> None:
    wfr = wf.WorkflowRuntime()
    calls: list[int] = []

    @wfr.activity
    def flaky(ctx):
        calls.append(1)
        raise RuntimeError("still down")

    @wfr.workflow
    def flow(ctx):
        policy = wf.RetryPolicy(first_retry_interval=timedelta(seconds=3), max_number_of_attempts=4)
        yield ctx.call_activity(flaky, retry_policy=policy)

    driver = Driver(wfr.registry)
    driver.start(flow)
    driver.run()
    inst = driver.instance()
    assert len(calls) == 4 and inst.status is wf.WorkflowStatus.FAILED
    delays, failed_at = [], None
    for event in inst.history:
        if isinstance(event.event, TaskFailed):
            failed_at = event.timestamp
        elif isinstance(event.event, TimerCreated) and failed_at is not None:
            delays.append((event.event.fire_at - failed_at).total_seconds())
    assert delays == [3, 3, 3]


# Children -----------------------------------------------------------------------------------


def test_ten_children_of_three_activities_each_run_thirty_activities() -> None:
    wfr = wf.WorkflowRuntime()

    @wfr.activity
    def part(ctx, n):
        return n + 1

    @wfr.workflow
    def child(ctx, start):
        n = start
        for _ in range(3):
            n = yield ctx.call_activity(part, input=n)
        return n

    @wfr.workflow
    def parent(ctx, _):
        return (yield wf.when_all([ctx.call_child_workflow(child, input=i * 100) for i in range(10)]))

    driver = Driver(wfr.registry, rng=random.Random(7))
    driver.start(parent, instance_id="fan")
    driver.run()
    assert driver.instance("fan").result == [i * 100 + 3 for i in range(10)]
    assert driver.activity_runs["part"] == 30
    assert len([i for i in driver.instances if i.startswith("fan:")]) == 10


def test_a_failing_child_raises_task_failed_error_in_the_parent_with_its_cause() -> None:
    wfr = wf.WorkflowRuntime()

    @wfr.workflow
    def child(ctx, x):
        raise LookupError(f"no record {x}")

    @wfr.workflow
    def parent(ctx, _):
        try:
            yield ctx.call_child_workflow("child", input=5)  # by its string name
        except wf.TaskFailedError as err:
            return [err.details.type, err.details.message]

    driver = Driver(wfr.registry)
    driver.start(parent, instance_id="p")
    driver.run()
    assert driver.instance("p:0").status is wf.WorkflowStatus.FAILED
    assert driver.instance("p").result == ["LookupError", "no record 5"]


# Composition ------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_when_all_keeps_scheduling_order_and_waits_for_every_task(seed: int) -> None:
    wfr = wf.WorkflowRuntime()
    finished: list[int] = []

    @wfr.activity
    def work(ctx, n):
        finished.append(n)
        return n * n

    @wfr.workflow
    def fan(ctx, _):
        results = yield wf.when_all([ctx.call_activity(work, input=n) for n in range(6)])
        return [results, len(finished)]

    driver = Driver(wfr.registry, rng=random.Random(seed))
    driver.start(fan)
    driver.run()
    results, seen_done = driver.instance().result
    assert results == [n * n for n in range(6)]
    assert seen_done == 6  # the workflow resumed only after the last task completed
    assert sorted(finished) == list(range(6))


@pytest.mark.parametrize("seed", range(5))
def test_when_any_returns_the_winning_task_whose_result_can_be_read(seed: int) -> None:
    wfr = wf.WorkflowRuntime()

    @wfr.activity
    def work(ctx, n):
        return f"result {n}"

    @wfr.workflow
    def race(ctx, _):
        tasks = [ctx.call_activity(work, input=n) for n in range(4)]
        winner = yield wf.when_any(tasks)
        return [tasks.index(winner), winner.get_result()]

    driver = Driver(wfr.registry, rng=random.Random(seed))
    driver.start(race)
    driver.run()
    index, result = driver.instance().result
    first_done = next(e.event for e in driver.instance().history if isinstance(e.event, TaskCompleted))
    assert index == first_done.task_id
    assert result == f"result {index}"
