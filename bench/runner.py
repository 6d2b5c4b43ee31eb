"""Running the workloads one after another: a workload that cannot run is skipped, not fatal.

Each workload's figures are printed as JSON lines the moment they are measured (``emit``)
and summed up on one progress line when it finishes; a workload that raises is reported on
one line and the next one runs. At the end, one JSON object holds every figure and every
skipped workload with its reason.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from bench.common import note, results


class PeerUnavailable(RuntimeError):
    """A peer system cannot run here (not installed, or its run failed); its figures are left out."""


@dataclass(frozen=True)
class Workload:
    """One named workload: ``run`` measures it and emits its figures."""

    name: str
    run: Callable[[], None]


def run_workloads(workloads: Sequence[Workload]) -> dict[str, str]:
    """Run each workload in order; return the skipped ones with their one-line reasons."""
    skipped: dict[str, str] = {}
    for workload in workloads:
        first = len(results.rows)
        try:
            workload.run()
        except Exception as err:
            reason = one_line(err)
            skipped[workload.name] = reason
            note(f"{workload.name}: skipped: {reason}")
            continue
        figures = [f"{r['workload']} {r['system']} {r['metric']} {r['value']:,} {r['unit']}"
                   for r in results.rows[first:]]
        note(f"{workload.name}: " + ("; ".join(figures) or "no figures"))
    return skipped


def final_report(skipped: dict[str, str]) -> dict[str, Any]:
    """Every figure printed so far and the skipped workloads, as one JSON line on stdout."""
    report = {"results": list(results.rows), "skipped": skipped}
    print(json.dumps(report), flush=True)
    return report


def one_line(err: BaseException) -> str:
    """The error's type and the first line of its message."""
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__
