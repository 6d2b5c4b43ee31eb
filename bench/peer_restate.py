"""The peer: ``chain3`` on Restate (its server and Python SDK, one host).

The server is the ``restate-server`` binary of the npm package
``@restatedev/restate-server`` (``make bench`` installs it under ``.kwf/peers``; or set
``KWF_RESTATE_SERVER`` to a binary); the service (``bench.restate_app``, SDK ``restate-sdk``)
runs under hypercorn in a process of its own and is registered with the server's admin API.
Callers use the server's HTTP ingress, Restate's own door: a request returns the workflow's
result.

* ``chain3`` ``p50_ms`` / ``p99_ms``: one call at a time after a warm-up.
* ``chain3`` ``wf_per_s``: ``count`` calls from ``callers`` concurrent callers.

    python -m bench.peer_restate [--count 1000] [--runs 200] [--callers 64]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from bench.common import REPO, emit, free_port, note, percentile
from bench.runner import PeerUnavailable

SYSTEM = "restate"
SERVER_IN_REPO = REPO / ".kwf" / "peers" / "node_modules" / "@restatedev" / "restate-server-linux-x64" / "bin" \
    / "restate-server"
WARM_UP_RUNS = 30
READY_S = 60.0



def server_binary() -> Path:
    configured = os.environ.get("KWF_RESTATE_SERVER")
    binary = Path(configured) if configured else SERVER_IN_REPO
    if not binary.exists():
        raise PeerUnavailable(f"restate-server not found at {binary} (make bench installs it with npm)")
    return binary


@contextmanager
def process(command: list[str], log: Path, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """A subprocess in a process group of its own, stopped (SIGTERM, then SIGKILL) on exit."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        yield proc
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        except ProcessLookupError:
            pass


def wait_until(ready: object, what: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + READY_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise PeerUnavailable(f"{what} exited with {proc.returncode}: {log.read_text(errors='replace')[-300:]}")
        if ready():  # type: ignore[operator]
            return
        time.sleep(0.2)
    raise PeerUnavailable(f"{what} not ready within {READY_S:.0f} s")


def config(folder: Path, ports: dict[str, int]) -> Path:
    path = folder / "restate.toml"
    path.write_text(f'''node-name = "kwf-bench"
base-dir = "{folder / "data"}"
listen-mode = "tcp"
bind-ip = "127.0.0.1"
bind-address = "127.0.0.1:{ports["node"]}"
advertised-address = "http://127.0.0.1:{ports["node"]}/"
disable-telemetry = true
log-filter = "warn"

[admin]
bind-address = "127.0.0.1:{ports["admin"]}"
disable-web-ui = true

[ingress]
bind-address = "127.0.0.1:{ports["ingress"]}"
''')
    return path


def answers(url: str) -> bool:
    import httpx

    try:
        return httpx.get(url, timeout=1.0).status_code < 500
    except httpx.HTTPError:
        return False


async def measure(ingress: str, count: int, runs: int, callers: int) -> None:
    import httpx

    url = f"{ingress}/Chain3/run"
    limits = httpx.Limits(max_connections=callers, max_keepalive_connections=callers)
    async with httpx.AsyncClient(timeout=120.0, limits=limits) as http:

        async def chain3(value: int) -> float:
            began = time.perf_counter()
            answer = await http.post(url, json=value)
            if answer.status_code != 200 or answer.json() != value + 3:
                raise RuntimeError(f"Chain3({value}) answered {answer.status_code}: {answer.text}")
            return (time.perf_counter() - began) * 1000

        for n in range(WARM_UP_RUNS):
            await chain3(n)
        ms = [await chain3(n) for n in range(runs)]
        emit("chain3", SYSTEM, "p50_ms", percentile(ms, 50), "ms")
        emit("chain3", SYSTEM, "p99_ms", percentile(ms, 99), "ms")
        note(f"restate: chain3 one at a time p50 {percentile(ms, 50):.1f} ms, p99 {percentile(ms, 99):.1f} ms")

        gate = asyncio.Semaphore(callers)

        async def gated(value: int) -> float:
            async with gate:
                return await chain3(value)

        began = time.perf_counter()
        await asyncio.gather(*(gated(n) for n in range(count)))
        per_s = count / (time.perf_counter() - began)
        emit("chain3", SYSTEM, "wf_per_s", per_s, "wf/s")
        note(f"restate: chain3 x {count}, {callers} callers: {per_s:.0f} wf/s")


def run(*, count: int = 1000, runs: int = 200, callers: int = 64) -> None:
    """Start the server and the service, register it, measure, stop both.

    Raises:
        PeerUnavailable: the server binary, ``restate-sdk`` or ``hypercorn`` is missing, or
            either process did not come up.
    """
    for module in ("restate", "hypercorn", "httpx"):
        if importlib.util.find_spec(module) is None:
            raise PeerUnavailable(f"{module} is not installed (pip install -e '.[bench]', or make bench)")
    import httpx

    binary = server_binary()
    folder = Path(tempfile.mkdtemp(prefix="kwf-bench-restate-"))
    ports = {name: free_port() for name in ("node", "admin", "ingress", "service")}
    env = {k: v for k, v in os.environ.items() if not k.startswith("RESTATE_")}
    env["PYTHONPATH"] = str(REPO)
    try:
        with ExitStack() as stack:
            server_log, service_log = folder / "server.log", folder / "service.log"
            server = stack.enter_context(process([str(binary), "--no-logo", "-c", str(config(folder, ports))],
                                                 server_log, env))
            service = stack.enter_context(process(
                [sys.executable, "-m", "hypercorn", "--bind", f"127.0.0.1:{ports['service']}", "--workers", "1",
                 "--log-level", "warning", "bench.restate_app:app"], service_log, env))
            admin, ingress = f"http://127.0.0.1:{ports['admin']}", f"http://127.0.0.1:{ports['ingress']}"
            wait_until(lambda: answers(f"{admin}/health"), "restate-server", server, server_log)
            wait_until(lambda: answers(f"http://127.0.0.1:{ports['service']}/health"), "the hypercorn service",
                       service, service_log)
            registered = httpx.post(f"{admin}/deployments", timeout=30.0,
                                    json={"uri": f"http://127.0.0.1:{ports['service']}", "force": True})
            if registered.status_code >= 300:
                raise PeerUnavailable(f"registering the service answered {registered.status_code}: {registered.text}")
            wait_until(lambda: httpx.post(f"{ingress}/Chain3/run", json=0, timeout=10.0).status_code == 200,
                       "the Chain3 service on the ingress", server, server_log)
            note(f"restate: chain3 one at a time x {runs}, {count} with {callers} callers")
            asyncio.run(measure(ingress, count, runs, callers))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.peer_restate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--callers", type=int, default=64)
    args = parser.parse_args()
    run(count=args.count, runs=args.runs, callers=args.callers)


if __name__ == "__main__":
    main()
