"""Workflow versions, patches and STALLED instances, on the in-memory driver.

A "redeploy" swaps the driver's registry and executor (no cached runs survive it), the way
a new runtime process with other code replays an instance from its history.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import engine as wf
from engine.core.history import (
    STALL_CHECK_TIMER_ID,
    EventRaised,
    ExecutionResumed,
    ExecutionStalled,
    TaskScheduled,
    TimerCreated,
    VersionMarker,
)
from engine.replay.executor import Executor
from engine.replay.registry import Registry
from tests.unit.engine.driver import Driver

Status = wf.WorkflowStatus


def echo(ctx, value=None):
    return value


def order_v1(ctx, _=None):
    first = yield ctx.call_activity("echo", input="v1-a")
    approval = yield ctx.wait_for_external_event("approve")
    second = yield ctx.call_activity("echo", input="v1-b")
    return [first, approval, second]


def order_v2(ctx, _=None):
    first = yield ctx.call_activity("echo", input="v2-a")
    approval = yield ctx.wait_for_external_event("approve")
    return [first, approval, "v2 done"]


def registry_with(*versions: tuple[Callable[..., Any], bool]) -> Registry:
    reg = Registry()
    reg.register_activity(echo, name="echo")
    for fn, is_latest in versions:
        reg.register_versioned_workflow(fn, name="order", is_latest=is_latest)
    return reg


def redeploy(driver: Driver, registry: Registry) -> None:
    driver.registry = registry
    driver.executor = Executor(registry)


def test_a_new_instance_runs_the_latest_version_and_records_it() -> None:
    driver = Driver(registry_with((order_v1, False), (order_v2, True)))
    driver.start("order")
    driver.raise_event("wf-1", "approve", "ok")
    driver.run()
    inst = driver.instance()
    assert inst.result == ["v2-a", "ok", "v2 done"]
    assert inst.events[1] == VersionMarker(version="order_v2")  # right after ExecutionStarted


def test_a_running_instance_keeps_its_version_across_a_redeploy_with_a_newer_latest() -> None:
    driver = Driver(registry_with((order_v1, True)))
    driver.start("order", instance_id="old")
    driver.run()
    redeploy(driver, registry_with((order_v1, False), (order_v2, True)))
    driver.start("order", instance_id="new")
    driver.raise_event("old", "approve", "yes")
    driver.raise_event("new", "approve", "yes")
    driver.run()
    assert driver.instance("old").result == ["v1-a", "yes", "v1-b"]
    assert driver.instance("new").result == ["v2-a", "yes", "v2 done"]


def test_a_missing_version_stalls_the_instance_keeps_its_events_and_resumes_when_it_is_back() -> None:
    driver = Driver(registry_with((order_v1, True)))
    driver.start("order")
    driver.run()
    redeploy(driver, registry_with((order_v2, True)))
    driver.raise_event("wf-1", "approve", "kept")
    inst = driver.instance()
    assert inst.status is Status.STALLED
    assert inst.failure.type == "VERSION_NOT_AVAILABLE" and "'order_v1'" in inst.failure.message
    stalled = inst.of_kind(ExecutionStalled)
    assert len(stalled) == 1 and stalled[0].reason == "VERSION_NOT_AVAILABLE"
    assert inst.of_kind(EventRaised)[-1].data == '"kept"'  # the event is in history, not lost

    # The re-check fires and finds the code still missing: still STALLED, one stall event,
    # a new (longer) re-check.
    driver.run_one("timer")
    assert inst.status is Status.STALLED and len(inst.of_kind(ExecutionStalled)) == 1
    checks = [t for t in inst.of_kind(TimerCreated) if t.timer_id == STALL_CHECK_TIMER_ID]
    assert len(checks) == 2 and checks[1].fire_at - checks[0].fire_at > checks[0].fire_at - inst.history[0].timestamp

    redeploy(driver, registry_with((order_v1, False), (order_v2, True)))
    driver.run_one("timer")
    driver.run(until=lambda: inst.ended)
    assert inst.status is Status.COMPLETED and inst.failure is None
    assert inst.result == ["v1-a", "kept", "v1-b"]
    assert len(inst.of_kind(ExecutionResumed)) == 1


def test_any_event_for_a_stalled_instance_retries_the_code_too() -> None:
    driver = Driver(registry_with((order_v1, True)))
    driver.start("order")
    driver.run()
    redeploy(driver, registry_with((order_v2, True)))
    driver.raise_event("wf-1", "other", 1)
    assert driver.instance().status is Status.STALLED
    redeploy(driver, registry_with((order_v1, True)))
    driver.raise_event("wf-1", "approve", "now")
    driver.run(until=lambda: driver.instance().ended)
    assert driver.instance().result == ["v1-a", "now", "v1-b"]


def test_a_stalled_instance_can_be_terminated() -> None:
    driver = Driver(registry_with((order_v1, True)))
    driver.start("order")
    driver.run()
    redeploy(driver, registry_with((order_v2, True)))
    driver.raise_event("wf-1", "approve", "x")
    assert driver.instance().status is Status.STALLED
    driver.terminate("wf-1", "stopped")
    assert driver.instance().status is Status.TERMINATED and driver.instance().result == "stopped"


def test_a_history_without_a_version_stalls_when_only_versions_are_registered() -> None:
    plain = Registry()
    plain.register_activity(echo, name="echo")
    plain.register_workflow(order_v1, name="order")
    driver = Driver(plain)
    driver.start("order")
    driver.run()
    redeploy(driver, registry_with((order_v1, True)))
    driver.raise_event("wf-1", "approve", "x")
    assert driver.instance().status is Status.STALLED
    assert "records none" in driver.instance().failure.message


def test_no_latest_version_stalls_new_instances() -> None:
    driver = Driver(registry_with((order_v1, False)))
    driver.start("order")
    assert driver.instance().status is Status.STALLED
    assert "is_latest=True" in driver.instance().failure.message


# Patches ------------------------------------------------------------------------------------


def shipping_old(ctx, _=None):
    yield ctx.wait_for_external_event("go")
    return (yield ctx.call_activity("echo", input="ground"))


def shipping_patched(ctx, _=None):
    yield ctx.wait_for_external_event("go")
    if ctx.is_patched("express"):
        return (yield ctx.call_activity("echo", input="express"))
    return (yield ctx.call_activity("echo", input="ground"))


def shipping_registry(fn: Callable[..., Any]) -> Registry:
    reg = Registry()
    reg.register_activity(echo, name="echo")
    reg.register_workflow(fn, name="ship")
    return reg


@pytest.mark.parametrize("cache_size", [10_000, 0])
def test_is_patched_is_true_on_a_first_run_and_on_replays_of_it(cache_size: int) -> None:
    reg = shipping_registry(shipping_patched)
    driver = Driver(reg, cache_size=cache_size)
    driver.start("ship")
    driver.raise_event("wf-1", "go")
    driver.run()
    inst = driver.instance()
    assert inst.result == "express"
    assert inst.of_kind(VersionMarker) == [VersionMarker(patch="express")]
    assert [t.input for t in inst.of_kind(TaskScheduled)] == ['"express"']


def test_is_patched_is_false_when_replaying_history_written_before_the_patch() -> None:
    driver = Driver(shipping_registry(shipping_old))
    driver.start("ship")
    driver.raise_event("wf-1", "go")  # the old code scheduled "ground" already
    redeploy(driver, shipping_registry(shipping_patched))
    driver.run()
    inst = driver.instance()
    assert inst.status is Status.COMPLETED and inst.result == "ground"
    assert inst.of_kind(VersionMarker) == []


def test_removing_a_patch_check_stalls_with_patch_mismatch_until_it_is_back() -> None:
    driver = Driver(shipping_registry(shipping_patched))
    driver.start("ship")
    driver.raise_event("wf-1", "go")  # recorded the patch and scheduled "express"
    redeploy(driver, shipping_registry(shipping_old))
    driver.run_one("activity")
    inst = driver.instance()
    assert inst.status is Status.STALLED
    assert inst.failure.type == "PATCH_MISMATCH" and "'express'" in inst.failure.message

    redeploy(driver, shipping_registry(shipping_patched))
    driver.run_one("timer")
    driver.run(until=lambda: inst.ended)
    assert inst.status is Status.COMPLETED and inst.result == "express"


def test_a_recorded_patch_the_code_no_longer_reaches_is_a_mismatch_even_without_a_different_step() -> None:
    def patched_then_waits(ctx, _=None):
        ctx.is_patched("audit")
        yield ctx.wait_for_external_event("go")

    def waits(ctx, _=None):
        yield ctx.wait_for_external_event("go")

    driver = Driver(shipping_registry(patched_then_waits))
    driver.start("ship")
    redeploy(driver, shipping_registry(waits))
    driver.raise_event("wf-1", "go")
    assert driver.instance().status is Status.STALLED
    assert driver.instance().failure.type == "PATCH_MISMATCH"


def test_a_non_determinism_that_is_not_versioning_still_fails_the_instance() -> None:
    def other_activity(ctx, _=None):
        yield ctx.wait_for_external_event("go")
        return (yield ctx.call_activity("other"))

    driver = Driver(shipping_registry(shipping_old))
    driver.start("ship")
    driver.raise_event("wf-1", "go")
    changed = shipping_registry(other_activity)
    changed.register_activity(lambda ctx, value=None: value, name="other")
    redeploy(driver, changed)
    driver.run()
    inst = driver.instance()
    assert inst.status is Status.FAILED and inst.failure.type == "NonDeterminismError"


# Registration ---------------------------------------------------------------------------------


def test_versions_register_through_the_runtime_decorator_and_function_objects_resolve_to_the_name() -> None:
    wfr = wf.WorkflowRuntime()

    @wfr.versioned_workflow(name="greet", is_latest=False)
    def greet_v1(ctx, who):
        return f"hello {who}"

    @wfr.versioned_workflow(name="greet", version_name="two", is_latest=True)
    def greet_v2(ctx, who):
        return f"hi {who}"

    assert wfr.registry.workflow_versions("greet") == ["greet_v1", "two"]
    assert wfr.registry.workflow_names == ["greet"]
    driver = Driver(wfr.registry)
    driver.start(greet_v1, "ada")  # the function object names the workflow, not the version
    assert driver.instance().result == "hi ada"


def test_version_registration_mistakes_are_refused() -> None:
    reg = registry_with((order_v1, True))
    with pytest.raises(ValueError, match="already has a latest version"):
        reg.register_versioned_workflow(order_v2, name="order", is_latest=True)
    with pytest.raises(ValueError, match="already registered"):
        reg.register_versioned_workflow(order_v1, name="order", version_name="again", is_latest=False)
    with pytest.raises(ValueError, match="without versions"):
        plain = Registry()
        plain.register_workflow(order_v1, name="order")
        plain.register_versioned_workflow(order_v2, name="order", is_latest=True)
    with pytest.raises(ValueError, match="already registered"):
        reg.register_workflow(lambda ctx: None, name="order")


# How a STALLED instance shows -------------------------------------------------------------------


def test_a_stalled_state_shows_its_reason_to_the_client_the_http_api_and_the_timeline() -> None:
    from engine.api.client import WorkflowState
    from engine.api.http_api import state_json
    from engine.api.timeline import timeline_rows
    from engine.state.codec import StatusRecord

    driver = Driver(registry_with((order_v1, True)))
    driver.start("order")
    driver.run()
    redeploy(driver, registry_with((order_v2, True)))
    driver.raise_event("wf-1", "approve", "x")
    inst = driver.instance()
    when = inst.history[-1].timestamp
    record = StatusRecord("wf-1", inst.execution_id, "order", inst.status, when, when, failure=inst.failure)
    state = WorkflowState.of(record)
    assert state.runtime_status is Status.STALLED and state.stalled_reason == "VERSION_NOT_AVAILABLE"
    properties = state_json(state)["properties"]
    assert state_json(state)["runtimeStatus"] == "STALLED"
    assert properties["dapr.workflow.stalled.reason"] == "VERSION_NOT_AVAILABLE"
    assert "order_v1" in properties["dapr.workflow.stalled.message"]

    rows = timeline_rows(inst.history)
    assert [r.name for r in rows if r.kind == "workflow"][-1] == "stalled"
    assert all(r.task_id != STALL_CHECK_TIMER_ID for r in rows)  # the runtime's re-check is no step
