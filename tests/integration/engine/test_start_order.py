"""Clients and runtimes work whichever process starts first: real ``kwf`` processes."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from engine import InstanceExists, WorkflowClient, WorkflowStatus
from engine.state.config import Settings
from engine.state.topics import INBOX
from streams.reader import read_to_end
from tests.integration.engine.runtime_process import REPO, kwf, runtime_env, runtime_processes, wait_until


def kwf_in_background(settings: Settings, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "engine.cli", *args], cwd=REPO, env=runtime_env(settings),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def topic_exists(settings: Settings, name: str) -> bool:
    return name in AdminClient(settings.client()).list_topics(timeout=10).topics


def completed(client: WorkflowClient, instance_id: str) -> None:
    state = client.wait_for_workflow_completion(instance_id, timeout_in_seconds=60)
    assert state is not None and state.runtime_status is WorkflowStatus.COMPLETED, state


def test_clients_started_before_the_runtime_see_their_instances(settings: Settings, tmp_path: Path) -> None:
    assert not topic_exists(settings, settings.topic(INBOX))
    # A client process whose start waits for a runtime that is not there yet, and a client
    # in this process whose status view began before any runtime.
    early = kwf_in_background(settings, "start", "sleeper", "--input", "0.1", "--id", "before-runtime")
    client = WorkflowClient(settings=settings)
    assert client.get_workflow_state("before-runtime") is None
    wait_until(lambda: topic_exists(settings, settings.topic(INBOX)), 30, "the client created no inbox")
    time.sleep(1.0)  # the early start is on the inbox, its client waiting
    assert early.poll() is None, early.communicate()

    with runtime_processes(settings, tmp_path) as process:
        process("p0")
        out, err = early.communicate(timeout=60)
        assert early.returncode == 0, err[-3000:]
        assert out.strip() == "before-runtime"
        completed(client, "before-runtime")
        # The early client keeps working for starts after the runtime came.
        client.schedule_new_workflow("sleeper", input=0.1, instance_id="after-runtime")
        completed(client, "after-runtime")


def test_a_client_started_after_the_runtime_sees_its_instances(settings: Settings, tmp_path: Path) -> None:
    with runtime_processes(settings, tmp_path) as process:
        process("p0")
        result = kwf(settings, "start", "sleeper", "--input", "0.1", "--id", "after-runtime")
        assert result.returncode == 0, result.stderr[-3000:]
        completed(WorkflowClient(settings=settings), "after-runtime")


def test_a_start_is_durable_and_visible_to_its_client_before_any_runtime_runs_it(
        settings: Settings, tmp_path: Path) -> None:
    client = WorkflowClient(settings=settings)
    began = time.monotonic()
    client.schedule_new_workflow("sleeper", input=0.1, instance_id="early")
    # No runtime: the call returned once the inbox had the start, without waiting for one.
    assert time.monotonic() - began < 10
    state = client.get_workflow_state("early")
    assert state is not None and state.runtime_status is WorkflowStatus.PENDING
    with pytest.raises(InstanceExists):
        client.schedule_new_workflow("sleeper", input=0.1, instance_id="early")
    starts = [m for m in read_to_end(settings.client(), settings.topic(INBOX)) if m.key() == b"early"]
    assert len(starts) == 1  # durable, once, for whichever runtime comes

    with runtime_processes(settings, tmp_path) as process:
        process("p0")
        completed(client, "early")
