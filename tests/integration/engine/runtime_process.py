"""Runtime subprocesses (``kwf run``) and ``kwf`` commands for the integration tests.

A ``RuntimeProcess`` is one logical process: a stable process ID and state folder, so a
restart after SIGKILL is the same process coming back. Its stderr goes to a log file the
tests read (readiness, partition assignments, dropped events).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from engine.state.config import Settings

REPO = Path(__file__).resolve().parents[3]
APP = "tests.integration.engine.apps:runtime"
# A cold start joins two consumer groups and restores state; after a SIGKILL the group
# also waits for the dead member's session (3 s) to expire.
READY_TIMEOUT_S = 60.0
READY = re.compile(r"^runtime ready \(", re.MULTILINE)
ASSIGNED = re.compile(r"assigned (\S+) partitions \[([0-9, ]*)\]")


def runtime_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment of a subprocess that talks to the test's topics."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KWF_")}
    env.update({
        "KWF_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "KWF_TOPIC_PREFIX": settings.topic_prefix,
        "KWF_PARTITIONS": str(settings.partitions),
        "PYTHONUNBUFFERED": "1",
    })
    env.update(extra)
    return env


@dataclass
class RuntimeProcess:
    """``kwf run`` of the test app in a subprocess; restartable under the same identity."""

    settings: Settings
    process_id: str
    folder: Path
    role: str = "all"
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def log_path(self) -> Path:
        return self.folder / f"{self.process_id}.log"

    def start(self, wait: bool = True) -> RuntimeProcess:
        self.folder.mkdir(parents=True, exist_ok=True)
        env = runtime_env(self.settings, KWF_STATE_DIR=str(self.folder / f"state-{self.process_id}"),
                          KWF_PROCESS_ID=self.process_id, **self.env)
        self.starts += 1
        with open(self.log_path, "ab") as log:
            log.write(f"--- start {self.starts}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "engine.cli", "--log-level", "INFO", "run", "--app", APP,
                 "--role", self.role, "--no-http"],
                cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
            )
        if wait:
            self.wait_ready()
        return self

    def current_log(self) -> str:
        """The log of the latest start of this process."""
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return text.rsplit(f"--- start {self.starts}\n", 1)[-1]

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        wait_until(lambda: READY.search(self.current_log()), timeout,
                   lambda: f"{self.process_id} not ready; log:\n{self.current_log()[-3000:]}", self.check_alive)

    def check_alive(self) -> None:
        assert self.proc is not None
        code = self.proc.poll()
        if code is not None:
            raise AssertionError(f"{self.process_id} exited with {code}; log:\n{self.current_log()[-3000:]}")

    def assigned(self, topic_suffix: str = ".inbox") -> set[int]:
        """Partitions of the topic this process was last assigned (from its INFO log, cumulative)."""
        held: set[int] = set()
        for line in self.current_log().splitlines():
            match = ASSIGNED.search(line)
            if match and match.group(1).endswith(topic_suffix) and match.group(2).strip():
                held |= {int(p) for p in match.group(2).split(",")}
            if ("revoked" in line or "lost" in line) and topic_suffix in line:
                found = re.search(r"\[([0-9, ]*)\]", line)
                if found and found.group(1).strip():
                    held -= {int(p) for p in found.group(1).split(",")}
        return held

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, open transactions stay open."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM and wait for a clean exit (SIGKILL if it hangs)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()


@contextmanager
def runtime_processes(settings: Settings, folder: Path) -> Iterator[Callable[..., RuntimeProcess]]:
    """Make ``RuntimeProcess``es; every one still running is SIGKILLed on exit."""
    made: list[RuntimeProcess] = []

    def make(process_id: str, role: str = "all", start: bool = True, wait: bool = True,
             **env: str) -> RuntimeProcess:
        process = RuntimeProcess(settings, f"{settings.topic_prefix}-{process_id}", folder, role, dict(env))
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
    """Every line the test app's activities wrote to ``folder`` (see apps.record_run)."""
    runs = []
    for path in sorted(folder.glob("*.log")):
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) == 4:
                runs.append(Run(parts[0], parts[1], int(parts[2]), float(parts[3])))
    return runs


def kwf(settings: Settings, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run one ``kwf`` command against the test's topics."""
    # Wide enough that rich never wraps or cuts a table cell.
    return subprocess.run([sys.executable, "-m", "engine.cli", *args], cwd=REPO, capture_output=True, text=True,
                          env=runtime_env(settings, COLUMNS="200"), timeout=timeout)
