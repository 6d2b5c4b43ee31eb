"""The real Kafka broker every integration test talks to, and per-test topic prefixes.

Order of choice: ``KWF_BOOTSTRAP_SERVERS`` when set; else a Kafka container through
testcontainers when a Docker engine answers; else a local broker started from the
official jars (streams/broker.py) for this test session. No broker is a failure.
"""

from __future__ import annotations

import gc
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from engine.api.status_view import StatusView
from streams.broker import broker_answers, fresh_local_broker
from streams.topics import delete_topics_with_prefix

REPO = Path(__file__).resolve().parents[2]


def docker_engine_answers() -> bool:
    try:
        import docker

        docker.from_env(timeout=2).ping()
        return True
    except Exception:
        return False


@pytest.fixture(scope="session", autouse=True)
def view_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The clients' persistent topic copies go to the session's temporary folder, not the
    user's cache (subprocesses inherit it)."""
    folder = tmp_path_factory.mktemp("views")
    previous = os.environ.get("KWF_VIEW_DIR")
    os.environ["KWF_VIEW_DIR"] = str(folder)
    yield folder
    if previous is None:
        os.environ.pop("KWF_VIEW_DIR", None)
    else:
        os.environ["KWF_VIEW_DIR"] = previous


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """Bootstrap address of a running broker for the whole test session."""
    configured = os.environ.get("KWF_BOOTSTRAP_SERVERS")
    if configured:
        if not broker_answers(configured, timeout=10):
            pytest.fail(f"KWF_BOOTSTRAP_SERVERS={configured} is set but no broker answers there")
        yield configured
        return
    if docker_engine_answers():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer("apache/kafka:4.1.1").with_kraft() as container:
            yield container.get_bootstrap_server()
        return
    home = Path(os.environ.get("KWF_HOME", REPO / ".kwf")).resolve()
    with fresh_local_broker(home, "test-broker") as bootstrap:
        os.environ["KWF_BOOTSTRAP_SERVERS"] = bootstrap  # subprocesses started by tests inherit it
        try:
            yield bootstrap
        finally:
            os.environ.pop("KWF_BOOTSTRAP_SERVERS", None)
            close_kafka_clients()


def close_kafka_clients() -> None:
    """Close the clients finished tests left behind, so they do not retry the stopped broker
    (and log each retry) until the interpreter exits.
    """
    StatusView.close_shared()
    gc.collect()  # unreferenced producers and consumers are destroyed, and disconnect


@pytest.fixture
def topic_prefix(kafka_bootstrap: str) -> Iterator[str]:
    """A fresh topic prefix per test, so tests never see each other's records."""
    prefix = f"t{uuid.uuid4().hex[:10]}"
    yield prefix
    StatusView.close_shared(prefix)  # its consumer would see its topic deleted, and say so
    delete_topics_with_prefix(AdminClient({"bootstrap.servers": kafka_bootstrap}), prefix)

