"""Runtimes and clients on the real broker, each test with its own topic prefix."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from engine import WorkflowClient, WorkflowRuntime
from engine.state.config import Settings


@pytest.fixture
def settings(kafka_bootstrap: str, topic_prefix: str, tmp_path: Path) -> Settings:
    # Four partitions: co-partitioning and multi-partition paths without slow topic creation.
    return Settings.from_env(bootstrap_servers=kafka_bootstrap, topic_prefix=topic_prefix, partitions=4,
                             state_dir=tmp_path / "state", process_id=f"{topic_prefix}-p0")


@pytest.fixture
def start_runtime(settings: Settings) -> Iterator[Callable[..., WorkflowRuntime]]:
    """Start an in-process runtime with a registration callback; shut down after the test."""
    started: list[WorkflowRuntime] = []

    def start(register: Callable[[WorkflowRuntime], None], **kwargs: object) -> WorkflowRuntime:
        runtime = WorkflowRuntime(settings=settings, **kwargs)  # type: ignore[arg-type]
        register(runtime)
        runtime.start()
        started.append(runtime)
        return runtime

    yield start
    for runtime in started:
        runtime.shutdown()


@pytest.fixture
def client(settings: Settings) -> Iterator[WorkflowClient]:
    with WorkflowClient(settings=settings) as client:
        yield client
