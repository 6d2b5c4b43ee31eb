"""``failover``: two runtimes, instances waiting for an event; one runtime SIGKILLed for good.

Both runtimes (``kwf run``, the same configuration, each its own process ID and state
folder) share the partitions. ``--history`` chain3 instances complete first, so the
partitions have history behind them; then ``--waiting`` instances start and wait for the
``go`` event. With ``--busy N``, N more chain3 instances start just before the kill, so
both runtimes are in the middle of transactions when one dies. One runtime is SIGKILLed
and ``go`` raised to every waiting instance at once.

* ``seconds``: from the kill until the last waiting instance's COMPLETED status is read.
  Instances on the survivor's partitions complete at once; those on the killed runtime's
  partitions wait for the group to move them (the dead member's session timeout), for the
  survivor to fence the dead producer (or, before, for the broker to time its open
  transaction out) and restore the partitions' state.
* ``assigned_s``, ``restored_s``: from the kill until the survivor's log says it was given
  the killed runtime's partitions, and until their restore was done (null: not logged).
* ``restored_records``: changelog records the survivor read to restore them.
* ``ready_s``: from the kill until the survivor's last taken partition was handed to its
  handler (fenced and restored; null: a checkout that does not log it).
* ``fence_s``, ``listing_s``: the longest check-and-fence of the departed owner, and the
  longest listing of the changelog's offsets, among the survivor's takeovers.
* ``renewals``: producers the runtimes replaced (fenced by a transaction timeout, or the
  processor stopped after too many), read from both logs.
* ``load``: the one-minute load average at the kill.

    python -m bench.failover [--history 2000] [--waiting 200] [--busy 0] [--env KWF_X=V ...] [--repeats 1] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import time
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.common import StatusWatcher, bench_runtime, broker, delete_topics, fresh_settings, note
from engine.api.client import WorkflowClient
from engine.state.topics import ensure_workflow_topics

WORKLOAD = "failover"
# A run that takes this long is broken, not slow.
TIMEOUT_S = 300.0
# With --busy: lets the busy instances' first transactions begin on both runtimes.
BUSY_LEAD_S = 0.3
# Both members hold their partitions and the rebalances after the second join are over.
SETTLE_S = 5.0
# The survivor's log lines that mark the steps of a takeover (streams.processor, streams.restore).
ASSIGNED = re.compile(r"^assigned \S+ partitions \[(\d.*)\]$")
RESTORED = re.compile(r"^restored \S+: (\d+) records")
READY = re.compile(r"^partitions \[[\d, ]+\] of \S+ ready")
TOOK_OVER = re.compile(r"^took over .* fenced in ([\d.]+) s, changelog offsets listed in ([\d.]+) s$")


def takeover_steps(log_path: Path, killed_at: float) -> dict[str, Any]:
    """Seconds from ``killed_at`` (epoch) to the survivor's first assignment and last restore
    after it, read from its JSON log."""
    steps: dict[str, Any] = {"assigned_s": None, "restored_s": None, "restored_records": 0, "ready_s": None,
                             "fence_s": None, "listing_s": None}
    if not log_path.exists():
        return steps
    for line in log_path.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        at = datetime.fromisoformat(entry["time"].replace("Z", "+00:00")).timestamp()
        if at < killed_at:
            continue
        message = entry.get("message", "")
        if steps["assigned_s"] is None and ASSIGNED.match(message):
            steps["assigned_s"] = round(at - killed_at, 2)
        if restored := RESTORED.match(message):
            steps["restored_s"] = round(at - killed_at, 2)
            steps["restored_records"] += int(restored.group(1))
        if READY.match(message):
            steps["ready_s"] = round(at - killed_at, 2)
        if took_over := TOOK_OVER.match(message):
            for key, seconds in zip(("fence_s", "listing_s"), took_over.groups(), strict=True):
                steps[key] = max(steps[key] or 0.0, float(seconds))
    return steps


def renewals(*logs: Path) -> int:
    """How many times the runtimes' transactional producers were replaced."""
    return sum(path.read_text(errors="replace").count("cannot go on") for path in logs if path.exists())


def run(bootstrap: str, *, history: int = 2000, waiting: int = 200, busy: int = 0,
        keep: bool = False, env: dict[str, str] | None = None) -> dict[str, Any]:
    settings = fresh_settings(bootstrap, WORKLOAD)
    ensure_workflow_topics(settings)
    given = dict(env or {})
    env = {**given, "KWF_LOG_FORMAT": "json"}
    first = bench_runtime(replace(settings, process_id=f"{settings.process_id}-a",
                                  state_dir=settings.state_dir / "a"), env=env)
    second = bench_runtime(replace(settings, process_id=f"{settings.process_id}-b",
                                   state_dir=settings.state_dir / "b"), env=env)
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
            if busy:
                client.schedule_new_workflows("chain3", [(f"b-{i}", i) for i in range(busy)])
                time.sleep(BUSY_LEAD_S)
            load = os.getloadavg()[0]
            killed_at, killed_at_epoch = time.perf_counter(), time.time()
            second.kill()
            for instance_id in parked:
                client.raise_workflow_event(instance_id, "go", data=instance_id)
            last = watcher.wait_ended(parked, TIMEOUT_S, "after the kill")
            first.stop()
            return {"history": history, "waiting": waiting, "busy": busy, **({"env": given} if given else {}),
                    "seconds": round(last - killed_at, 2),
                    **takeover_steps(first.log_path, killed_at_epoch),
                    "renewals": renewals(first.log_path, second.log_path), "load": round(load, 1)}
    finally:
        client.close()
        first.stop()
        second.kill()
        delete_topics(settings)
        if keep:
            note(f"logs kept in {settings.state_dir}")
        else:
            shutil.rmtree(settings.state_dir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.failover", description=__doc__.split("\n\n")[0])
    parser.add_argument("--history", type=int, default=2000)
    parser.add_argument("--waiting", type=int, default=200)
    parser.add_argument("--busy", type=int, default=0, help="chain3 instances started just before the kill")
    parser.add_argument("--env", action="append", default=[], metavar="KWF_X=V",
                        help="an environment variable of both runtimes (repeatable)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the runtimes' state folders and logs")
    args = parser.parse_args()
    with broker(warm_up_s=0) as bootstrap:
        for _ in range(args.repeats):
            print(json.dumps(run(bootstrap, history=args.history, waiting=args.waiting, busy=args.busy,
                                 keep=args.keep, env=dict(item.split("=", 1) for item in args.env))),
                  flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
