"""``fanout-N``: one instance fanning out N trivial activities, start to completion.

* ``fanout-1000``, ``fanout-10000``: plain (thread-pool) activities returning at once.
* ``fanout-10000-async1s``: ``async def`` activities that each ``await asyncio.sleep(1)``;
  the ideal is a little over one second.

Timed by the client, from just before the start is produced until a ``kwf.status``
consumer in the benchmark process reads the COMPLETED record.

    python -m bench.fanout [--sizes 1000,10000] [--no-async] [--profile FILE]
"""

from __future__ import annotations

import argparse
import time
import uuid
from pathlib import Path

from bench.common import StatusWatcher, broker, emit, fresh_settings, median, note, running_runtime
from engine.api.client import WorkflowClient

SIZES = (1_000, 10_000)
ASYNC_SIZE = 10_000
# A fan-out this slow is broken, not slow.
TIMEOUT_S = 600.0


def one_fan_out(client: WorkflowClient, watcher: StatusWatcher, workflow: str, size: int) -> float:
    instance_id = f"f-{uuid.uuid4().hex[:12]}"
    began = time.perf_counter()
    client.schedule_new_workflows(workflow, [(instance_id, size)])
    ended = watcher.wait_ended([instance_id], TIMEOUT_S, f"{workflow} of {size}")
    return ended - began


def run(bootstrap: str, *, sizes: tuple[int, ...] = SIZES, with_async: bool = True, repeats: int = 1,
        profile_to: Path | None = None) -> None:
    settings = fresh_settings(bootstrap, "fanout")
    with running_runtime(settings, profile_to), StatusWatcher(settings) as watcher:
        client = WorkflowClient(settings=settings)
        one_fan_out(client, watcher, "fan_out", 100)  # warm-up
        cases = [(f"fanout-{n}", "fan_out", n) for n in sizes]
        if with_async:
            cases.append((f"fanout-{ASYNC_SIZE}-async1s", "fan_out_async", ASYNC_SIZE))
        for workload, workflow, size in cases:
            times = []
            for _ in range(repeats):
                times.append(one_fan_out(client, watcher, workflow, size))
                note(f"{workload}: {times[-1]:.2f} s")
            emit(workload, "kwf", "seconds", median(times), "s")
        client.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.fanout", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)))
    parser.add_argument("--no-async", action="store_true")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--profile", type=Path, default=None, help="py-spy samples of the runtime (collapsed stacks)")
    args = parser.parse_args()
    with broker() as bootstrap:
        run(bootstrap, sizes=tuple(int(s) for s in args.sizes.split(",")), with_async=not args.no_async,
            repeats=args.repeats, profile_to=args.profile)


if __name__ == "__main__":
    main()
