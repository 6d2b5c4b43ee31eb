"""The peer: ``chain3`` and ``fanout-1000`` on DBOS (SQLite system database, one process).

DBOS runs in a child process of its own (``python -m bench.peer_dbos --child``), so its
threads and SQLite writes do not share the benchmark process with the kwf client; the
child prints the result lines, the parent passes them on.

* ``chain3`` ``wf_per_s``: ``count`` workflows of three steps started at once
  (``DBOS.start_workflow``), from the first start until the last result.
* ``chain3`` ``p50_ms`` (and ``p99_ms``): start to result at ``rate`` starts per second;
  each waits on its handle (a local future, no polling). A chain takes ~10 ms, well under
  the 50 ms between starts, so waiting on each before the next start changes nothing.
* ``fanout-1000`` ``seconds``: one workflow starting 1,000 child workflows of one step each
  and collecting their results (DBOS's way to run steps in parallel).

Needs ``pip install 'kafka-workflows[bench]'`` (``dbos``; ``make bench`` installs it). Without
it, or when its child fails, ``run`` raises ``PeerUnavailable`` and the runner skips it.

    python -m bench.peer_dbos [--count 2000] [--rate 20] [--seconds 12] [--fanout 1000]
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import note, percentile
from bench.runner import PeerUnavailable, print_row, run_peer_child

SYSTEM = "dbos"
# Light load before any measurement, discarded (as for kwf).
WARM_UP_S = 4.0


def child(count: int, rate: float, seconds: float, fanout: int) -> None:
    """Runs inside the DBOS child process; prints result lines on stdout."""
    import logging

    from dbos import DBOS

    logging.getLogger("dbos").setLevel(logging.WARNING)
    folder = Path(tempfile.mkdtemp(prefix="kwf-bench-dbos-"))
    DBOS(config={"name": "kwf-bench", "system_database_url": f"sqlite:///{folder / 'dbos.sqlite'}",
                 "run_admin_server": False, "log_level": "WARNING"})

    @DBOS.step()
    def step(value: int) -> int:
        return value + 1

    @DBOS.workflow()
    def chain3(value: int) -> int:
        return step(step(step(value)))

    @DBOS.workflow()
    def one_step(value: int) -> int:
        return step(value)

    @DBOS.workflow()
    def fan_out(n: int) -> int:
        handles = [DBOS.start_workflow(one_step, i) for i in range(n)]
        return len([h.get_result() for h in handles])

    DBOS.launch()
    # Warm-up, as for kwf: some instances, then a few seconds at the light rate, discarded.
    for n in range(50):
        DBOS.start_workflow(chain3, n).get_result()
    light_load(chain3, rate, WARM_UP_S)

    began = time.perf_counter()
    handles = [DBOS.start_workflow(chain3, n) for n in range(count)]
    for handle in handles:
        handle.get_result()
    print_row("chain3", SYSTEM, "wf_per_s", count / (time.perf_counter() - began), "wf/s")

    latencies = light_load(chain3, rate, seconds)
    print_row("chain3", SYSTEM, "p50_ms", percentile(latencies, 50), "ms")
    print_row("chain3", SYSTEM, "p99_ms", percentile(latencies, 99), "ms")

    began = time.perf_counter()
    DBOS.start_workflow(fan_out, fanout).get_result()
    print_row(f"fanout-{fanout}", SYSTEM, "seconds", time.perf_counter() - began, "s")
    DBOS.destroy()


def light_load(workflow: Any, rate: float, seconds: float) -> list[float]:
    """Start-to-result milliseconds of ``workflow`` started ``rate`` times a second."""
    from dbos import DBOS

    latencies: list[float] = []
    began = time.perf_counter()
    for n in range(max(1, int(rate * seconds))):
        pause = began + n / rate - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
        sent = time.perf_counter()
        DBOS.start_workflow(workflow, n).get_result()
        latencies.append((time.perf_counter() - sent) * 1000)
    return latencies



def run(*, count: int = 2000, rate: float = 20.0, seconds: float = 12.0, fanout: int = 1000) -> None:
    """Run the DBOS child and pass its result lines on.

    Raises:
        PeerUnavailable: ``dbos`` is not installed, or the child failed (its last error line).
    """
    if importlib.util.find_spec("dbos") is None:
        raise PeerUnavailable("dbos is not installed (pip install -e '.[bench]', or make bench)")
    note(f"dbos: chain3 x {count}, light load {rate:g}/s for {seconds:g} s, fan-out of {fanout}")
    command = [sys.executable, "-m", "bench.peer_dbos", "--child", "--count", str(count), "--rate", str(rate),
               "--seconds", str(seconds), "--fanout", str(fanout)]
    # The child's stderr goes to a file, not a pipe: nobody reads a pipe while its results stream.
    run_peer_child(command, "DBOS")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.peer_dbos", description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--seconds", type=float, default=12.0)
    parser.add_argument("--fanout", type=int, default=1000)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.count, args.rate, args.seconds, args.fanout)
    else:
        run(count=args.count, rate=args.rate, seconds=args.seconds, fanout=args.fanout)


if __name__ == "__main__":
    main()
