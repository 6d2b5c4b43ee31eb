"""``chain3_client``: chain3 through the public client, local activities off and on, in one run.

Each call is what a user writes: ``schedule_new_workflow`` then
``wait_for_workflow_completion``, timed from before the start to the return of the wait.
Both modes run against the same broker, one after the other, each on a runtime of its own
(``KWF_LOCAL_ACTIVITY_BUDGET_MS=0`` turns local activities off):

* ``p50_ms`` / ``p99_ms``: one chain at a time from one thread, after a warm-up.
* ``wf_per_s_N_callers``: chains completed per second by ``callers`` threads, each doing
  the same one call after another for ``seconds``.
* ``bulk_wf_per_s``: ``bulk`` chains started at once through the bulk start, as
  ``bench.chain`` measures it, to see what local activities do to a full orchestrator.

    python -m bench.chain_client [--count 300] [--callers 32] [--seconds 10] [--bulk 2000] [--broker-warm-up 10]
"""

from __future__ import annotations

import argparse
import threading
import time
import uuid
from pathlib import Path

from bench.chain import throughput
from bench.common import StatusWatcher, broker, emit, fresh_settings, note, percentile, running_runtime
from engine.api.client import WorkflowClient
from engine.core.history import WorkflowStatus

WORKLOAD = "chain3_client"
# The first calls pay for connections, the status view's first read and the runtime's caches.
WARM_UP_CALLS = 50
# A chain that takes this long is broken, not slow.
CALL_TIMEOUT_S = 60.0
# Local activities off, then on at the default budget (the runtime's own default applies).
MODES = (("kwf, local activities off", {"KWF_LOCAL_ACTIVITY_BUDGET_MS": "0"}), ("kwf", {}))


def one_chain(client: WorkflowClient, value: int) -> float:
    """Milliseconds from before the start to the COMPLETED answer of one chain3."""
    began = time.perf_counter()
    instance_id = client.schedule_new_workflow("chain3", input=value, instance_id=f"cc-{uuid.uuid4().hex[:12]}")
    state = client.wait_for_workflow_completion(instance_id, timeout_in_seconds=CALL_TIMEOUT_S)
    elapsed = (time.perf_counter() - began) * 1000
    if state is None or state.runtime_status is not WorkflowStatus.COMPLETED:
        raise RuntimeError(f"chain3 {instance_id} ended as {state}")
    return elapsed


def sequential(client: WorkflowClient, count: int) -> list[float]:
    return [one_chain(client, n) for n in range(count)]


def concurrent(client: WorkflowClient, callers: int, seconds: float) -> float:
    """Chains per second completed by ``callers`` threads sharing one client."""
    done = [0] * callers
    errors: list[BaseException] = []
    until = time.perf_counter() + seconds

    def caller(slot: int) -> None:
        try:
            while time.perf_counter() < until:
                one_chain(client, slot)
                done[slot] += 1
        except BaseException as err:  # reported after the run
            errors.append(err)

    threads = [threading.Thread(target=caller, args=(n,)) for n in range(callers)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return sum(done) / (time.perf_counter() - began)


def run(bootstrap: str, *, count: int = 300, callers: int = 32, seconds: float = 10.0, bulk: int = 2000,
        profile_to: Path | None = None) -> None:
    for system, env in MODES:
        settings = fresh_settings(bootstrap, WORKLOAD)
        with running_runtime(settings, profile_to if system == "kwf" else None, env), \
                StatusWatcher(settings) as watcher:
            client = WorkflowClient(settings=settings)
            sequential(client, WARM_UP_CALLS)
            ms = sequential(client, count)
            per_s = concurrent(client, callers, seconds)
            bulk_per_s = throughput(client, watcher, bulk) if bulk else 0.0
            note(f"{system}: chain3 one at a time x {count}: p50 {percentile(ms, 50):.1f} ms, "
                 f"p99 {percentile(ms, 99):.1f} ms; {callers} callers: {per_s:.0f} wf/s; "
                 f"{bulk} at once: {bulk_per_s:.0f} wf/s")
            emit(WORKLOAD, system, "p50_ms", percentile(ms, 50), "ms")
            emit(WORKLOAD, system, "p99_ms", percentile(ms, 99), "ms")
            emit(WORKLOAD, system, f"wf_per_s_{callers}_callers", per_s, "wf/s")
            if bulk:
                emit(WORKLOAD, system, "bulk_wf_per_s", bulk_per_s, "wf/s")
            client.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.chain_client", description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--callers", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--bulk", type=int, default=2000, help="chains started at once (0: skip)")
    parser.add_argument("--broker-warm-up", type=float, default=10.0, help="longest broker warm-up in seconds")
    parser.add_argument("--profile", type=Path, default=None,
                        help="py-spy samples of the runtime with local activities on (collapsed stacks)")
    args = parser.parse_args()
    with broker(args.broker_warm_up) as bootstrap:
        run(bootstrap, count=args.count, callers=args.callers, seconds=args.seconds, bulk=args.bulk,
            profile_to=args.profile)


if __name__ == "__main__":
    main()
