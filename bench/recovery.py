"""``recovery``: SIGKILL the runtime with instances in flight, restart it, time until all complete.

Each instance runs three trivial activities, then an activity (``hold``) that never returns
in the first process: at the kill every instance has eight history events and a task that
was taken but not finished. The runtime is then restarted as the same process (same process
ID and state folder) with ``hold`` released.

* ``seconds``: from the restart (the new process is spawned) until the last instance's
  COMPLETED status is read. Includes the Python start, fencing the dead producer, the
  consumer groups taking the dead member's partitions back, re-running the held tasks.
* ``restore_events_per_s``: the runtime is then stopped, its state folder deleted, and
  started again: history records restored from ``kwf.history`` divided by the restore's
  seconds (from the runtime's ``restored ...`` log lines).

    python -m bench.recovery [--count 5000]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
import uuid

from bench.apps import RELEASE_ENV
from bench.common import (
    StatusWatcher,
    bench_runtime,
    broker,
    delete_topics,
    emit,
    fresh_settings,
    note,
    progress_bar,
)
from engine.api.client import WorkflowClient
from engine.state.topics import ensure_workflow_topics

WORKLOAD = "recovery"
COUNT = 5000
# Held instances have their three steps and the held task: eight history events.
HELD_HISTORY_LENGTH = 8
# A run that takes this long is broken, not slow.
TIMEOUT_S = 300.0


def run(bootstrap: str, *, count: int = COUNT, keep_log: bool = False) -> None:
    settings = fresh_settings(bootstrap, WORKLOAD)
    ensure_workflow_topics(settings)
    runtime = bench_runtime(settings)
    try:
        note(f"recovery: runtime ready in {runtime.start():.1f} s")
        with StatusWatcher(settings) as watcher:
            client = WorkflowClient(settings=settings)
            ids = [f"r-{uuid.uuid4().hex[:12]}" for _ in range(count)]
            client.schedule_new_workflows("chain3_then_hold", ((i, 0) for i in ids))

            def held() -> int:
                return sum(1 for i in ids if (s := watcher.seen.get(i)) and s.history_length >= HELD_HISTORY_LENGTH)

            with progress_bar() as bar:
                task = bar.add_task(f"recovery: {count} instances to the held task", total=count)
                watcher.wait(lambda: held() == count, TIMEOUT_S, lambda: bar.update(task, completed=held()))
            time.sleep(0.5)  # let the worker take the last held tasks
            runtime.kill()
            note(f"recovery: killed the runtime with {count} instances in flight")
            began = time.perf_counter()
            ready = runtime.start(wait=False, **{RELEASE_ENV: "1"})
            runtime.wait_ready()
            ready = time.perf_counter() - began
            last = watcher.wait_ended(ids, TIMEOUT_S, "recovery: instances completing")
            seconds = last - began
            note(f"recovery: ready {ready:.1f} s after the restart, all complete after {seconds:.1f} s")
            emit(WORKLOAD, "kwf", "seconds", seconds, "s")
            client.close()
            if keep_log:
                print(runtime.current_log(), file=sys.stderr)
        runtime.stop()
        shutil.rmtree(runtime.state_dir, ignore_errors=True)
        runtime.start(**{RELEASE_ENV: "1"})
        records, restore_s = runtime.restored()
        note(f"recovery: restored {records} history records in {restore_s:.2f} s from an empty state folder")
        emit(WORKLOAD, "kwf", "restore_events_per_s", records / restore_s if restore_s else 0.0, "events/s")
    finally:
        runtime.stop()
        delete_topics(settings)
        shutil.rmtree(settings.state_dir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.recovery", description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=COUNT)
    parser.add_argument("--log", action="store_true", help="print the restarted runtime's log on stderr")
    args = parser.parse_args()
    with broker() as bootstrap:
        run(bootstrap, count=args.count, keep_log=args.log)


if __name__ == "__main__":
    main()
