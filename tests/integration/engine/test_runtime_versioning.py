"""Workflow versions across redeploys: real runtime processes restarted with other code.

An instance started on v1 stalls (STALLED, VERSION_NOT_AVAILABLE) when the only runtime
left has v2, keeps the event raised meanwhile, and completes on v1 once a runtime that
registers v1 again takes its partition.
"""

from __future__ import annotations

import json
from pathlib import Path

from engine import WorkflowClient, WorkflowStatus
from engine.api.history_reader import read_history
from engine.core.history import EventRaised, ExecutionStalled, VersionMarker
from engine.state.config import Settings
from tests.integration.engine.runtime_process import runtime_processes, wait_until

# The stalled instance is retried at 5, 10, 20, 40, then every 60 s; the redeploy below
# comes within the first minute, so a minute and a half covers the next re-check.
RESUME_S = 90


def test_a_redeploy_without_the_running_version_stalls_the_instance_and_a_redeploy_with_it_resumes(
        settings: Settings, client: WorkflowClient, tmp_path: Path) -> None:
    with runtime_processes(settings, tmp_path) as process:
        v1_only = process("p0", KWF_TEST_ORDER_VERSIONS="v1")
        instance_id = client.schedule_new_workflow("versioned_order", instance_id="order-v1")
        wait_until(lambda: any(isinstance(e.event, VersionMarker) for e in read_history(settings, instance_id))
                   and client.get_workflow_state(instance_id).runtime_status is WorkflowStatus.RUNNING, 60,
                   "the v1 instance did not start", v1_only.check_alive)
        v1_only.stop()

        v2_only = process("p1", KWF_TEST_ORDER_VERSIONS="v2")
        client.raise_workflow_event(instance_id, "go", data="kept")
        wait_until(lambda: client.get_workflow_state(instance_id).runtime_status is WorkflowStatus.STALLED, 60,
                   lambda: f"not stalled: {client.get_workflow_state(instance_id)}", v2_only.check_alive)
        stalled = client.get_workflow_state(instance_id)
        assert stalled.stalled_reason == "VERSION_NOT_AVAILABLE"
        assert "'v1'" in stalled.failure_details.message

        # New instances run the latest version this runtime has.
        fresh = client.schedule_new_workflow("versioned_order", instance_id="order-v2")
        client.raise_workflow_event(fresh, "go", data="now")
        done = client.wait_for_workflow_completion(fresh, timeout_in_seconds=60)
        assert json.loads(done.serialized_output) == ["now", "v2"]
        v2_only.stop()

        process("p2", KWF_TEST_ORDER_VERSIONS="v1,v2")
        state = client.wait_for_workflow_completion(instance_id, timeout_in_seconds=RESUME_S)

    assert state.runtime_status is WorkflowStatus.COMPLETED, state
    assert json.loads(state.serialized_output) == ["v1 step", "kept", "v1"]
    assert state.failure_details is None
    history = [e.event for e in read_history(settings, instance_id)]
    assert [e.version for e in history if isinstance(e, VersionMarker)] == ["v1"]
    assert len([e for e in history if isinstance(e, ExecutionStalled)]) == 1
    assert [e.data for e in history if isinstance(e, EventRaised)] == ['"kept"']
