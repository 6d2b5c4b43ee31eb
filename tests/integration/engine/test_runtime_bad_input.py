"""Bad input reaches the runtime: it fails or drops that one thing and keeps working."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

import pytest

from engine import DaprWorkflowContext, InstanceExists, WorkflowClient, WorkflowRuntime, WorkflowStatus
from engine.api.history_reader import read_history
from engine.state.config import Settings
from tests.integration.engine.runtime_process import wait_until


def wait_for_go(ctx: DaprWorkflowContext, value: str):
    go = yield ctx.wait_for_external_event("go")
    return {"input": value, "go": go}


def double(ctx, value: int) -> int:
    return value * 2


def doubler(ctx: DaprWorkflowContext, value: int):
    result = yield ctx.call_activity(double, input=value)
    return result


def register(runtime: WorkflowRuntime) -> None:
    runtime.register_workflow(wait_for_go)
    runtime.register_workflow(doubler)
    runtime.register_activity(double)


def assert_still_works(client: WorkflowClient, instance_id: str) -> None:
    client.schedule_new_workflow(doubler, input=21, instance_id=instance_id)
    state = client.wait_for_workflow_completion(instance_id, timeout_in_seconds=30)
    assert state is not None and state.runtime_status is WorkflowStatus.COMPLETED, state
    assert json.loads(state.serialized_output) == 42


def test_an_unknown_workflow_name_fails_the_instance_naming_it(
        start_runtime: Callable[..., WorkflowRuntime], client: WorkflowClient) -> None:
    start_runtime(register)
    client.schedule_new_workflow("no_such_workflow", input=1, instance_id="unknown-name")
    state = client.wait_for_workflow_completion("unknown-name", timeout_in_seconds=30)
    assert state is not None and state.runtime_status is WorkflowStatus.FAILED, state
    assert state.failure_details is not None
    assert "no_such_workflow" in state.failure_details.message, state.failure_details
    assert_still_works(client, "after-unknown-name")


def test_an_event_for_an_unknown_instance_changes_nothing_and_is_logged(
        start_runtime: Callable[..., WorkflowRuntime], client: WorkflowClient, settings: Settings,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="engine.orchestration.orchestrator")
    start_runtime(register)
    client.raise_workflow_event("nobody-home", "go", data={"x": 1})
    wait_until(lambda: any("nobody-home" in r.getMessage() and "unknown" in r.getMessage() for r in caplog.records),
               30, lambda: f"no log line about the dropped event: {[r.getMessage() for r in caplog.records]}")
    assert_still_works(client, "after-unknown-instance")
    assert client.get_workflow_state("nobody-home") is None
    assert read_history(settings, "nobody-home") == []
    # Events are not buffered for an instance that does not exist yet: a later start
    # with that ID does not see this one.
    client.schedule_new_workflow(wait_for_go, input="late", instance_id="nobody-home")
    client.wait_for_workflow_start("nobody-home", timeout_in_seconds=30)
    client.raise_workflow_event("nobody-home", "go", data="now")
    state = client.wait_for_workflow_completion("nobody-home", timeout_in_seconds=30)
    assert json.loads(state.serialized_output) == {"input": "late", "go": "now"}


def test_a_start_for_a_running_id_is_refused(
        start_runtime: Callable[..., WorkflowRuntime], client: WorkflowClient, settings: Settings,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="engine.orchestration.orchestrator")
    start_runtime(register)
    client.schedule_new_workflow(wait_for_go, input="first", instance_id="taken")
    client.wait_for_workflow_start("taken", timeout_in_seconds=30)

    with pytest.raises(InstanceExists, match="taken"):
        client.schedule_new_workflow(wait_for_go, input="second", instance_id="taken")
    # A start that skips the client's check (bulk starts do) is refused by the runtime too.
    client.schedule_new_workflows(wait_for_go, [("taken", "third")])
    wait_until(lambda: any("refused a start of taken" in r.getMessage() for r in caplog.records), 30,
               lambda: f"no refusal logged: {[r.getMessage() for r in caplog.records]}")

    client.raise_workflow_event("taken", "go", data=1)
    state = client.wait_for_workflow_completion("taken", timeout_in_seconds=30)
    assert state is not None and state.runtime_status is WorkflowStatus.COMPLETED, state
    assert json.loads(state.serialized_output) == {"input": "first", "go": 1}
    started = [e for e in read_history(settings, "taken", all_executions=True)
               if type(e.event).__name__ == "ExecutionStarted"]
    assert len(started) == 1, f"{len(started)} executions started under one running ID"
