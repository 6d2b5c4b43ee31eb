"""The fixtures of the engine's integration tests (settings, client, runtimes) serve these tests
too, and ``processes`` starts the subprocesses a test needs and stops them after it."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from engine.testing import REPO
from tests.integration.engine.conftest import client, settings, start_runtime  # noqa: F401


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start subprocesses logging to ``tmp_path``; every one is stopped after the test."""
    started: list[subprocess.Popen[bytes]] = []

    def start(name: str, command: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        with open(tmp_path / f"{name}.log", "wb") as log:
            proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.terminate()
    for proc in started:
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
