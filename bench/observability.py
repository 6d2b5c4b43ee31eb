"""``observability``: what metrics and tracing cost, as chain3 throughput in one run.

The same chain3 throughput measurement (``bench.chain.throughput``) on three fresh runtime
subprocesses: metrics off (``KWF_METRICS=off``), metrics on (the default), and metrics with
tracing at 100% sampling exported over OTLP/HTTP to a sink in this process that answers
every export with 200. The rounds alternate between the three, so a drift of the machine
or the broker over the run falls on all of them alike. Reported: each throughput, and the
slowdown of the two others against metrics off, in percent; and the runtime process's CPU
time per workflow (user + system, from ``/proc``) with its overhead against metrics off,
which other work on a shared machine disturbs far less than it disturbs throughput.

    python -m bench.observability [--count 2000] [--repeats 1]
"""

from __future__ import annotations

import argparse
import threading
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from bench.chain import LATENCY_TIMEOUT_S, throughput
from bench.common import StatusWatcher, broker, cpu_seconds, emit, fresh_settings, median, note, running_runtime
from engine.api.client import WorkflowClient

WORKLOAD = "chain3"
# Warm-up instances per runtime before its first measured round: the first instances pay
# for imports, connections and caches.
WARM_UP = 200


class _Sink(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 (the http.server name)
        self.rfile.read(int(self.headers.get("content-length") or 0))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *_: object) -> None:
        pass


@contextmanager
def otlp_sink() -> Iterator[str]:
    """An OTLP/HTTP endpoint that takes every export and keeps nothing; yields its URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    thread = threading.Thread(target=server.serve_forever, name="otlp-sink", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def tracing_available() -> bool:
    try:
        import opentelemetry.exporter.otlp.proto.http.trace_exporter  # noqa: F401
        import opentelemetry.sdk.trace  # noqa: F401
    except ImportError:
        return False
    return True


def run(bootstrap: str, *, count: int = 2000, repeats: int = 1) -> None:
    with ExitStack() as stack:
        variants: dict[str, dict[str, str]] = {"metrics off": {"KWF_METRICS": "off"}, "metrics on": {}}
        if tracing_available():
            endpoint = stack.enter_context(otlp_sink())
            variants["metrics and tracing"] = {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
                                               "OTEL_TRACES_SAMPLER": "always_on"}
        else:
            note("tracing cost not measured: install the otel extra (pip install -e '.[otel]')")
        clients: dict[str, tuple[WorkflowClient, StatusWatcher, int]] = {}
        for label, env in variants.items():
            settings = fresh_settings(bootstrap, f"obs-{label.replace(' ', '-')}")
            runtime = stack.enter_context(running_runtime(settings, env=env))
            watcher = stack.enter_context(StatusWatcher(settings))
            client = WorkflowClient(settings=settings)
            stack.callback(client.close)
            warm = [f"w-{uuid.uuid4().hex[:12]}" for _ in range(WARM_UP)]
            client.schedule_new_workflows("chain3", ((i, 0) for i in warm))
            watcher.wait_ended(warm, LATENCY_TIMEOUT_S, f"warm-up ({label})")
            clients[label] = (client, watcher, runtime.pid)
        rates: dict[str, list[float]] = {label: [] for label in variants}
        cpu_ms: dict[str, list[float]] = {label: [] for label in variants}
        for round_ in range(repeats):
            for label, (client, watcher, pid) in clients.items():
                cpu_before = cpu_seconds(pid)
                rates[label].append(throughput(client, watcher, count))
                cpu_ms[label].append((cpu_seconds(pid) - cpu_before) * 1000 / count)
                note(f"chain3 x {count} with {label}, round {round_ + 1}: {rates[label][-1]:.0f} wf/s, "
                     f"{cpu_ms[label][-1]:.2f} ms of runtime CPU per workflow")
        base = median(rates["metrics off"])
        base_cpu = median(cpu_ms["metrics off"])
        for label, measured in rates.items():
            emit(WORKLOAD, f"kwf, {label}", "wf_per_s", median(measured), "wf/s")
            emit(WORKLOAD, f"kwf, {label}", "cpu_ms_per_wf", median(cpu_ms[label]), "ms")
            if label != "metrics off":
                emit(WORKLOAD, f"kwf, {label}", "slowdown_vs_metrics_off", 100 * (1 - median(measured) / base), "%")
                emit(WORKLOAD, f"kwf, {label}", "cpu_overhead_vs_metrics_off",
                     100 * (median(cpu_ms[label]) / base_cpu - 1), "%")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.observability", description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    with broker() as bootstrap:
        run(bootstrap, count=args.count, repeats=args.repeats)


if __name__ == "__main__":
    main()
