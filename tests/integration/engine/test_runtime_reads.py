"""A new client with no view folder answers from a running runtime's HTTP API while its own
status view reads the topic; with no runtime, from its own view once that is caught up."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from confluent_kafka import Producer

from engine.api.client import WorkflowClient, WorkflowState
from engine.api.runtime_directory import find_runtimes
from engine.api.status_view import StatusView
from engine.core.history import WorkflowStatus
from engine.state.codec import StatusRecord, encode_status
from engine.state.config import Settings
from engine.state.topics import STATUS, ensure_workflow_topics
from engine.testing import RuntimeProcess
from tests.integration.engine.runtime_process import APP

# Enough that reading the whole status topic takes a client far longer than one question
# to a runtime (about a second here), so the first answer can only come from the runtime.
INSTANCES = 50_000
EPOCH = datetime(2026, 11, 1, tzinfo=UTC)
FINAL = [WorkflowStatus.COMPLETED, WorkflowStatus.FAILED, WorkflowStatus.TERMINATED]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def record(n: int) -> StatusRecord:
    created = EPOCH + timedelta(milliseconds=n)
    return StatusRecord(f"i-{n:06d}", f"x{n}", "chain3" if n % 2 else "other", FINAL[n % 3], created,
                        created + timedelta(seconds=1), str(n), str(n + 1), None, None, None, 8)


def write_statuses(settings: Settings, count: int) -> None:
    """The final statuses of ``count`` instances, straight to the status topic."""
    ensure_workflow_topics(settings)
    producer = Producer({**settings.producer(), "linger.ms": "50"})
    for n in range(count):
        while True:
            try:
                producer.produce(settings.topic(STATUS), key=record(n).instance_id.encode(),
                                 value=encode_status(record(n)))
                break
            except BufferError:
                producer.poll(0.05)
    assert producer.flush(120) == 0


def new_client(settings: Settings, folder: Path, **kwargs: object) -> WorkflowClient:
    """A client as on a new machine: an empty view folder and no view in this process."""
    StatusView.close_shared(settings.topic_prefix)
    return WorkflowClient(settings=replace(settings, view_dir=folder), **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def runtime_api(settings: Settings, tmp_path: Path) -> Iterator[str]:
    """A runtime process serving the HTTP API over a status topic of INSTANCES instances,
    announced (its own view caught up): its base URL."""
    write_statuses(settings, INSTANCES)
    port = free_port()
    process = RuntimeProcess(settings, f"{settings.topic_prefix}-api", tmp_path, APP, http_port=port,
                             env={"KWF_VIEW_DIR": str(tmp_path / "runtime-views")})
    process.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while url not in [entry.url for entry in find_runtimes(settings)]:
        process.check_alive()
        assert time.monotonic() < deadline, f"the runtime never announced {url}:\n{process.current_log()[-3000:]}"
        time.sleep(0.2)
    yield url
    process.stop()


def test_a_new_client_answers_from_an_announced_runtime(settings: Settings, runtime_api: str,
                                                        tmp_path: Path) -> None:
    client = new_client(settings, tmp_path / "client-views")
    asked = record(INSTANCES - 7)
    state = client.get_workflow_state(asked.instance_id)
    # The runtime answered: the client's own view was not caught up when it asked.
    assert client.runtime_reads is not None and client.runtime_reads.answers == 1
    assert state == WorkflowState.of(asked)
    assert client.get_workflow_state("no-such-instance") is None
    remote_page = client.list_workflows_page(status=WorkflowStatus.FAILED, name="other", page_size=50)
    done = client.wait_for_workflow_completion(asked.instance_id, timeout_in_seconds=10)
    assert done == WorkflowState.of(asked)
    # Both read states, the page and the wait: all asked of the runtime.
    assert client.runtime_reads.answers == 4
    # Once caught up the client answers from its own view, with the same shapes.
    client.view.wait_caught_up()
    answers = client.runtime_reads.answers
    assert client.get_workflow_state(asked.instance_id) == state
    local_page = client.list_workflows_page(status=WorkflowStatus.FAILED, name="other", page_size=50)
    assert client.runtime_reads.answers == answers
    assert remote_page == local_page
    assert [s.instance_id for s in local_page.workflows] == [record(n).instance_id for n in range(4, 400, 6)][:50]
    client.close()


def test_a_dead_address_is_skipped(settings: Settings, runtime_api: str, tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    client = new_client(settings, tmp_path / "client-views", runtime_url=f"{dead},{runtime_api}")
    asked = record(123)
    assert client.get_workflow_state(asked.instance_id) == WorkflowState.of(asked)
    assert client.runtime_reads is not None and client.runtime_reads.answers == 1
    client.close()


def test_without_a_runtime_the_client_answers_from_its_own_view(settings: Settings, tmp_path: Path) -> None:
    write_statuses(settings, 2_000)
    client = new_client(settings, tmp_path / "client-views")
    asked = record(1_999)
    assert client.get_workflow_state(asked.instance_id) == WorkflowState.of(asked)
    assert client.runtime_reads is not None and client.runtime_reads.answers == 0
    assert client.view.caught_up
    client.close()
