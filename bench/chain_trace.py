"""``chain_trace``: where one chain3's time goes, from the history's timestamps.

Runs chain3 through the public client (``schedule_new_workflow`` then
``wait_for_workflow_completion``) against one ``kwf run``, with ``callers`` threads, and
splits each chain by the wall-clock times it leaves behind: the client's call, the
orchestrator's steps (every accepted event carries its step's time) and the client seeing
the end. Segments (medians over the chains, ms):

* ``to_start_step``: the call began -> the step that started it (client produce, inbox fetch).
* ``to_result_step``: that step -> the step that received a result from outside the step
  (its commit, the task's trip to a worker, the run, the result's trip to the inbox).
* ``local``: that step -> the last event of the execution (0 when the chain ends in that
  step: its events carry the step's time, so local activities' time counts in ``to_client``).
* ``to_client``: the last event -> the client's wait returned (the commit, the status
  view's read, the waiting thread's wake-up).

Prints JSON lines (``bench.common.emit``) and a summary on stderr.

    python -m bench.chain_trace [--count 100] [--callers 1] [--local-off] [--profile FILE]

``--profile FILE`` runs the runtime under py-spy (collapsed stacks into FILE, for
``python -m bench.profile FILE``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import time
import uuid
from pathlib import Path

from bench.common import broker, emit, fresh_settings, note, running_runtime
from engine.api.client import WorkflowClient
from engine.api.history_reader import read_history
from engine.core.history import ExecutionStarted, TaskCompleted

WORKLOAD = "chain3_trace"
# The first calls pay for connections, the status view's first read and the runtime's caches.
WARM_UP_CALLS = 30


def traced_chain(client: WorkflowClient) -> tuple[str, float, float]:
    began = time.time()
    instance_id = client.schedule_new_workflow("chain3", input=1, instance_id=f"ct-{uuid.uuid4().hex[:12]}")
    client.wait_for_workflow_completion(instance_id, timeout_in_seconds=60)
    return instance_id, began, time.time()


def segments(client: WorkflowClient, traced: list[tuple[str, float, float]]) -> dict[str, list[float]]:
    found: dict[str, list[float]] = {"to_start_step": [], "to_result_step": [], "local": [], "to_client": [],
                                     "total": []}
    for instance_id, began, seen in traced:
        events = read_history(client.settings, instance_id)
        start = next(e for e in events if isinstance(e.event, ExecutionStarted)).timestamp.timestamp()
        first_result = next(e for e in events if isinstance(e.event, TaskCompleted)).timestamp.timestamp()
        last = events[-1].timestamp.timestamp()
        found["to_start_step"].append((start - began) * 1000)
        found["to_result_step"].append((first_result - start) * 1000)
        found["local"].append((last - first_result) * 1000)
        found["to_client"].append((seen - last) * 1000)
        found["total"].append((seen - began) * 1000)
    return found


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(bootstrap: str, count: int, callers: int, env: dict[str, str], profile_to: Path | None = None) -> None:
    settings = fresh_settings(bootstrap, "chain_trace")
    with running_runtime(settings, profile_to, env) as runtime, WorkflowClient(settings=settings) as client:
        for _ in range(WARM_UP_CALLS):
            traced_chain(client)
        traced: list[tuple[str, float, float]] = []
        lock = threading.Lock()
        left = iter(range(count))

        def caller() -> None:
            while True:
                with lock:
                    if next(left, None) is None:
                        return
                result = traced_chain(client)
                with lock:
                    traced.append(result)

        threads = [threading.Thread(target=caller) for _ in range(callers)]
        assert runtime.proc is not None
        runtime_cpu, client_cpu = cpu_s(runtime.proc.pid), time.process_time()
        began = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        rate = count / (time.perf_counter() - began)
        runtime_cpu, client_cpu = cpu_s(runtime.proc.pid) - runtime_cpu, time.process_time() - client_cpu
        found = segments(client, traced)
        medians = ", ".join(f"{name} {statistics.median(ms):.1f} ({sorted(ms)[int(len(ms) * 0.9)]:.1f})"
                            for name, ms in found.items())
        system = f"kwf, {callers} caller(s)"
        emit(WORKLOAD, system, "wf_per_s", rate, "wf/s")
        emit(WORKLOAD, system, "client_cpu_ms_per_chain", client_cpu / count * 1000, "ms")
        emit(WORKLOAD, system, "runtime_cpu_ms_per_chain", runtime_cpu / count * 1000, "ms")
        for name, ms in found.items():
            emit(WORKLOAD, system, f"{name}_p50_ms", statistics.median(ms), "ms")
        note(f"{callers} caller(s), {count} chains, {rate:.0f} wf/s; CPU per chain: client "
             f"{client_cpu / count * 1000:.2f} ms, runtime {runtime_cpu / count * 1000:.2f} ms; "
             f"medians (p90) in ms: {medians}")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.chain_trace", description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--callers", type=int, default=1)
    parser.add_argument("--local-off", action="store_true", help="KWF_LOCAL_ACTIVITY_BUDGET_MS=0")
    parser.add_argument("--broker-warm-up", type=float, default=3.0)
    parser.add_argument("--profile", type=Path, help="py-spy the runtime into this file (collapsed stacks)")
    args = parser.parse_args()
    with broker(args.broker_warm_up) as bootstrap:
        run(bootstrap, args.count, args.callers, {"KWF_LOCAL_ACTIVITY_BUDGET_MS": "0"} if args.local_off else {},
            args.profile)


if __name__ == "__main__":
    main()
