"""Two ``kwf run`` processes, an orchestrator and a worker, export their spans over OTLP/HTTP
(configured by the standard ``OTEL_*`` variables) to a receiver in the test: one trace, the
test's own, holds the workflow span of one process and the activity span of the other.
"""

from __future__ import annotations

import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from engine import WorkflowClient, WorkflowStatus
from engine.state.config import Settings
from engine.testing import runtime_env

APP = "tests.integration.engine.apps:runtime"
READY_TIMEOUT_S = 90.0
# The SDK's batch processor exports every 5 s by default; the test asks for 200 ms.
EXPORT_TIMEOUT_S = 30.0


class Receiver:
    """An OTLP/HTTP trace receiver: keeps each span as (service, trace ID, span ID, parent ID, name)."""

    def __init__(self) -> None:
        self.spans: list[tuple[str, str, str, str, str]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (the http.server name)
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                receiver.take(request)
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *_: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def take(self, request: ExportTraceServiceRequest) -> None:
        with self.lock:
            for resource_spans in request.resource_spans:
                service = next((a.value.string_value for a in resource_spans.resource.attributes
                                if a.key == "service.name"), "")
                for scope in resource_spans.scope_spans:
                    for span in scope.spans:
                        self.spans.append((service, span.trace_id.hex(), span.span_id.hex(),
                                           span.parent_span_id.hex(), span.name))


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    thread = threading.Thread(target=found.server.serve_forever, daemon=True)
    thread.start()
    yield found
    found.server.shutdown()


def wait_for(condition: Callable[[], bool], timeout: float, what: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(what())
        time.sleep(0.1)


def test_an_orchestrator_and_a_worker_export_one_trace_over_otlp(
        settings: Settings, client: WorkflowClient, receiver: Receiver, tmp_path: Path,
        processes: Callable[..., subprocess.Popen[bytes]]) -> None:
    kwf_run = [sys.executable, "-m", "engine.cli", "--log-level", "INFO", "run", "--app", APP, "--no-http"]
    for role in ("orchestrator", "worker"):
        processes(role, [*kwf_run, "--role", role], runtime_env(
            settings, KWF_STATE_DIR=str(tmp_path / f"state-{role}"), KWF_PROCESS_ID=role,
            OTEL_EXPORTER_OTLP_ENDPOINT=receiver.url, OTEL_SERVICE_NAME=f"kwf-{role}", OTEL_BSP_SCHEDULE_DELAY="200"))
    logs = {role: tmp_path / f"{role}.log" for role in ("orchestrator", "worker")}
    for role, log in logs.items():
        wait_for(lambda log=log: "runtime ready" in log.read_text(errors="replace"), READY_TIMEOUT_S,
                 lambda log=log, role=role: f"{role} not ready:\n{log.read_text(errors='replace')[-3000:]}")

    trace_id, caller_span = secrets.token_hex(16), secrets.token_hex(8)
    instance_id = client.schedule_new_workflow("timer_then_activity", input=0.2,
                                               traceparent=f"00-{trace_id}-{caller_span}-01")
    state = client.wait_for_workflow_completion(instance_id, timeout_in_seconds=60)
    assert state is not None and state.runtime_status is WorkflowStatus.COMPLETED, state

    def ours() -> list[tuple[str, str, str, str, str]]:
        with receiver.lock:
            return [s for s in receiver.spans if s[1] == trace_id]

    names = {"workflow timer_then_activity", "activity echo", "timer"}
    wait_for(lambda: names <= {s[4] for s in ours()}, EXPORT_TIMEOUT_S,
             lambda: f"received {receiver.spans[-20:]}; logs:\n{logs['orchestrator'].read_text()[-2000:]}")
    by_name = {s[4]: s for s in ours()}
    workflow, activity, timer = (by_name[n] for n in ("workflow timer_then_activity", "activity echo", "timer"))
    assert workflow[0] == timer[0] == "kwf-orchestrator" and activity[0] == "kwf-worker"
    assert workflow[3] == caller_span
    assert activity[3] == timer[3] == workflow[2]
