"""``failover``: two runtimes, instances waiting for an event; one runtime SIGKILLed for good.

Both runtimes (``kwf run``, the same configuration, each its own process ID and state
folder) share the partitions. ``--history`` chain3 instances complete first, so the
partitions have history behind them; then ``--waiting`` instances start and wait for the
``go`` event. One runtime is SIGKILLed and ``go`` raised to every waiting instance at once.

* ``seconds``: from the kill until the last waiting instance's COMPLETED status is read.
  Instances on the survivor's partitions complete at once; those on the killed runtime's
  partitions wait for the group to move them (the dead member's session timeout), for the
  survivor to fence the dead producer and restore the partitions' state.

    python -m bench.failover [--history 2000] [--waiting 200]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from dataclasses import replace

from bench.common import RuntimeProcess, StatusWatcher, broker, delete_topics, fresh_settings, note
from engine.api.client import WorkflowClient
from engine.state.topics import ensure_workflow_topics

WORKLOAD = "failover"
# A run that takes this long is broken, not slow.
TIMEOUT_S = 300.0
# Both members hold their partitions and the rebalances after the second join are over.
SETTLE_S = 5.0


def run(bootstrap: str, *, history: int = 2000, waiting: int = 200) -> dict[str, float]:
    settings = fresh_settings(bootstrap, WORKLOAD)
    ensure_workflow_topics(settings)
    first = RuntimeProcess(replace(settings, process_id=f"{settings.process_id}-a",
                                   state_dir=settings.state_dir / "a"))
    second = RuntimeProcess(replace(settings, process_id=f"{settings.process_id}-b",
                                    state_dir=settings.state_dir / "b"))
    client = WorkflowClient(settings=settings)
    try:
        with StatusWatcher(settings) as watcher:
            first.start()
            second.start()
            time.sleep(SETTLE_S)
            done = client.schedule_new_workflows("chain3", [(f"h-{i}", i) for i in range(history)])
            watcher.wait_ended(done, TIMEOUT_S, "history")
            parked = client.schedule_new_workflows("wait_for_go", [(f"w-{i}", i) for i in range(waiting)])
            watcher.wait(lambda: all(i in watcher.seen for i in parked), TIMEOUT_S)
            note(f"{waiting} instances waiting; killing one runtime")
            killed_at = time.perf_counter()
            second.kill()
            for instance_id in parked:
                client.raise_workflow_event(instance_id, "go", data=instance_id)
            last = watcher.wait_ended(parked, TIMEOUT_S, "after the kill")
            return {"history": history, "waiting": waiting, "seconds": round(last - killed_at, 2)}
    finally:
        client.close()
        first.stop()
        second.kill()
        delete_topics(settings)
        shutil.rmtree(settings.state_dir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.failover", description=__doc__.split("\n\n")[0])
    parser.add_argument("--history", type=int, default=2000)
    parser.add_argument("--waiting", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    with broker(warm_up_s=0) as bootstrap:
        for _ in range(args.repeats):
            print(json.dumps(run(bootstrap, history=args.history, waiting=args.waiting)), flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
