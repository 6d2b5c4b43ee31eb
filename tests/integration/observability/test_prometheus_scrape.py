"""A real Prometheus server scrapes two ``kwf run`` processes and sees the workflows a test ran.

The orchestrator process serves ``/metrics`` on its HTTP API port; the worker process runs
with ``--no-http --metrics-port``. Prometheus is Debian's package (``.ci/install-prometheus``,
called by ``make test-integration``); the test skips where it is not installed.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from engine import WorkflowClient, WorkflowStatus
from engine.state.config import Settings
from engine.testing import runtime_env

APP = "tests.integration.engine.apps:runtime"
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
# A cold runtime joins its groups in a few seconds; a busy 2-core machine doubles it.
READY_TIMEOUT_S = 90.0
# Prometheus scrapes every second here; a sample shows up in queries within a few scrapes.
QUERY_TIMEOUT_S = 60.0
WORKFLOWS = 5


@pytest.fixture(scope="module")
def prometheus_binary() -> str:
    if not Path(PROMETHEUS).exists():
        pytest.skip("Prometheus is not installed (Debian's `prometheus` package: run `bash .ci/install-prometheus` "
                    "as root, as `make test-integration` does)")
    return PROMETHEUS


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_get(url: str, timeout: float = 5.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (a local test URL)
        return bytes(response.read())


def wait_for(condition: Callable[[], object], timeout: float, what: Callable[[], str] | str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if condition():
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(what() if callable(what) else what)
        time.sleep(0.2)


def log_of(tmp_path: Path, name: str) -> str:
    path = tmp_path / f"{name}.log"
    return path.read_text(errors="replace")[-3000:] if path.exists() else ""


def query(prometheus_url: str, promql: str) -> float | None:
    answer = json.loads(http_get(f"{prometheus_url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"))
    result = answer["data"]["result"]
    return float(result[0]["value"][1]) if result else None


def test_prometheus_scrapes_kwf_run_and_sees_the_workflows_completed(
        prometheus_binary: str, settings: Settings, client: WorkflowClient, tmp_path: Path,
        processes: Callable[..., subprocess.Popen[bytes]]) -> None:
    http_port, metrics_port, prometheus_port = free_port(), free_port(), free_port()
    kwf_run = [sys.executable, "-m", "engine.cli", "--log-level", "INFO", "run", "--app", APP]
    processes("orchestrator", [*kwf_run, "--role", "orchestrator", "--http-port", str(http_port)],
              runtime_env(settings, KWF_STATE_DIR=str(tmp_path / "state-o"), KWF_PROCESS_ID="o"))
    processes("worker", [*kwf_run, "--role", "worker", "--no-http", "--metrics-port", str(metrics_port)],
              runtime_env(settings, KWF_STATE_DIR=str(tmp_path / "state-w"), KWF_PROCESS_ID="w"))
    for name in ("orchestrator", "worker"):
        wait_for(lambda n=name: "runtime ready" in log_of(tmp_path, n), READY_TIMEOUT_S,
                 lambda n=name: f"{n} not ready:\n{log_of(tmp_path, n)}")

    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
        "scrape_configs:\n  - job_name: kwf\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{http_port}', '127.0.0.1:{metrics_port}']\n")
    processes("prometheus", [prometheus_binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                             f"--web.listen-address=127.0.0.1:{prometheus_port}"])
    prometheus_url = f"http://127.0.0.1:{prometheus_port}"
    wait_for(lambda: http_get(f"{prometheus_url}/-/ready"), 60, lambda: log_of(tmp_path, "prometheus"))

    ids = client.schedule_new_workflows("timer_then_activity", ((f"m-{i}", 0.2) for i in range(WORKFLOWS)))
    for instance_id in ids:
        state = client.wait_for_workflow_completion(instance_id, timeout_in_seconds=60)
        assert state is not None and state.runtime_status is WorkflowStatus.COMPLETED, state

    completed = 'sum(kwf_workflow_completions_total{workflow="timer_then_activity",status="COMPLETED"})'
    ran = 'sum(kwf_activity_executions_total{activity="echo",outcome="success"})'
    wait_for(lambda: query(prometheus_url, completed) == WORKFLOWS and query(prometheus_url, ran) == WORKFLOWS,
             QUERY_TIMEOUT_S, lambda: f"Prometheus sees {query(prometheus_url, completed)} completions and "
             f"{query(prometheus_url, ran)} activity runs, want {WORKFLOWS}; targets: "
             f"{http_get(prometheus_url + '/api/v1/targets').decode()[:2000]}")
    # Both processes were scraped, and the processors' own metrics came along.
    assert query(prometheus_url, 'count(up{job="kwf"} == 1)') == 2
    assert (query(prometheus_url, "sum(streams_transactions_total)") or 0) > 0
    assert query(prometheus_url, 'sum(kwf_workflow_starts_total{workflow="timer_then_activity"})') == WORKFLOWS
    assert query(prometheus_url, "sum(kwf_timers_fired_total)") == WORKFLOWS
