"""The Dapr client contract on Kafka: read-your-writes, waits, payload forms, one configuration source."""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

import engine as wf
from engine.state.config import Settings
from engine.state.topics import INBOX, ensure_workflow_topics
from tests.integration.compat import app
from tests.integration.compat.conftest import PARTITIONS

Status = wf.WorkflowStatus
# Generous bound for one instance to finish on a shared two-core machine.
DONE_S = 60


def new_id(label: str) -> str:
    return f"{label}-{uuid.uuid4().hex[:8]}"


def test_a_client_and_a_runtime_built_without_arguments_share_the_kwf_configuration(
    compat_env: dict[str, str], wfr: wf.WorkflowRuntime, wfc: wf.WorkflowClient
) -> None:
    for settings in (wfr.settings, wfc.settings):
        assert settings.bootstrap_servers == compat_env["KWF_BOOTSTRAP_SERVERS"]
        assert settings.topic_prefix == compat_env["KWF_TOPIC_PREFIX"]
        assert settings.state_dir == Path(compat_env["KWF_STATE_DIR"])
        assert settings.partitions == PARTITIONS
    inbox = wfr.settings.topic(INBOX)
    topics = AdminClient(wfr.settings.client()).list_topics(inbox, timeout=10).topics
    assert len(topics[inbox].partitions) == PARTITIONS

    # A second client with no arguments, started after the runtime, reaches it too.
    with wf.DaprWorkflowClient() as other:
        instance_id = other.schedule_new_workflow(app.hello, input="env")
        state = other.wait_for_workflow_completion(instance_id, timeout_in_seconds=DONE_S)
    assert state is not None and state.runtime_status is Status.COMPLETED, state
    assert state.name == "renamed_hello"  # scheduled by function object, registered under another name
    # The activity ran in this process, on the runtime's activity worker.
    runs = [(pid, thread) for iid, pid, thread in app.GREETINGS if iid == instance_id]
    assert len(runs) == 1
    pid, thread = runs[0]
    assert pid == os.getpid() and thread != threading.current_thread().name


def test_every_management_call_is_visible_to_the_next_read(wfc: wf.WorkflowClient) -> None:
    instance_id = new_id("ryw")
    assert wfc.schedule_new_workflow(app.waiter, instance_id=instance_id) == instance_id
    state = wfc.get_workflow_state(instance_id)
    assert state is not None and state.runtime_status in (Status.PENDING, Status.RUNNING)

    wfc.pause_workflow(instance_id)
    assert wfc.get_workflow_state(instance_id).runtime_status is Status.SUSPENDED

    wfc.resume_workflow(instance_id)
    assert wfc.get_workflow_state(instance_id).runtime_status is Status.RUNNING

    wfc.terminate_workflow(instance_id, output={"why": "test"})
    state = wfc.get_workflow_state(instance_id)
    assert state is not None and state.runtime_status is Status.TERMINATED
    assert json.loads(state.serialized_output) == {"why": "test"}

    wfc.purge_workflow(instance_id)
    assert wfc.get_workflow_state(instance_id) is None


def test_a_deferred_start_reads_back_pending_and_can_be_terminated(wfc: wf.WorkflowClient) -> None:
    later = datetime.now(UTC) + timedelta(minutes=10)
    instance_id = wfc.schedule_new_workflow(app.waiter, instance_id=new_id("deferred"), start_at=later)
    assert wfc.get_workflow_state(instance_id).runtime_status is Status.PENDING
    wfc.terminate_workflow(instance_id)
    assert wfc.get_workflow_state(instance_id).runtime_status is Status.TERMINATED


def test_a_deferred_start_can_be_suspended_and_begins_on_resume_after_its_time(wfc: wf.WorkflowClient) -> None:
    later = datetime.now(UTC) + timedelta(seconds=3)
    instance_id = wfc.schedule_new_workflow(app.hello, input="later", instance_id=new_id("paused"), start_at=later)
    began = time.monotonic()
    wfc.pause_workflow(instance_id)
    assert time.monotonic() - began < 10, "the suspend of a pending instance was not acknowledged"
    assert wfc.get_workflow_state(instance_id).runtime_status is Status.SUSPENDED

    # Its time passes while it is suspended: nothing runs.
    time.sleep(max(0.0, (later - datetime.now(UTC)).total_seconds()) + 1.5)
    assert wfc.get_workflow_state(instance_id).runtime_status is Status.SUSPENDED

    wfc.resume_workflow(instance_id)
    state = wfc.wait_for_workflow_completion(instance_id, timeout_in_seconds=DONE_S)
    assert state is not None and state.runtime_status is Status.COMPLETED, state


def test_a_start_returns_once_durable_and_a_wait_for_it_says_so_when_no_runtime_runs_it(
    compat_env: dict[str, str], kafka_bootstrap: str
) -> None:
    # Topics without any runtime behind them: nothing will ever run the start.
    idle = replace(Settings.from_env(), topic_prefix=compat_env["KWF_TOPIC_PREFIX"] + "-idle", partitions=1)
    ensure_workflow_topics(idle)
    client = wf.WorkflowClient(settings=idle)
    began = time.monotonic()
    client.schedule_new_workflow(app.hello, input="nobody", instance_id="orphan-1")
    assert time.monotonic() - began < 10  # the inbox has it; no runtime was waited for
    state = client.get_workflow_state("orphan-1")  # read-your-writes: this client answers for it
    assert state is not None and state.runtime_status is Status.PENDING
    with pytest.raises(TimeoutError, match="did not reach the expected state within 1.0 s"):
        client.wait_for_workflow_start("orphan-1", timeout_in_seconds=1.0)

    # The bulk path does not even keep a pending answer: the starts are on the broker, and
    # the runtime's word is the only one.
    assert client.schedule_new_workflows(app.hello, [("orphan-2", 2), ("orphan-3", 3)]) == ["orphan-2", "orphan-3"]
    assert client.get_workflow_state("orphan-2") is None


def test_bulk_start_returns_the_ids_and_every_instance_runs(wfc: wf.WorkflowClient) -> None:
    ids = [new_id(f"bulk{i}") for i in range(5)]
    returned = wfc.schedule_new_workflows(app.hello, [(iid, f"n{i}") for i, iid in enumerate(ids)])
    assert returned == ids
    for i, iid in enumerate(ids):
        state = wfc.wait_for_workflow_completion(iid, timeout_in_seconds=DONE_S)
        assert state is not None and state.runtime_status is Status.COMPLETED
        assert json.loads(state.serialized_output) == f"hello n{i}"


def test_waits_time_out_with_timeout_error_and_zero_waits_until_the_end(wfc: wf.WorkflowClient) -> None:
    with pytest.raises(TimeoutError):
        wfc.wait_for_workflow_start(new_id("never-started"), timeout_in_seconds=1)

    instance_id = wfc.schedule_new_workflow(app.waiter)
    started = wfc.wait_for_workflow_start(instance_id, timeout_in_seconds=DONE_S)
    assert started is not None and started.runtime_status is Status.RUNNING
    with pytest.raises(TimeoutError):
        wfc.wait_for_workflow_completion(instance_id, timeout_in_seconds=1)

    outcome: list[object] = []
    waiting = threading.Thread(
        target=lambda: outcome.append(wfc.wait_for_workflow_completion(instance_id, timeout_in_seconds=0)),
        daemon=True,
    )
    waiting.start()
    waiting.join(2)
    assert waiting.is_alive() and outcome == []  # 0 is not "give up at once"
    wfc.raise_workflow_event(instance_id, "go", data="released")
    waiting.join(DONE_S)
    state = outcome[0]
    assert isinstance(state, wf.WorkflowState) and state.runtime_status is Status.COMPLETED
    assert state.serialized_output == '"released"'


def test_status_output_and_custom_status_read_as_dapr_does(wfc: wf.WorkflowClient) -> None:
    instance_id = wfc.schedule_new_workflow(app.hello, input="json")
    state = wfc.wait_for_workflow_completion(instance_id, timeout_in_seconds=DONE_S)
    assert state is not None
    assert str(state.runtime_status) == "WorkflowStatus.COMPLETED"
    assert state.runtime_status.name == "COMPLETED"
    assert state.serialized_output == '"hello json"'
    assert state.serialized_custom_status == '"x"'
    assert state.serialized_input == '"json"'


def test_history_propagates_through_a_child_workflow_to_its_activity(wfc: wf.WorkflowClient) -> None:
    instance_id = wfc.schedule_new_workflow(app.lineage_parent, input="kafka")
    state = wfc.wait_for_workflow_completion(instance_id, timeout_in_seconds=DONE_S)
    assert state is not None and state.runtime_status is Status.COMPLETED, state
    assert json.loads(state.serialized_output) == [["lineage_parent", "lineage_child"], '"hello kafka"']
