"""Several ``kwf run`` processes started from one folder, with one environment, share the work."""

from __future__ import annotations

import re
import time
from pathlib import Path

from engine import WorkflowClient, WorkflowStatus
from engine.state.config import Settings
from tests.integration.engine.runtime_process import RuntimeProcess, runtime_processes

IDENTITY = re.compile(r"^runtime ready \(all, process (\S+), state (\S+)\)", re.MULTILINE)


def identity(process: RuntimeProcess) -> tuple[str, str]:
    found = IDENTITY.search(process.current_log())
    assert found, process.current_log()[-2000:]
    return found.group(1), found.group(2)


def complete_some(client: WorkflowClient, label: str, count: int = 6) -> None:
    ids = [f"{label}-{n}" for n in range(count)]
    for instance_id in ids:
        client.schedule_new_workflow("sleeper", input=0.1, instance_id=instance_id)
    for instance_id in ids:
        state = client.wait_for_workflow_completion(instance_id, timeout_in_seconds=60)
        assert state is not None and state.runtime_status is WorkflowStatus.COMPLETED, state


def test_runtimes_from_one_folder_each_take_a_slot_and_a_restarted_one_gets_its_own_back(
        settings: Settings, tmp_path: Path) -> None:
    app_folder = tmp_path / "app"
    app_folder.mkdir()
    client = WorkflowClient(settings=settings)
    with runtime_processes(settings, tmp_path / "logs") as process:
        first, second = process("a", cwd=app_folder), process("b", cwd=app_folder)
        complete_some(client, "two")
        third = process("c", cwd=app_folder)
        complete_some(client, "three")
        time.sleep(2)  # a fenced processor stops its process within moments
        for each in (first, second, third):
            each.check_alive()
        ids = [identity(p) for p in (first, second, third)]
        assert sorted(state for _, state in ids) == [f".kwf/state/slot-{n}" for n in range(3)], ids
        assert len({pid for pid, _ in ids}) == 3, ids

        second.kill()
        second.start()
        assert identity(second) == ids[1]
        complete_some(client, "after-restart")
        for each in (first, second, third):
            each.check_alive()
