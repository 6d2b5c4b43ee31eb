"""Registering workflows and activities the way dapr.ext.workflow's WorkflowRuntime does."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from engine.replay.executor import Registry
from engine.replay.registry import name_of


@dataclass
class Job:
    job_id: str


def test_decorators_with_and_without_arguments() -> None:
    reg = Registry()

    @reg.workflow
    def flow(ctx, job: Job):
        yield None

    @reg.workflow(name="renamed_flow")
    def other_flow(ctx):
        return 1

    @reg.activity
    def act(ctx, x):
        return x

    @reg.activity(name="renamed_act")
    async def other_act(ctx):
        return 2

    assert reg.workflow_names == ["flow", "renamed_flow"]
    assert reg.activity_names == ["act", "renamed_act"]
    # The decorators hand back the function itself, still callable as before.
    assert other_flow(None) == 1
    entry = reg.get_workflow("flow")
    assert entry is not None and entry.fn is flow and entry.takes_input and entry.input_type is Job
    other = reg.get_activity("renamed_act")
    assert other is not None and not other.takes_input


def test_register_functions_directly_and_resolve_them_to_their_names() -> None:
    reg = Registry()

    def flow(ctx):
        return None

    def act(ctx, x):
        return x

    reg.register_workflow(flow, name="flow_v2")
    reg.register_activity(act)
    assert name_of(flow) == "flow_v2"
    assert name_of(act) == "act"
    assert name_of("by_name") == "by_name"
    assert reg.get_workflow("flow_v2") is not None
    assert reg.get_workflow("flow") is None


def test_an_unregistered_function_resolves_to_its_dunder_name() -> None:
    def never_registered(ctx):
        return None

    assert name_of(never_registered) == "never_registered"
    with pytest.raises(TypeError):
        name_of(42)  # type: ignore[arg-type]


def test_registering_the_same_function_twice_raises() -> None:
    reg = Registry()

    def flow(ctx):
        return None

    reg.register_workflow(flow)
    with pytest.raises(ValueError, match="already registered"):
        reg.register_workflow(flow)
    with pytest.raises(ValueError, match="already registered"):
        reg.register_workflow(flow, name="another_name")


def test_two_functions_under_one_name_raise() -> None:
    reg = Registry()
    reg.register_activity(lambda ctx: 1, name="same")
    with pytest.raises(ValueError, match="'same' is already registered"):
        reg.register_activity(lambda ctx: 2, name="same")


def test_workflows_and_activities_have_separate_names() -> None:
    reg = Registry()
    reg.register_workflow(lambda ctx: 1, name="shared")
    reg.register_activity(lambda ctx: 2, name="shared")
    wf_entry, act_entry = reg.get_workflow("shared"), reg.get_activity("shared")
    assert wf_entry is not None and act_entry is not None
    assert wf_entry.call(None, None) == 1
    assert act_entry.call(None, None) == 2


def test_one_function_may_register_in_separate_registries() -> None:
    def act(ctx):
        return None

    Registry().register_activity(act)
    Registry().register_activity(act)
    assert name_of(act) == "act"
