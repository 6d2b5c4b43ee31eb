"""``doors``: chain3 through the doors users call, one ``kwf run`` with its HTTP API.

* ``client-chain3`` ``p50_ms`` / ``p99_ms``: ``schedule_new_workflow`` then
  ``wait_for_workflow_completion`` on the public client, one at a time after a warm-up.
* ``client-chain3`` ``wf_per_s``: ``callers`` threads sharing one client, each starting an
  instance and waiting for its completion, then the next, for ``seconds``.
  (Both client figures are ``bench.chain_client``'s way of calling, on this runtime.)
* ``http-start`` ``p50_ms`` / ``p99_ms``: ``POST .../workflows/dapr/chain3/start`` one at a time
  (202 once the start is durable), over one keep-alive connection.
* ``http-chain3`` ``wf_per_s``: ``callers`` threads each with a connection of its own, posting
  starts; completions are read from the status topic (the Dapr API has no wait), from the
  first start until the last instance completed.

    python -m bench.doors [--count 2000] [--callers 32] [--runs 200] [--seconds 10] [--broker-warm-up 10]
"""

from __future__ import annotations

import argparse
import threading
import time
import uuid
from collections.abc import Callable

import httpx

from bench.chain_client import concurrent, sequential
from bench.common import StatusWatcher, broker, emit, free_port, fresh_settings, note, percentile, running_runtime
from engine.api.client import WorkflowClient

# The first calls pay for connections, the status view's first read and the runtime's caches.
WARM_UP_RUNS = 30
WAIT_S = 60.0



def new_id(tag: str) -> str:
    return f"{tag}-{uuid.uuid4().hex[:12]}"



def in_parallel(callers: int, count: int, call: Callable[[int], None]) -> float:
    """Run ``call(n)`` for n in 0..count-1 on ``callers`` threads; the seconds it took."""
    next_n = iter(range(count))
    lock = threading.Lock()
    errors: list[BaseException] = []

    def caller() -> None:
        while True:
            with lock:
                n = next(next_n, None)
            if n is None or errors:
                return
            try:
                call(n)
            except BaseException as err:  # noqa: BLE001 (reported by the main thread)
                errors.append(err)

    threads = [threading.Thread(target=caller, name=f"bench-caller-{i}") for i in range(callers)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return time.perf_counter() - began



def http_starts(base: str, runs: int) -> list[float]:
    """Milliseconds of ``runs`` sequential HTTP starts."""
    ms = []
    with httpx.Client(base_url=base, timeout=WAIT_S) as http:
        for n in range(runs):
            began = time.perf_counter()
            answer = http.post(f"/workflows/dapr/chain3/start?instanceID={new_id('hs')}", json=n)
            ms.append((time.perf_counter() - began) * 1000)
            if answer.status_code != 202:
                raise RuntimeError(f"HTTP start answered {answer.status_code}: {answer.text}")
    return ms


def http_concurrent(base: str, watcher: StatusWatcher, callers: int, count: int) -> float:
    """chain3 instances per second started over HTTP by ``callers`` threads, to the last completion."""
    ids = [new_id("hp") for _ in range(count)]
    local = threading.local()

    def start(n: int) -> None:
        if not hasattr(local, "http"):
            local.http = httpx.Client(base_url=base, timeout=WAIT_S)
        answer = local.http.post(f"/workflows/dapr/chain3/start?instanceID={ids[n]}", json=n)
        if answer.status_code != 202:
            raise RuntimeError(f"HTTP start answered {answer.status_code}: {answer.text}")

    began = time.perf_counter()
    in_parallel(callers, count, start)
    last = watcher.wait_ended(ids, WAIT_S * 5, "http-chain3")
    return count / (last - began)


def run(bootstrap: str, *, count: int = 2000, callers: int = 32, runs: int = 200, seconds: float = 10.0) -> None:
    settings = fresh_settings(bootstrap, "doors")
    port = free_port()
    base = f"http://127.0.0.1:{port}/v1.0-beta1"
    with running_runtime(settings, http_port=port), StatusWatcher(settings) as watcher, \
            WorkflowClient(settings=settings) as client:
        sequential(client, WARM_UP_RUNS)
        ms = sequential(client, runs)
        note(f"client chain3 one at a time x {runs}: p50 {percentile(ms, 50):.1f} ms, p99 {percentile(ms, 99):.1f} ms")
        emit("client-chain3", "kwf", "p50_ms", percentile(ms, 50), "ms")
        emit("client-chain3", "kwf", "p99_ms", percentile(ms, 99), "ms")

        per_s = concurrent(client, callers, seconds)
        note(f"client chain3, {callers} callers for {seconds:g} s: {per_s:.0f} wf/s")
        emit("client-chain3", "kwf", "wf_per_s", per_s, "wf/s")

        http_starts(base, WARM_UP_RUNS)
        ms = http_starts(base, runs)
        note(f"HTTP start x {runs}: p50 {percentile(ms, 50):.1f} ms, p99 {percentile(ms, 99):.1f} ms")
        emit("http-start", "kwf", "p50_ms", percentile(ms, 50), "ms")
        emit("http-start", "kwf", "p99_ms", percentile(ms, 99), "ms")

        per_s = http_concurrent(base, watcher, callers, count)
        note(f"HTTP chain3, {callers} callers x {count}: {per_s:.0f} wf/s")
        emit("http-chain3", "kwf", "wf_per_s", per_s, "wf/s")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.doors", description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=2000, help="instances of each concurrent figure")
    parser.add_argument("--callers", type=int, default=32, help="concurrent callers (threads)")
    parser.add_argument("--runs", type=int, default=200, help="one-at-a-time runs of each latency figure")
    parser.add_argument("--seconds", type=float, default=10.0, help="how long the client's concurrent callers run")
    parser.add_argument("--broker-warm-up", type=float, default=10.0, help="longest broker warm-up in seconds")
    args = parser.parse_args()
    with broker(args.broker_warm_up) as bootstrap:
        run(bootstrap, count=args.count, callers=args.callers, runs=args.runs, seconds=args.seconds)


if __name__ == "__main__":
    main()
