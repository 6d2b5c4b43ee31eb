"""A runtime in a subprocess (``kwf run``), for tests and benchmarks that kill it for real.

A ``RuntimeProcess`` is one logical process: a stable process ID and state folder, so a
start after a SIGKILL is the same process coming back (it reuses its transactional IDs and
fences its predecessor). Its output goes to a log file, one section per start; readiness,
restores and partition assignments are read from there.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from engine.state.config import Settings

REPO = Path(__file__).resolve().parent.parent
# A cold start joins consumer groups and restores state; after a SIGKILL the group also
# waits for the dead member's session to expire; a busy 2-core machine doubles all of it.
READY_TIMEOUT_S = 90.0
# SIGTERM gets this long to finish the open transaction before SIGKILL.
STOP_TIMEOUT_S = 30.0
READY = re.compile(r"^runtime ready \(", re.MULTILINE)
RESTORED = re.compile(r"restored \S+-\d+: (\d+) records up to offset \d+ in ([0-9.]+) s")
ASSIGNED = re.compile(r"assigned (\S+) partitions \[([0-9, ]*)\]")


def runtime_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment of a subprocess that talks to ``settings``' broker and topics.

    The caller's own ``KWF_*`` variables are left out, so only what is given here applies.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("KWF_")}
    env.update({
        "KWF_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "KWF_TOPIC_PREFIX": settings.topic_prefix,
        "KWF_PARTITIONS": str(settings.partitions),
        "PYTHONUNBUFFERED": "1",
    })
    if settings.app_id:
        env["KWF_APP_ID"] = settings.app_id
    env.update(extra)
    return env


@dataclass
class RuntimeProcess:
    """``kwf run --app APP --role ROLE`` in a subprocess, without its HTTP API unless ``http_port``.

    Args:
        settings: Broker and topics.
        process_id: Its ``KWF_PROCESS_ID``; its state folder and log are named after it.
        folder: Where the state folder and the log live.
        app: The ``MODULE:ATTR`` of the ``WorkflowRuntime`` to host.
        role: ``all``, ``orchestrator`` or ``worker``.
        env: More environment variables.
        profile_to: Run it under py-spy and write collapsed stacks there.
        checkout: The source tree to run (default: this one).
        cwd: None: started in ``checkout`` with a ``KWF_STATE_DIR`` and ``KWF_PROCESS_ID``
            of its own. A folder: started there with neither set, as a user runs
            ``kwf run`` from an application's folder.
        http_port: Serve the HTTP API on this port of 127.0.0.1 (default: ``--no-http``).
        app_id: Its ``kwf run --app-id`` (None: from ``settings``, as ``KWF_APP_ID``).
    """

    settings: Settings
    process_id: str
    folder: Path
    app: str
    role: str = "all"
    env: dict[str, str] = field(default_factory=dict, repr=False)  # may hold credentials
    profile_to: Path | None = None
    checkout: Path = REPO
    cwd: Path | None = None
    http_port: int | None = None
    app_id: str | None = None
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def log_path(self) -> Path:
        return self.folder / f"{self.process_id}.log"

    @property
    def state_dir(self) -> Path:
        return self.folder / f"state-{self.process_id}"

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, wait: bool = True, **extra_env: str) -> float:
        """Start it (``extra_env`` for this start only); with ``wait``, return the seconds
        until it said it was ready.
        """
        self.folder.mkdir(parents=True, exist_ok=True)
        if self.cwd is None:
            env = runtime_env(self.settings, KWF_STATE_DIR=str(self.state_dir), KWF_PROCESS_ID=self.process_id,
                              **{**self.env, **extra_env})
        else:
            env = runtime_env(self.settings, PYTHONPATH=str(self.checkout), **{**self.env, **extra_env})
        http = ["--no-http"] if self.http_port is None else ["--http-port", str(self.http_port)]
        command = [sys.executable, "-m", "engine.cli", "--log-level", "INFO", "run", "--app", self.app,
                   "--role", self.role, *http, *([] if self.app_id is None else ["--app-id", self.app_id])]
        if self.profile_to is not None:
            spy = Path(sys.executable).with_name("py-spy")
            # Non-blocking: sampling without pausing the process keeps its timing close to normal.
            command = [str(spy), "record", "--format", "raw", "--rate", "100", "--threads", "--nonblocking",
                       "-o", str(self.profile_to), "--", *command]
        self.starts += 1
        with open(self.log_path, "ab") as log:
            log.write(f"--- start {self.starts}\n".encode())
            log.flush()
            began = time.monotonic()
            self.proc = subprocess.Popen(command, cwd=self.cwd or self.checkout, env=env, stdout=log,
                                         stderr=subprocess.STDOUT)
        if not wait:
            return 0.0
        self.wait_ready()
        return time.monotonic() - began

    def current_log(self) -> str:
        """The log of the latest start."""
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return text.rsplit(f"--- start {self.starts}\n", 1)[-1]

    def ready(self) -> bool:
        return READY.search(self.current_log()) is not None

    def check_alive(self) -> None:
        """Raise if the process has exited, with the end of its log."""
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"{self.process_id} exited with {self.proc.returncode}; log:\n"
                               f"{self.current_log()[-3000:]}")

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while not self.ready():
            self.check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.process_id} was not ready in {timeout:.0f} s; log:\n"
                                   f"{self.current_log()[-3000:]}")
            time.sleep(0.05)

    def restored(self) -> tuple[int, float]:
        """History records restored at the latest start, and the seconds the longest restore took."""
        found = RESTORED.findall(self.current_log())
        return sum(int(n) for n, _ in found), max((float(s) for _, s in found), default=0.0)

    def assigned(self, topic_suffix: str = ".inbox") -> set[int]:
        """Partitions of the topic this process holds now, from its INFO log."""
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

    @property
    def pid(self) -> int:
        """The runtime's process ID (under py-spy, the profiled child's)."""
        if self.proc is None:
            raise RuntimeError(f"{self.process_id} was not started")
        if self.profile_to is not None:
            return _child_pid(self.proc.pid) or self.proc.pid
        return self.proc.pid

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, open transactions stay open."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.pid, signal.SIGKILL)
            self.proc.wait(30)

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM (SIGINT to py-spy, which then writes its profile) and wait; SIGKILL if it hangs."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT if self.profile_to is not None else signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


def _child_pid(pid: int) -> int | None:
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return None
    return int(children[0]) if children else None
