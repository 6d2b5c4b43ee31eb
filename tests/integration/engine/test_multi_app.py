"""Three applications in three ``kwf run`` processes on one broker (``app_id=``).

app1's workflow calls a child workflow in app2, which calls an activity in app3; each
process hosts only its own application's code, so every step crosses to another
application's topics and its result comes back the same way.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

from engine import WorkflowClient, WorkflowStatus
from engine.api.history_reader import read_history
from engine.core.history import TaskScheduled
from engine.state.config import Settings
from engine.testing import RuntimeProcess

APPS = "tests.integration.engine.multi_apps"
# Process start-up plus the broker's first rebalances, on a shared two-core machine.
COMPLETION_TIMEOUT_S = 90


def app_process(settings: Settings, folder: Path, app_id: str) -> RuntimeProcess:
    # app3 says which application it is with --app-id, the others with KWF_APP_ID.
    if app_id == "app3":
        return RuntimeProcess(settings, f"{settings.topic_prefix}-{app_id}", folder, f"{APPS}:{app_id}", app_id=app_id)
    return RuntimeProcess(replace(settings, app_id=app_id), f"{settings.topic_prefix}-{app_id}", folder,
                          f"{APPS}:{app_id}")


def started(*processes: RuntimeProcess) -> None:
    for process in processes:
        process.start(wait=False)
    for process in processes:
        process.wait_ready()


def test_a_workflow_calls_a_child_in_app2_that_calls_an_activity_in_app3(settings: Settings,
                                                                           tmp_path: Path) -> None:
    processes = [app_process(settings, tmp_path, app) for app in ("app1", "app2", "app3")]
    try:
        started(*processes)
        app1 = replace(settings, app_id="app1")
        with WorkflowClient(settings=app1) as client:
            chain = client.schedule_new_workflow("order", input=7, instance_id="order-1")
            missing = client.schedule_new_workflow("call_missing", input=None, instance_id="missing-1")
            done = client.wait_for_workflow_completion(chain, timeout_in_seconds=COMPLETION_TIMEOUT_S)
            assert done is not None and done.runtime_status is WorkflowStatus.COMPLETED, done
            # (the history app2 handed on names both callers' applications)
            assert json.loads(done.serialized_output) == {"priced": {"price": 50, "callers": ["app1", "app2"]},
                                                          "by": "app1"}

            failed = client.wait_for_workflow_completion(missing, timeout_in_seconds=COMPLETION_TIMEOUT_S)
            assert failed is not None and failed.runtime_status is WorkflowStatus.COMPLETED, failed
            assert json.loads(failed.serialized_output) == (
                "failed: activity 'not_in_app3' failed after 2 attempts: ActivityNotRegistered: activity "
                "'not_in_app3' is not registered in application 'app3'; register it (@runtime.activity or "
                "register_activity) in every process that runs activity workers")
        # The caller's retry policy ran it twice in app3; both attempts are in app1's history.
        attempts = [e.event for e in read_history(app1, "missing-1") if isinstance(e.event, TaskScheduled)]
        assert [(a.name, a.app_id) for a in attempts] == [("not_in_app3", "app3")] * 2
        # The child ran in app2: its history is in app2's topics, not app1's.
        child = read_history(replace(settings, app_id="app2"), "order-1:0")
        assert [(e.event.name, e.event.app_id) for e in child if isinstance(e.event, TaskScheduled)] == [
            ("square", "app3"), ("callers", "app3")]
    finally:
        for process in processes:
            process.kill()


def test_a_call_to_an_application_no_process_runs_completes_once_it_starts(settings: Settings,
                                                                          tmp_path: Path) -> None:
    app1, app3 = (app_process(settings, tmp_path, app) for app in ("app1", "app3"))
    try:
        started(app1)
        with WorkflowClient(settings=replace(settings, app_id="app1")) as client:
            instance = client.schedule_new_workflow("square_in_app3", input=12, instance_id="early-1")
            client.wait_for_workflow_start(instance, timeout_in_seconds=COMPLETION_TIMEOUT_S)
            time.sleep(2)  # the task is in app3's queue, and nothing runs it
            state = client.get_workflow_state(instance)
            assert state is not None and state.runtime_status is WorkflowStatus.RUNNING, state
            started(app3)
            done = client.wait_for_workflow_completion(instance, timeout_in_seconds=COMPLETION_TIMEOUT_S)
            assert done is not None and done.runtime_status is WorkflowStatus.COMPLETED, done
            assert done.serialized_output == "144"
    finally:
        app1.kill()
        app3.kill()
