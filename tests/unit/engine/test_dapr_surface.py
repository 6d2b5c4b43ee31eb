"""Dapr SDK 1.17-1.19 surface: deterministic helpers, when_all, event-wait deadlines, names, options.

Workflows run on the in-memory driver; ``cache_size=0`` makes every step replay the code
from the start, which is how replay stability is checked.
"""

from __future__ import annotations

import json
import string
import uuid
from datetime import timedelta
from typing import Any

import pytest

import engine as wf
from engine.core.history import TimerCreated
from engine.edges.activities import WorkflowActivityContext, run_activity
from engine.orchestration.orchestrator import Orchestrator
from engine.state.config import Settings
from tests.unit.engine.driver import START, Driver

SECOND = timedelta(seconds=1)


def helper_values(ctx: wf.DaprWorkflowContext) -> dict[str, Any]:
    return {
        "guid": str(ctx.new_guid()),
        "uuid": str(ctx.uuid4()),
        "random": ctx.random().random(),
        "string": ctx.random_string(12),
        "digits": ctx.random_string(6, alphabet="0123456789"),
        "now": ctx.now().isoformat(),
    }


def run_helpers(instance_id: str, cache_size: int) -> tuple[list[dict[str, Any]], Any]:
    wfr = wf.WorkflowRuntime()
    seen: list[dict[str, Any]] = []

    @wfr.activity
    def noop(ctx, _=None):
        return None

    @wfr.workflow
    def helpers(ctx: wf.DaprWorkflowContext, _):
        first = helper_values(ctx)
        seen.append(first)
        yield ctx.call_activity(noop)
        second = helper_values(ctx)
        seen.append(second)
        yield ctx.create_timer(SECOND)
        return [first, second]

    driver = Driver(wfr.registry, cache_size=cache_size, tick=SECOND)
    driver.start(helpers, instance_id=instance_id)
    driver.run()
    return seen, driver.instance(instance_id)


def test_deterministic_helpers_give_the_same_values_on_every_replay() -> None:
    seen, inst = run_helpers("order-1", cache_size=0)
    first, second = inst.result
    # Three steps replay the code from the start: the first point is seen three times.
    assert [s for s in seen if s["now"] == first["now"]] == [first] * 3
    assert seen.count(second) == 2
    # A live (cached) run gives the very values a replayed one does.
    cached_seen, cached = run_helpers("order-1", cache_size=10_000)
    assert cached.result == inst.result and cached_seen == [first, second]


def test_each_helper_call_gives_a_new_value_and_instances_differ() -> None:
    (_, inst), (_, other) = run_helpers("order-1", 10_000), run_helpers("order-2", 10_000)
    first, second = inst.result
    for key in ("guid", "uuid", "random", "string", "digits"):
        assert first[key] != second[key], key
        assert first[key] != other.result[0][key], key
    assert first["guid"] != first["uuid"]
    assert uuid.UUID(first["uuid"]).version == 4 and uuid.UUID(first["guid"]).version == 4
    assert len(first["string"]) == 12 and set(first["string"]) <= set(string.ascii_letters + string.digits)
    assert first["digits"].isdigit() and len(first["digits"]) == 6
    assert first["now"] == inst.history[0].timestamp.isoformat()


def test_random_string_refuses_a_negative_length_and_an_empty_alphabet() -> None:
    wfr = wf.WorkflowRuntime()

    @wfr.workflow
    def bad(ctx, which):
        if which == "length":
            ctx.random_string(-1)
        ctx.random_string(3, alphabet="")

    for which, message in (("length", "0 or more"), ("alphabet", "must not be empty")):
        driver = Driver(wfr.registry)
        driver.start(bad, which, instance_id=which)
        assert driver.instance(which).status is wf.WorkflowStatus.FAILED
        assert message in driver.instance(which).failure.message


def test_when_all_lets_every_activity_finish_before_the_workflow_sees_the_failure() -> None:
    wfr = wf.WorkflowRuntime()
    finished: list[int] = []

    @wfr.activity
    def work(ctx, n: int) -> int:
        finished.append(n)
        if n == 1:
            raise ValueError("one is broken")
        return n

    @wfr.workflow
    def fan_out(ctx, _):
        try:
            yield wf.when_all([ctx.call_activity(work, input=n) for n in range(4)])
        except wf.TaskFailedError as err:
            return {"error": str(err), "settled_before": sorted(finished)}

    driver = Driver(wfr.registry)
    driver.start(fan_out)
    driver.run()
    result = driver.instance().result
    assert "one is broken" in result["error"]
    assert result["settled_before"] == [0, 1, 2, 3]


def test_wait_for_external_event_takes_a_deadline_as_a_datetime() -> None:
    wfr = wf.WorkflowRuntime()

    @wfr.workflow
    def approval(ctx, _):
        try:
            return (yield ctx.wait_for_external_event("approve", timeout=ctx.current_utc_datetime + 30 * SECOND))
        except TimeoutError:
            return "timed out"

    driver = Driver(wfr.registry, cache_size=0)
    driver.start(approval)
    driver.run()
    inst = driver.instance()
    assert inst.result == "timed out"
    assert [t.fire_at for t in inst.of_kind(TimerCreated)] == [START + 30 * SECOND]

    driver = Driver(wfr.registry)
    driver.start(approval, instance_id="wf-2")
    driver.raise_event("wf-2", "approve", "yes")
    driver.run()
    assert driver.instance("wf-2").result == "yes"


def test_wait_for_external_event_refuses_other_timeout_types() -> None:
    wfr = wf.WorkflowRuntime()

    @wfr.workflow
    def approval(ctx, _):
        yield ctx.wait_for_external_event("approve", timeout=30)

    driver = Driver(wfr.registry)
    driver.start(approval)
    assert "timedelta or a datetime" in driver.instance().failure.message


def test_alternate_name_names_workflows_and_activities() -> None:
    wfr = wf.WorkflowRuntime()

    @wfr.activity
    @wf.alternate_name("shout")
    def to_upper(ctx, text: str) -> str:
        return text.upper()

    @wf.alternate_name(name="greeting")
    def greet(ctx, who: str):
        return (yield ctx.call_activity(to_upper, input=f"hello {who}"))

    wfr.register_workflow(greet)
    assert wfr.registry.workflow_names == ["greeting"] and wfr.registry.activity_names == ["shout"]
    driver = Driver(wfr.registry)
    driver.start("greeting", "ada")
    driver.run()
    assert driver.instance().result == "HELLO ADA"


def test_alternate_name_twice_or_against_another_registered_name_is_refused() -> None:
    named = wf.alternate_name("one")(lambda ctx: None)
    with pytest.raises(ValueError, match="already has the alternate name"):
        wf.alternate_name("two")(named)
    with pytest.raises(ValueError, match="one name"):
        wf.WorkflowRuntime().register_workflow(named, name="other")


def test_the_activity_context_offers_its_inner_context() -> None:
    wfr = wf.WorkflowRuntime()

    @wfr.activity
    def whoami(ctx: wf.WorkflowActivityContext, _=None):
        inner = ctx.get_inner_context()
        return [inner.orchestration_id, inner.task_id, ctx.workflow_id]

    outcome = run_activity(wfr.registry, "whoami", None, instance_id="order-9", task_id=4)
    assert json.loads(outcome.result) == ["order-9", 4, "order-9"]
    assert isinstance(WorkflowActivityContext("x", 1).get_inner_context(), WorkflowActivityContext)


def test_the_runtime_takes_dapr_constructor_keywords_and_honours_the_concurrency_ones() -> None:
    settings = Settings()
    wfr = wf.WorkflowRuntime(
        None, None, None, None, 7, 50, 3, settings=settings,
        runtime_interceptors=[], workflow_outbound_interceptors=[],
    )
    worker = wfr.activity_worker()
    assert (worker.max_in_flight, worker.threads) == (7, 3)
    assert wfr.orchestrator(8).processor_config().max_batch_records == 50

    defaults = wf.WorkflowRuntime(settings=settings, interceptors=None)
    assert defaults.orchestrator(8).processor_config().max_batch_records == Orchestrator(
        settings, defaults.registry, 8).processor_config().max_batch_records
    assert defaults.activity_worker().threads == 32
    with pytest.raises(ValueError, match="maximum_thread_pool_workers"):
        wf.WorkflowRuntime(settings=settings, maximum_thread_pool_workers=0)


def test_wait_for_worker_ready_is_false_before_start() -> None:
    assert wf.WorkflowRuntime(settings=Settings()).wait_for_worker_ready(timeout=0.1) is False
