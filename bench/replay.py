"""Executor time for a fan-out of N activities, results fed one step at a time through the cache.

Prints ``{"workload": "replay-fanout-<N>", "system": "kwf", "metric": "seconds", "value": ..., "unit": "s"}``
per size on stdout. No activity code and no I/O run: this measures the replay engine alone,
including wrapping each step's actions in HistoryEvents the way the orchestrator does.
"""

from __future__ import annotations

import gc
import json
import sys
import time
from datetime import UTC, datetime

import engine as wf
from engine.core.history import Event, ExecutionStarted, HistoryEvent, TaskCompleted, WorkflowStatus
from engine.replay.executor import ExecutionResult, Executor
from engine.replay.registry import Registry

SIZES = (1_000, 10_000)
REPEATS = 3  # report the median: one run is at the mercy of the garbage collector and the CPU governor
START = datetime(2024, 1, 1, tzinfo=UTC)


def fan_out(ctx: wf.WorkflowContext, n: int):
    results = yield wf.when_all([ctx.call_activity("work", input=i) for i in range(n)])
    return sum(results)


def _registry() -> Registry:
    reg = Registry()
    reg.register_workflow(fan_out)
    reg.register_activity(lambda ctx, i: i, name="work")
    return reg


def run_fan_out(n: int, *, cache_size: int = 10_000) -> float:
    """Seconds to drive one fan-out of ``n`` from start to completion, one result per step."""
    executor = Executor(_registry(), cache_size=cache_size)
    history: list[HistoryEvent] = []
    gc.collect()  # start each run without garbage left by the previous one

    def step(body: Event) -> ExecutionResult:
        event = HistoryEvent("bench", "exec-1", len(history), START, body)
        result = executor.execute("bench", history, [event])
        history.append(event)
        for action in result.actions:
            history.append(HistoryEvent("bench", "exec-1", len(history), START, action))
        return result

    began = time.perf_counter()
    step(ExecutionStarted("fan_out", str(n)))
    for task_id in range(n):
        result = step(TaskCompleted(task_id, str(task_id)))
    elapsed = time.perf_counter() - began
    if result.status is not WorkflowStatus.COMPLETED or result.output != str(n * (n - 1) // 2):
        raise RuntimeError(f"fan-out of {n} ended {result.status} with {result.output!r}")
    return elapsed


def main() -> None:
    """Run every size and print one JSON line each."""
    timings = {}
    run_fan_out(SIZES[0])  # warm up imports and caches outside the measurement
    for n in SIZES:
        runs = sorted(run_fan_out(n) for _ in range(REPEATS))
        timings[n] = runs[len(runs) // 2]
        print(f"replay-fanout-{n}: {timings[n]:.3f} s (runs: {', '.join(f'{r:.3f}' for r in runs)})", file=sys.stderr)
        record = {"workload": f"replay-fanout-{n}", "system": "kwf", "metric": "seconds", "value": timings[n]}
        print(json.dumps({**record, "unit": "s"}), flush=True)
    ratio = timings[SIZES[-1]] / timings[SIZES[0]]
    print(f"{SIZES[-1]} / {SIZES[0]} time ratio: {ratio:.1f} (linear is {SIZES[-1] / SIZES[0]:.0f})", file=sys.stderr)


if __name__ == "__main__":
    main()
