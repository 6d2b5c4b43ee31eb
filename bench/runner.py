"""Running the workloads one after another: a workload that cannot run is skipped, not fatal.

Each workload's figures are printed as JSON lines the moment they are measured (``emit``)
and summed up on one progress line when it finishes; a workload that raises is reported on
one line and the next one runs. At the end, one JSON object holds every figure and every
skipped workload with its reason.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from bench.common import REPO, emit, note, results


class PeerUnavailable(RuntimeError):
    """A peer system cannot run here (not installed, or its run failed); its figures are left out."""


def print_row(workload: str, system: str, metric: str, value: float, unit: str) -> None:
    """One result line on stdout, as a peer's child process reports it to ``run_peer_child``."""
    print(json.dumps({"workload": workload, "system": system, "metric": metric, "value": value, "unit": unit}),
          flush=True)


def run_peer_child(command: list[str], peer: str) -> None:
    """Run a peer's benchmark in a child process and pass its result lines on as they come.

    Raises:
        PeerUnavailable: the child failed (its last error line).
    """
    # The child's stderr goes to a file, not a pipe: nobody reads a pipe while its results stream.
    with tempfile.TemporaryFile("w+") as errors:
        with subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=errors, text=True) as proc:
            assert proc.stdout is not None
            for line in proc.stdout:
                row: dict[str, Any] = json.loads(line)
                emit(row["workload"], row["system"], row["metric"], row["value"], row["unit"])
                note(f"{peer}: {row['workload']} {row['metric']} {row['value']:.1f}")
        if proc.returncode != 0:
            errors.seek(0)
            last = [line for line in errors.read().splitlines() if line.strip()][-1:] or ["no error output"]
            raise PeerUnavailable(f"the {peer} benchmark exited with {proc.returncode}: {last[0].strip()}")


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
