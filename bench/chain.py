"""``chain3``: workflows of three trivial activities on one runtime process.

* ``wf_per_s``: ``count`` instances started at once (the client's bulk start), divided by
  the time from the first start until the last one's COMPLETED status was read.
* ``p50_ms`` / ``p99_ms``: start-to-completion at a light steady load (``rate`` starts per
  second for ``seconds``), timed by the client: from just before the start is produced to
  the moment a ``kwf.status`` consumer in the benchmark process reads the COMPLETED record.

    python -m bench.chain [--count 2000] [--rate 20] [--seconds 12] [--profile FILE]
"""

from __future__ import annotations

import argparse
import time
import uuid
from pathlib import Path

from bench.common import (
    StatusWatcher,
    broker,
    emit,
    fresh_settings,
    median,
    note,
    percentile,
    progress_bar,
    running_runtime,
)
from engine.api.client import WorkflowClient

WORKLOAD = "chain3"
# Generous bounds: a run that takes this long is broken, not slow.
THROUGHPUT_TIMEOUT_S = 300.0
LATENCY_TIMEOUT_S = 60.0
# Light load before any measurement, discarded.
WARM_UP_S = 4.0


def throughput(client: WorkflowClient, watcher: StatusWatcher, count: int, workflow: str = WORKLOAD) -> float:
    """Instances per second for ``count`` chains started at once."""
    ids = [f"c-{uuid.uuid4().hex[:12]}" for _ in range(count)]
    began = time.perf_counter()
    client.schedule_new_workflows(workflow, ((i, n) for n, i in enumerate(ids)))
    last = watcher.wait_ended(ids, THROUGHPUT_TIMEOUT_S, f"{workflow} x {count}")
    return count / (last - began)


def latencies(client: WorkflowClient, watcher: StatusWatcher, rate: float, seconds: float,
              report: bool = True, workflow: str = WORKLOAD) -> list[float]:
    """Start-to-completion milliseconds of chains started at ``rate`` per second."""
    count = max(1, int(rate * seconds))
    sent: dict[str, float] = {}
    began = time.perf_counter()
    with progress_bar() as bar:
        task = bar.add_task(f"{workflow} at {rate:g}/s{'' if report else ' (warm-up)'}", total=count)
        for n in range(count):
            due = began + n / rate
            pause = due - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            instance_id = f"l-{uuid.uuid4().hex[:12]}"
            sent[instance_id] = time.perf_counter()
            client.schedule_new_workflows(workflow, [(instance_id, n)])
            bar.update(task, completed=n + 1)
    watcher.wait_ended(sent, LATENCY_TIMEOUT_S, f"{workflow} light load: last completions")
    client_ms = [(watcher.seen[i].ended_at - t) * 1000 for i, t in sent.items()]  # type: ignore[operator]
    server_ms = [watcher.seen[i].server_ms or 0.0 for i in sent]
    if not report:
        return client_ms
    note(f"{workflow} light load: client-side p50 {percentile(client_ms, 50):.1f} ms "
         f"p99 {percentile(client_ms, 99):.1f} ms; runtime-side (status last_updated_at - created_at) "
         f"p50 {percentile(server_ms, 50):.1f} ms "
         f"p99 {percentile(server_ms, 99):.1f} ms")
    return client_ms


def run(bootstrap: str, *, count: int = 2000, rate: float = 20.0, seconds: float = 12.0, repeats: int = 1,
        profile_to: Path | None = None) -> None:
    settings = fresh_settings(bootstrap, WORKLOAD)
    with running_runtime(settings, profile_to) as _runtime, StatusWatcher(settings) as watcher:
        client = WorkflowClient(settings=settings)
        # Warm up: the first instances pay for the imports, connections, threads and caches of
        # every hop, and the first seconds of a new runtime on new topics are several times
        # slower than the steady state measured here.
        warm = [f"w-{uuid.uuid4().hex[:12]}" for _ in range(50)]
        client.schedule_new_workflows("chain3", ((i, 0) for i in warm))
        watcher.wait_ended(warm, LATENCY_TIMEOUT_S, "warm-up")
        latencies(client, watcher, rate, WARM_UP_S, report=False)
        rates = []
        for round_ in range(repeats):
            rates.append(throughput(client, watcher, count))
            note(f"chain3 x {count} round {round_ + 1}: {rates[-1]:.0f} wf/s")
        emit(WORKLOAD, "kwf", "wf_per_s", median(rates), "wf/s")
        ms = latencies(client, watcher, rate, seconds)
        emit(WORKLOAD, "kwf", "p50_ms", percentile(ms, 50), "ms")
        emit(WORKLOAD, "kwf", "p99_ms", percentile(ms, 99), "ms")
        client.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.chain", description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--seconds", type=float, default=12.0)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--profile", type=Path, default=None, help="py-spy samples of the runtime (collapsed stacks)")
    args = parser.parse_args()
    with broker() as bootstrap:
        run(bootstrap, count=args.count, rate=args.rate, seconds=args.seconds, repeats=args.repeats,
            profile_to=args.profile)


if __name__ == "__main__":
    main()
