"""``kwf`` commands as a user runs them: subprocesses against a runtime subprocess."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from engine import WorkflowClient, WorkflowStatus
from engine.state.config import Settings
from tests.integration.engine.runtime_process import kwf, runtime_processes


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"{result.args[3:]} exited {result.returncode}: {result.stderr[-2000:]}"
    return result.stdout


def refused(result: subprocess.CompletedProcess[str], message: str) -> None:
    assert result.returncode != 0, f"{result.args[3:]} succeeded: {result.stdout}"
    assert message in result.stderr, f"{result.args[3:]}: want {message!r} in stderr, got {result.stderr[-2000:]}"
    assert "Traceback" not in result.stderr, f"{result.args[3:]} crashed instead of explaining: {result.stderr}"


def status(settings: Settings, instance_id: str) -> dict:
    return json.loads(ok(kwf(settings, "status", instance_id)))


def test_kwf_drives_an_instance_through_its_life(settings: Settings, client: WorkflowClient, tmp_path: Path) -> None:
    with runtime_processes(settings, tmp_path) as process:
        process("p0")
        assert ok(kwf(settings, "start", "await_approval", "--input", '{"item": "book"}', "--id", "cli-1")).strip() \
            == "cli-1"
        shown = status(settings, "cli-1")
        assert (shown["instanceID"], shown["workflowName"], shown["runtimeStatus"]) == (
            "cli-1", "await_approval", "RUNNING"), shown
        assert json.loads(shown["input"]) == {"item": "book"}

        refused(kwf(settings, "start", "await_approval", "--id", "cli-1"), "already exists")
        refused(kwf(settings, "start", "await_approval", "--input", "{not json", "--id", "cli-x"), "not valid JSON")
        refused(kwf(settings, "purge", "cli-1"), "only ended instances can be purged")

        assert ok(kwf(settings, "suspend", "cli-1")).strip() == "cli-1: SUSPENDED"
        ok(kwf(settings, "raise", "cli-1", "approval", "--data", '{"by": "ann"}'))
        assert status(settings, "cli-1")["runtimeStatus"] == "SUSPENDED", "the event ran a suspended instance"
        assert ok(kwf(settings, "resume", "cli-1")).strip() in {"cli-1: RUNNING", "cli-1: COMPLETED"}
        state = client.wait_for_workflow_completion("cli-1", timeout_in_seconds=30)
        assert state.runtime_status is WorkflowStatus.COMPLETED, state
        assert json.loads(status(settings, "cli-1")["output"]) == {"order": {"item": "book"}, "approval": {"by": "ann"}}

        ok(kwf(settings, "start", "await_approval", "--input", "{}", "--id", "cli-2"))
        running = ok(kwf(settings, "list", "--status", "running"))
        completed = ok(kwf(settings, "list", "--status", "COMPLETED"))
        assert "cli-2" in running and "cli-1" not in running, running
        assert "cli-1" in completed and "cli-2" not in completed, completed
        assert ok(kwf(settings, "terminate", "cli-2")).strip() == "cli-2: TERMINATED"
        assert "cli-2" in ok(kwf(settings, "list", "--status", "TERMINATED"))

        timeline = ok(kwf(settings, "history", "cli-1"))
        for expected in ("await_approval", "suspended", "resumed", "approval", "echo", "completed"):
            assert expected in timeline, f"{expected!r} missing from the timeline:\n{timeline}"

        assert ok(kwf(settings, "purge", "cli-1")).strip() == "cli-1: purged"
        gone = kwf(settings, "status", "cli-1")
        assert gone.returncode == 1 and "no instance cli-1" in gone.stderr, gone
        refused(kwf(settings, "history", "cli-1"), "no history for cli-1")
        assert "cli-1" not in ok(kwf(settings, "list"))
