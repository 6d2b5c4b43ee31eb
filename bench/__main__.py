"""``python -m bench``: every workload against one broker, results as JSON lines on stdout.

Uses ``KWF_BOOTSTRAP_SERVERS`` when set, else starts a local broker (8 partitions) and stops
it afterwards. Each workload runs on topics of its own. ``--quick`` runs each measurement
once with shorter light-load windows (a few minutes in all); the full run repeats the
cheap ones and reports medians.

A workload that cannot run (the DBOS peer when ``dbos`` is not installed) is reported on
one line and skipped; the others' figures are printed as they finish, then the table and
one JSON object with every figure and the skipped workloads.

A broker JVM commits transactions ten times slower in its first minute than once warm,
so the broker is first warmed up with up to 30,000 transactions (``common.warm_up``).

    python -m bench [--quick] [--warm-up SECONDS]
        [--only chain3,chain3_client,doors,observability,fanout,ceiling,recovery,dbos,temporal,restate]
    python -m bench --only scale --scale-count 10000,100000     (not in the default run: long)
    python -m bench --only scaleout                             (1, 2, 3 runtime processes; not in the default run)
    python -m bench --only txn_rate                             (transactions/s for 1 and N producers; ditto)
"""

from __future__ import annotations

import argparse
import time

from bench import (
    ceiling,
    chain,
    chain_client,
    doors,
    fanout,
    observability,
    peer_dbos,
    peer_restate,
    peer_temporal,
    recovery,
    scale,
    scaleout,
    txn_rate,
)
from bench.common import broker, console, machine, note, results
from bench.runner import Workload, final_report, run_workloads

WORKLOADS = ("chain3", "chain3_client", "doors", "observability", "fanout", "ceiling", "recovery", "dbos", "temporal",
             "restate")
# Run only when asked for with --only.
ON_REQUEST = ("scale", "scaleout", "txn_rate")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one round of each, shorter windows (a few minutes)")
    parser.add_argument("--warm-up", type=float, default=None,
                        help="longest broker warm-up in seconds (default 60 with --quick, else 150; 0: none)")
    parser.add_argument("--only", default=",".join(WORKLOADS), help="comma-separated subset of " + ", ".join(WORKLOADS))
    parser.add_argument("--scale-count", default=str(scale.COUNT),
                        help="instances of the scale workload; several, comma-separated, make a slope")
    args = parser.parse_args()
    chosen = [w.strip() for w in args.only.split(",") if w.strip()]
    unknown = set(chosen) - set(WORKLOADS) - set(ON_REQUEST)
    if unknown:
        parser.error(f"unknown workloads: {', '.join(sorted(unknown))}")
    repeats = 1 if args.quick else 3
    seconds = 8.0 if args.quick else 12.0
    info = machine()
    note(f"machine: {info['nproc']} cores, {info['memory_gib']} GiB, {info['cpu']}, Python {info['python']}")
    began = time.monotonic()
    warm_up_s = args.warm_up if args.warm_up is not None else (60.0 if args.quick else 150.0)
    with broker(warm_up_s) as bootstrap:
        note(f"broker: {bootstrap}")
        workloads = {
            "ceiling": lambda: ceiling.run(bootstrap, records=30_000 if args.quick else ceiling.RECORDS,
                                           seconds=3.0 if args.quick else ceiling.ROUNDTRIP_SECONDS),
            "chain3": lambda: chain.run(bootstrap, count=2000, rate=20.0, seconds=seconds, repeats=repeats),
            "chain3_client": lambda: chain_client.run(bootstrap, count=100 if args.quick else 300,
                                                      seconds=5.0 if args.quick else 10.0),
            "doors": lambda: doors.run(bootstrap, count=500 if args.quick else 2000, runs=100 if args.quick else 200,
                                       seconds=seconds),
            "observability": lambda: observability.run(bootstrap, count=2000, repeats=repeats),
            "fanout": lambda: fanout.run(bootstrap, repeats=repeats),
            "recovery": lambda: recovery.run(bootstrap, count=recovery.COUNT),
            "scaleout": lambda: scaleout.run(bootstrap, count=1000 if args.quick else scaleout.COUNT),
            "txn_rate": lambda: txn_rate.run(bootstrap, seconds=5.0 if args.quick else txn_rate.SECONDS),
            "scale": lambda: [scale.run(bootstrap, count=int(n)) for n in args.scale_count.split(",") if n.strip()],
            "dbos": lambda: peer_dbos.run(count=2000, rate=20.0, seconds=seconds, fanout=1000),
            "restate": lambda: peer_restate.run(count=500 if args.quick else 1000, runs=100 if args.quick else 200),
            "temporal": lambda: peer_temporal.run(count=500 if args.quick else 1000, runs=100 if args.quick else 200),
        }
        skipped = run_workloads([Workload(name, run) for name, run in workloads.items() if name in chosen])
    console.print(results.table())
    final_report(skipped)
    note(f"done in {time.monotonic() - began:.0f} s")


if __name__ == "__main__":
    main()
