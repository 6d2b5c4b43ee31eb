"""Runtime subprocesses (``kwf run``, see ``engine.testing``) and ``kwf`` commands for the
integration tests, hosting the test app ``tests.integration.engine.apps``.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from engine.state.config import Settings
from engine.testing import REPO, RuntimeProcess, runtime_env

APP = "tests.integration.engine.apps:runtime"


@contextmanager
def runtime_processes(settings: Settings, folder: Path) -> Iterator[Callable[..., RuntimeProcess]]:
    """Make ``RuntimeProcess``es; every one still running is SIGKILLed on exit."""
    made: list[RuntimeProcess] = []

    def make(process_id: str, role: str = "all", start: bool = True, wait: bool = True, cwd: Path | None = None,
             **env: str) -> RuntimeProcess:
        process = RuntimeProcess(settings, f"{settings.topic_prefix}-{process_id}", folder, APP, role, dict(env),
                                 cwd=cwd)
        made.append(process)
        if start:
            process.start(wait=wait)
        return process

    try:
        yield make
    finally:
        for process in made:
            process.kill()


def wait_until(condition: Callable[[], object], timeout: float, message: Callable[[], str] | str,
               check: Callable[[], None] | None = None, interval: float = 0.05) -> None:
    """Poll ``condition`` until true; fail with ``message`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if check is not None:
            check()
        if time.monotonic() > deadline:
            raise AssertionError(message() if callable(message) else message)
        time.sleep(interval)


@dataclass(frozen=True)
class Run:
    what: str
    item: str
    pid: int
    at: float


def read_runs(folder: Path) -> list[Run]:
    """Every line the test app's activities wrote to ``folder`` (see apps.record_run), oldest first.

    One file per process, named by its PID: the lines of all files are merged by the time
    they were written (a file name order would put PID 10000 before PID 9999).
    """
    runs = []
    for path in folder.glob("*.log"):
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) == 4:
                runs.append(Run(parts[0], parts[1], int(parts[2]), float(parts[3])))
    return sorted(runs, key=lambda run: run.at)  # stable: one process's lines keep their order


def kwf(settings: Settings, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run one ``kwf`` command against the test's topics."""
    # Wide enough that rich never wraps or cuts a table cell.
    return subprocess.run([sys.executable, "-m", "engine.cli", *args], cwd=REPO, capture_output=True, text=True,
                          env=runtime_env(settings, COLUMNS="200"), timeout=timeout)
