"""``start``: ``schedule_new_workflow`` one at a time through the public client.

Each call returns once the start is durable on the inbox (the client then answers for it
as PENDING until the runtime reports it), so its latency is what a caller of the client or
the HTTP API waits per start.

* ``p50_ms`` / ``p99_ms``: one ``schedule_new_workflow`` call, after a warm-up.
* ``starts_per_s``: sequential starts from one thread (each waits for the previous one).

    python -m bench.client_start [--count 300] [--warm-up 50] [--broker-warm-up 10]
"""

from __future__ import annotations

import argparse
import time
import uuid

from bench.common import broker, emit, fresh_settings, note, percentile, running_runtime
from engine.api.client import WorkflowClient

WORKLOAD = "start"
# The first calls pay for connections, the status view's first read and the runtime's caches.
WARM_UP_CALLS = 50


def start_latencies(client: WorkflowClient, count: int) -> tuple[list[float], float]:
    """Milliseconds of each of ``count`` sequential starts, and the starts per second overall."""
    ms = []
    began = time.perf_counter()
    for n in range(count):
        before = time.perf_counter()
        client.schedule_new_workflow("chain3", input=n, instance_id=f"s-{uuid.uuid4().hex[:12]}")
        ms.append((time.perf_counter() - before) * 1000)
    return ms, count / (time.perf_counter() - began)


def run(bootstrap: str, *, count: int = 300, warm_up_calls: int = WARM_UP_CALLS) -> None:
    settings = fresh_settings(bootstrap, WORKLOAD)
    with running_runtime(settings):
        client = WorkflowClient(settings=settings)
        start_latencies(client, warm_up_calls)
        ms, per_s = start_latencies(client, count)
        note(f"schedule_new_workflow x {count}: p50 {percentile(ms, 50):.1f} ms, p99 {percentile(ms, 99):.1f} ms, "
             f"{per_s:.0f} starts/s from one thread")
        emit(WORKLOAD, "kwf", "p50_ms", percentile(ms, 50), "ms")
        emit(WORKLOAD, "kwf", "p99_ms", percentile(ms, 99), "ms")
        emit(WORKLOAD, "kwf", "starts_per_s", per_s, "starts/s")
        client.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.client_start", description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--warm-up", type=int, default=WARM_UP_CALLS, help="starts before measuring, discarded")
    parser.add_argument("--broker-warm-up", type=float, default=10.0, help="longest broker warm-up in seconds")
    args = parser.parse_args()
    with broker(args.broker_warm_up) as bootstrap:
        run(bootstrap, count=args.count, warm_up_calls=args.warm_up)


if __name__ == "__main__":
    main()
