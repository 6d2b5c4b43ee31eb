"""History propagation to activities and child workflows, on the in-memory driver."""

from __future__ import annotations

import json

import pytest

import engine as wf
from engine.core.history import ChildWorkflowScheduled, TaskScheduled
from engine.replay.propagation import PropagatedHistory
from tests.unit.engine.driver import Driver

Scope = wf.PropagationScope


def lineage_app() -> tuple[wf.WorkflowRuntime, dict[str, object]]:
    wfr = wf.WorkflowRuntime()
    seen: dict[str, object] = {}

    @wfr.activity
    def charge(ctx, amount):
        if amount < 0:
            raise ValueError("negative amount")
        return {"charged": amount}

    @wfr.activity
    def audit(ctx: wf.WorkflowActivityContext, _=None):
        history = ctx.get_propagated_history()
        seen["activity"] = history
        last = history.get_last_workflow_by_name("child").get_last_activity_by_name("charge")
        return [last.completed, json.loads(last.output)]

    @wfr.workflow
    def child(ctx: wf.DaprWorkflowContext, amount):
        seen["child"] = ctx.get_propagated_history()
        yield ctx.call_activity(charge, input=amount)
        return (yield ctx.call_activity(audit, propagation=Scope.LINEAGE))

    @wfr.workflow
    def parent(ctx: wf.DaprWorkflowContext, _=None):
        yield ctx.call_activity(charge, input=5)
        try:
            yield ctx.call_activity(charge, input=-1)
        except wf.TaskFailedError:
            pass
        return (yield ctx.call_child_workflow(child, input=7, propagation=Scope.LINEAGE))

    return wfr, seen


@pytest.mark.parametrize("cache_size", [10_000, 0])
def test_a_child_and_its_activity_see_the_lineage_of_their_callers(cache_size: int) -> None:
    wfr, seen = lineage_app()
    driver = Driver(wfr.registry, cache_size=cache_size)
    driver.start("parent", instance_id="order-1")
    driver.run()
    assert driver.instance("order-1").result == [True, {"charged": 7}]

    to_child = seen["child"]
    assert isinstance(to_child, PropagatedHistory) and to_child.scope is Scope.LINEAGE
    assert [w.name for w in to_child.get_workflows()] == ["parent"]
    parent = to_child.get_last_workflow_by_name("parent")
    assert parent.instance_id == "order-1" and to_child.get_app_ids() == [""]
    charges = parent.get_activities_by_name("charge")
    assert [(c.input, c.completed, c.failed) for c in charges] == [("5", True, False), ("-1", False, True)]
    assert json.loads(charges[0].output) == {"charged": 5}
    assert charges[1].error["type"] == "ValueError"
    assert parent.get_last_activity_by_name("charge").failed

    to_activity = seen["activity"]
    assert [w.name for w in to_activity.get_workflows()] == ["parent", "child"]
    assert to_activity.get_workflows()[1].instance_id == "order-1:2"


def test_own_history_leaves_out_the_ancestors_and_no_propagation_is_none() -> None:
    wfr = wf.WorkflowRuntime()
    seen: dict[str, object] = {}

    @wfr.activity
    def look(ctx, label):
        seen[label] = ctx.get_propagated_history()

    @wfr.workflow
    def inner(ctx, _=None):
        seen["inner"] = ctx.get_propagated_history()
        yield ctx.call_activity(look, input="own", propagation=Scope.OWN_HISTORY)
        yield ctx.call_activity(look, input="none")
        yield ctx.call_activity(look, input="explicit none", propagation=Scope.NONE)

    @wfr.workflow
    def outer(ctx, _=None):
        yield ctx.call_child_workflow(inner, propagation=Scope.OWN_HISTORY)

    driver = Driver(wfr.registry)
    driver.start(outer)
    driver.run()
    assert driver.instance().status is wf.WorkflowStatus.COMPLETED
    assert [w.name for w in seen["own"].get_workflows()] == ["inner"]
    assert seen["own"].get_workflows()[0].get_child_workflows_by_name("x") == []
    # The history handed on is the caller's up to the call, without the call itself.
    assert seen["inner"].get_last_workflow_by_name("outer").get_child_workflows_by_name("inner") == []
    assert seen["none"] is None and seen["explicit none"] is None


def test_a_missing_name_raises_propagation_not_found_error() -> None:
    history = PropagatedHistory.from_json(
        '{"scope":"OWN_HISTORY","chunks":[{"app_id":"","instance_id":"i","workflow_name":"w","events":[]}]}')
    assert history is not None
    with pytest.raises(wf.PropagationNotFoundError, match="no workflow named 'x'"):
        history.get_last_workflow_by_name("x")
    with pytest.raises(wf.PropagationNotFoundError, match="no activity named 'a'"):
        history.get_last_workflow_by_name("w").get_last_activity_by_name("a")
    with pytest.raises(wf.PropagationNotFoundError, match="no child workflow named 'c'"):
        history.get_workflows()[0].get_last_child_workflow_by_name("c")


def test_the_propagated_history_is_recorded_with_the_step_and_the_same_on_replay() -> None:
    wfr, _ = lineage_app()
    live, replayed = Driver(wfr.registry), Driver(wfr.registry, cache_size=0)
    for driver in (live, replayed):
        driver.start("parent", instance_id="order-1")
        driver.run()
    for kind in (TaskScheduled, ChildWorkflowScheduled):
        assert [e.propagated_history for e in live.instance("order-1").of_kind(kind)] == \
               [e.propagated_history for e in replayed.instance("order-1").of_kind(kind)]
    child_step = live.instance("order-1").of_kind(ChildWorkflowScheduled)[0]
    assert json.loads(child_step.propagated_history)["scope"] == "LINEAGE"
    # Calls without propagation carry nothing.
    assert all(e.propagated_history is None for e in live.instance("order-1").of_kind(TaskScheduled))


def test_propagation_must_be_a_scope() -> None:
    wfr = wf.WorkflowRuntime()

    @wfr.workflow
    def wrong(ctx, _=None):
        yield ctx.call_activity("anything", propagation="LINEAGE")

    driver = Driver(wfr.registry)
    driver.start(wrong)
    assert "PropagationScope" in driver.instance().failure.message
