"""``scaleout``: chain3 throughput with 1, 2 and 3 ``kwf run`` processes, in one run.

Each layout runs on topics of its own: ``N`` runtime processes of the default role, and one
orchestrator-only process beside one worker-only process. Every process must hold its share
of the partitions before the measurement starts. Reported per layout: chain3 instances per
second (``count`` started at once through the client's bulk start, to the last COMPLETED
status), and the CPU time all its runtime processes used per workflow (user + system, from
``/proc``): on a machine with fewer cores than processes the throughput is bounded by the
cores, and the CPU per workflow is what says how far more machines would go.

Also per layout: the Kafka transactions its processes committed per workflow (their
``/metrics``) and the mean commit call, and, when the brokers run on this machine, the CPU
their processes used per workflow (``bench.broker_cpu``). Idle processes use CPU too
(librdkafka's fetches, the poll loops; a shared broker serves other work): the cores each
side uses idle (sampled before and after, the mean taken) times the measurement's length
is taken off as well (``cpu_ms_per_wf_beyond_idle``, ``broker_cpu_ms_per_wf``), the gross
figures reported beside them. On a starved machine the brokers' idle share is most of
their gross figure; the runtime's is small.

Run it on a replicated cluster (``kwf broker start --nodes 3`` and
``KWF_BOOTSTRAP_SERVERS`` naming it) to measure what issue 20 asks; any broker works.

    python -m bench.scaleout [--count 3000] [--processes 1,2,3]
"""

from __future__ import annotations

import argparse
import shutil
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from bench.broker_cpu import background_cores, broker_pids, total_cpu_seconds
from bench.chain import throughput
from bench.common import (
    StatusWatcher,
    bench_runtime,
    broker,
    delete_topics,
    emit,
    free_port,
    fresh_settings,
    note,
)
from engine.api.client import WorkflowClient
from engine.state.config import Settings
from engine.state.topics import ensure_workflow_topics
from engine.testing import RuntimeProcess

WORKLOAD = "scaleout"
COUNT = 3000
WARM_UP = 300
BALANCED_TIMEOUT_S = 60.0


@contextmanager
def runtimes(settings: Settings, roles: list[str]) -> Iterator[list[RuntimeProcess]]:
    """One ready runtime process per role, each with its own state folder, stopped afterwards."""
    ensure_workflow_topics(settings)
    started: list[RuntimeProcess] = []
    try:
        for n, role in enumerate(roles):
            # The HTTP API only for its /metrics: idle, it costs a thread that waits.
            process = bench_runtime(settings, http_port=free_port())
            process.process_id = f"{settings.process_id}-{n}"
            process.role = role
            process.start()
            started.append(process)
        wait_balanced(settings, [p for p in started if p.role != "worker"])
        yield started
    finally:
        for process in started:
            process.stop()
        delete_topics(settings)
        shutil.rmtree(settings.state_dir, ignore_errors=True)


def wait_balanced(settings: Settings, orchestrators: list[RuntimeProcess]) -> None:
    """Until every orchestrator holds some inbox partitions and together they hold all."""
    deadline = time.monotonic() + BALANCED_TIMEOUT_S
    while time.monotonic() < deadline:
        held = [p.assigned() for p in orchestrators]
        if all(held) and set().union(*held) == set(range(settings.partitions)):
            return
        time.sleep(0.5)
    raise TimeoutError(f"partitions not shared among {len(orchestrators)} processes within "
                       f"{BALANCED_TIMEOUT_S:.0f} s: {[sorted(p.assigned()) for p in orchestrators]}")


def transactions_in(metrics: str) -> tuple[float, float]:
    """Committed transactions and seconds of commit calls, summed over groups, in a ``/metrics`` text."""
    committed = commit_s = 0.0
    for line in metrics.splitlines():
        if line.startswith("streams_transactions_total{") and 'outcome="committed"' in line:
            committed += float(line.rsplit(" ", 1)[1])
        elif line.startswith("streams_transaction_commit_seconds_sum{"):
            commit_s += float(line.rsplit(" ", 1)[1])
    return committed, commit_s


def transactions(processes: list[RuntimeProcess]) -> tuple[float, float]:
    """Committed transactions of all ``processes`` so far, and the seconds their commit calls took."""
    committed = commit_s = 0.0
    for process in processes:
        process.check_alive()  # a runtime that exited says why (its log) rather than "connection refused"
        with urllib.request.urlopen(f"http://127.0.0.1:{process.http_port}/metrics", timeout=10) as answer:
            count, seconds = transactions_in(answer.read().decode())
        committed, commit_s = committed + count, commit_s + seconds
    return committed, commit_s


def measure(bootstrap: str, label: str, roles: list[str], count: int) -> None:
    settings = fresh_settings(bootstrap, f"{WORKLOAD}-{label}")
    brokers = broker_pids(bootstrap)
    with runtimes(settings, roles) as processes, StatusWatcher(settings) as watcher, \
            WorkflowClient(settings=settings) as client:
        warm = [f"w-{uuid.uuid4().hex[:12]}" for _ in range(WARM_UP)]
        client.schedule_new_workflows("chain3", ((i, 0) for i in warm))
        watcher.wait_ended(warm, 120, f"warm-up ({label})")
        runtime_pids = [p.pid for p in processes]
        idle_before = background_cores([runtime_pids, brokers])
        cpu_before = total_cpu_seconds(runtime_pids)
        broker_before = total_cpu_seconds(brokers)
        txn_before, commit_s_before = transactions(processes)
        began = time.perf_counter()
        per_s = throughput(client, watcher, count)
        elapsed = time.perf_counter() - began
        cpu_ms = (total_cpu_seconds(runtime_pids) - cpu_before) * 1000 / count
        broker_ms = (total_cpu_seconds(brokers) - broker_before) * 1000 / count
        txn_after, commit_s_after = transactions(processes)
        idle_after = background_cores([runtime_pids, brokers])
    idle, background = ((a + b) / 2 for a, b in zip(idle_before, idle_after, strict=True))
    net_cpu_ms = cpu_ms - idle * elapsed * 1000 / count
    txns = txn_after - txn_before
    commit_ms = 1000 * (commit_s_after - commit_s_before) / max(txns, 1)
    row = f"{WORKLOAD}-{label}"
    note(f"{label}: {per_s:.0f} wf/s, {cpu_ms:.2f} ms of runtime CPU per workflow ({net_cpu_ms:.2f} ms beyond the "
         f"{idle:.2f} cores it uses idle), {txns / count:.3f} transactions per workflow ({txns / elapsed:.1f}/s, "
         f"commit call {commit_ms:.1f} ms)")
    emit(row, "kwf", "wf_per_s", per_s, "wf/s")
    emit(row, "kwf", "cpu_ms_per_wf", cpu_ms, "ms")
    emit(row, "kwf", "cpu_ms_per_wf_beyond_idle", net_cpu_ms, "ms")
    emit(row, "kwf", "idle_cores", idle, "cores")
    emit(row, "kwf", "txn_per_wf", txns / count, "txn")
    emit(row, "kwf", "txn_per_s", txns / elapsed, "txn/s")
    emit(row, "kwf", "commit_ms", commit_ms, "ms")
    if brokers:
        net_ms = broker_ms - background * elapsed * 1000 / count
        note(f"{label}: {net_ms:.2f} ms of broker CPU per workflow ({broker_ms:.2f} ms gross, background "
             f"{background:.2f} cores, {len(brokers)} broker processes)")
        emit(row, "broker", "broker_cpu_ms_per_wf", net_ms, "ms")
        emit(row, "broker", "broker_cpu_ms_per_wf_gross", broker_ms, "ms")
        emit(row, "broker", "background_cores", background, "cores")


def run(bootstrap: str, *, count: int = COUNT, processes: tuple[int, ...] = (1, 2, 3)) -> None:
    for n in processes:
        measure(bootstrap, f"{n}x-all", ["all"] * n, count)
    measure(bootstrap, "orchestrator-and-worker", ["orchestrator", "worker"], count)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.scaleout", description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=COUNT)
    parser.add_argument("--processes", default="1,2,3", help="comma-separated process counts")
    parser.add_argument("--broker-warm-up", type=float, default=30.0, help="longest broker warm-up in seconds")
    args = parser.parse_args()
    with broker(args.broker_warm_up) as bootstrap:
        run(bootstrap, count=args.count, processes=tuple(int(n) for n in args.processes.split(",") if n.strip()))


if __name__ == "__main__":
    main()
