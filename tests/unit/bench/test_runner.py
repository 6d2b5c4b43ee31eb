"""The benchmark runner: a workload that cannot run is reported on one line and skipped."""

from __future__ import annotations

import json
import sys

import pytest

from bench import peer_dbos
from bench.common import emit, results
from bench.runner import PeerUnavailable, Workload, final_report, run_workloads


@pytest.fixture(autouse=True)
def no_rows() -> None:
    results.rows.clear()


def test_a_failing_peer_is_reported_on_one_line_and_the_other_figures_are_still_printed(
        capsys: pytest.CaptureFixture[str]) -> None:
    def peer() -> None:
        raise PeerUnavailable("dbos is not installed (pip install -e '.[bench]', or make bench)\nmore detail")

    skipped = run_workloads([
        Workload("chain3", lambda: emit("chain3", "kwf", "wf_per_s", 1000.0, "wf/s")),
        Workload("dbos", peer),
        Workload("fanout", lambda: emit("fanout-1000", "kwf", "seconds", 0.2, "s")),
    ])
    report = final_report(skipped)

    assert skipped == {"dbos": "PeerUnavailable: dbos is not installed (pip install -e '.[bench]', or make bench)"}
    out, err = capsys.readouterr()
    lines = [json.loads(line) for line in out.splitlines()]
    assert [row["workload"] for row in lines[:2]] == ["chain3", "fanout-1000"]
    assert lines[-1] == report and [r["workload"] for r in report["results"]] == ["chain3", "fanout-1000"]
    assert report["skipped"] == skipped
    assert len([line for line in err.splitlines() if "skipped" in line]) == 1


def test_the_dbos_peer_without_dbos_installed_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "dbos", None)  # import dbos fails, find_spec finds nothing
    with pytest.raises(PeerUnavailable, match="not installed"):
        peer_dbos.run(count=1, rate=1.0, seconds=0.1, fanout=1)
