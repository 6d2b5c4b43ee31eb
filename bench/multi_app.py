"""``multi-app``: ``chain3`` with its activities in another application, beside the local one.

Two runtime processes: the default application, which runs the workflows, and application
``bench-workers`` (``KWF_APP_ID``), whose workers run the steps of ``chain3_remote``. The
same runtime code is in both, so ``chain3`` (every step local) and ``chain3_remote`` (every
step a task on ``bench-workers``' activities topic, its result back on the caller's inbox)
are measured in one setup, one after the other:

* ``wf_per_s``: ``count`` instances started at once, divided by the time until the last
  one's COMPLETED status was read (as ``bench.chain``).
* ``p50_ms`` / ``p99_ms``: start-to-completion at ``rate`` starts per second for ``seconds``.

    python -m bench.multi_app [--count 1000] [--rate 20] [--seconds 10]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import uuid
from dataclasses import replace
from pathlib import Path

from bench.apps import REMOTE_APP
from bench.chain import LATENCY_TIMEOUT_S, WARM_UP_S, latencies, throughput
from bench.common import StatusWatcher, bench_runtime, broker, emit, fresh_settings, note, percentile, running_runtime
from engine.api.client import WorkflowClient
from engine.state.topics import ensure_workflow_topics

WORKLOAD = "multi-app"
WORKFLOWS = {"chain3": "local", "chain3_remote": "remote"}


def run(bootstrap: str, *, count: int = 1000, rate: float = 20.0, seconds: float = 10.0) -> None:
    settings = fresh_settings(bootstrap, WORKLOAD)
    remote = replace(settings, app_id=REMOTE_APP, process_id=f"{settings.process_id}-remote",
                     state_dir=Path(tempfile.mkdtemp(prefix=f"kwf-bench-{WORKLOAD}-remote-")))
    ensure_workflow_topics(remote)
    workers = bench_runtime(remote)
    try:
        note(f"{REMOTE_APP} ready in {workers.start():.1f} s")
        with running_runtime(settings) as _runtime, StatusWatcher(settings) as watcher:
            client = WorkflowClient(settings=settings)
            for workflow in WORKFLOWS:
                warm = [f"w-{uuid.uuid4().hex[:12]}" for _ in range(50)]
                client.schedule_new_workflows(workflow, ((i, 0) for i in warm))
                watcher.wait_ended(warm, LATENCY_TIMEOUT_S, f"{workflow} warm-up")
                latencies(client, watcher, rate, WARM_UP_S, report=False, workflow=workflow)
            for workflow, where in WORKFLOWS.items():
                system = f"kwf-{where}"
                emit(WORKLOAD, system, "wf_per_s", throughput(client, watcher, count, workflow), "wf/s")
                ms = latencies(client, watcher, rate, seconds, workflow=workflow)
                emit(WORKLOAD, system, "p50_ms", percentile(ms, 50), "ms")
                emit(WORKLOAD, system, "p99_ms", percentile(ms, 99), "ms")
            client.close()
    finally:
        workers.stop()
        shutil.rmtree(remote.state_dir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.multi_app", description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warm-up", type=float, default=30.0, help="longest broker warm-up in seconds (0: none)")
    args = parser.parse_args()
    with broker(warm_up_s=args.warm_up) as bootstrap:
        run(bootstrap, count=args.count, rate=args.rate, seconds=args.seconds)


if __name__ == "__main__":
    main()
