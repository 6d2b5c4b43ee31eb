"""``kwf broker start|status|stop`` on a free port with a home of its own (the jars shared, not fetched again)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from streams.broker import KAFKA_VERSION, broker_answers, free_port_pair, jars_dir

REPO = Path(__file__).resolve().parents[3]
# A cold broker start on a loaded 2-core machine, then the stop's own wait.
COMMAND_TIMEOUT_S = 240


def kwf_broker(home: Path, port: int, action: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "engine.cli", "broker", action, "--port", str(port), "--home", str(home)]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)


@pytest.mark.slow
@pytest.mark.timeout(COMMAND_TIMEOUT_S * 3)
def test_kwf_broker_starts_reports_and_stops_a_broker_in_its_own_home(tmp_path: Path) -> None:
    shared = jars_dir(REPO / ".kwf")
    if not (shared / ".complete").exists():
        pytest.skip("the broker jars are not resolved yet (make jars)")
    home = tmp_path / "home"
    (home / "jars").mkdir(parents=True)
    (home / "jars" / f"kafka-{KAFKA_VERSION}").symlink_to(shared, target_is_directory=True)
    port = free_port_pair()
    try:
        stopped = kwf_broker(home, port, "status")
        assert stopped.returncode == 1 and f"no broker answers on 127.0.0.1:{port}" in stopped.stdout, stopped

        started = kwf_broker(home, port, "start")
        assert started.returncode == 0, started.stderr
        assert started.stdout.strip() == f"127.0.0.1:{port}"
        assert broker_answers(f"127.0.0.1:{port}", timeout=10)
        assert any(home.rglob("meta.properties")), "the broker's data is not under its home"

        running = kwf_broker(home, port, "status")
        assert running.returncode == 0 and f"running on 127.0.0.1:{port} (pid " in running.stdout, running

        assert kwf_broker(home, port, "start").returncode == 0  # already running: still fine

        stop = kwf_broker(home, port, "stop")
        assert stop.returncode == 0 and stop.stdout.strip() == "stopped", stop
        assert not broker_answers(f"127.0.0.1:{port}", timeout=2)
        again = kwf_broker(home, port, "status")
        assert again.returncode == 1, again
        assert kwf_broker(home, port, "stop").stdout.strip() == "no broker was running"
    finally:
        kwf_broker(home, port, "stop")
