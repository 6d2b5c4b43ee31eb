"""``memory``: does a runtime's resident memory follow the instances in flight or every instance ever run?

One ``kwf run`` process; chain3 instances started through the bulk start in waves of
``--wave`` (each wave completes before the next starts, so no more than a wave is ever in
flight) up to ``--count``. After each wave, one JSON row: ``rss_mb`` of the runtime and the
instances completed so far. With memory bounded by configuration the rows flatten once the
caches (RocksDB's block cache and memtables, the executor's cache of live runs) are full;
a slope that goes on is a cost per instance ever run.

``--env NAME=VALUE`` (repeatable) sets the runtime's environment, e.g. ``KWF_STORE_CACHE_MB=8``
to fill the block cache sooner.

    python -m bench.memory [--count 30000] [--wave 2000] [--env NAME=VALUE ...]
"""

from __future__ import annotations

import argparse
import time
import uuid
from dataclasses import replace

from bench.common import StatusWatcher, broker, emit, fresh_settings, note, running_runtime
from bench.scale import rss_mb
from engine.api.client import WorkflowClient

WORKLOAD = "memory"
TIMEOUT_S = 900.0


def run(bootstrap: str, *, count: int, wave: int, env: dict[str, str]) -> None:
    settings = fresh_settings(bootstrap, WORKLOAD)
    settings = replace(settings, view_dir=settings.state_dir / "views")
    with running_runtime(settings, env=env) as runtime, StatusWatcher(settings) as watcher:
        client = WorkflowClient(settings=settings)
        try:
            emit(WORKLOAD, "kwf", "rss_mb_at_0", rss_mb(runtime), "MB")
            done = 0
            while done < count:
                ids = [f"m-{done + n:08d}-{uuid.uuid4().hex[:6]}" for n in range(min(wave, count - done))]
                began = time.perf_counter()
                client.schedule_new_workflows("chain3", ((i, 1) for i in ids))
                watcher.wait_ended(ids, TIMEOUT_S, f"memory: wave to {done + len(ids)}")
                done += len(ids)
                note(f"memory: {done} completed, wave in {time.perf_counter() - began:.1f} s")
                emit(WORKLOAD, "kwf", f"rss_mb_at_{done}", rss_mb(runtime), "MB")
        finally:
            client.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=30_000)
    parser.add_argument("--wave", type=int, default=2_000)
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE")
    args = parser.parse_args()
    env = dict(item.split("=", 1) for item in args.env)
    with broker(warm_up_s=0) as bootstrap:
        run(bootstrap, count=args.count, wave=args.wave, env=env)


if __name__ == "__main__":
    main()
