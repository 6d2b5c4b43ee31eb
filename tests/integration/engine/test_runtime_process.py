"""The integration tests' own helpers, checked without a broker."""

from __future__ import annotations

from pathlib import Path

from tests.integration.engine.runtime_process import read_runs


def test_read_runs_orders_lines_by_time_across_processes_whatever_their_pids(tmp_path: Path) -> None:
    # PID 10000 sorts before PID 9999 as text; its runs came later.
    (tmp_path / "9999.log").write_text("start a 9999 100.000\nend a 9999 101.000\n")
    (tmp_path / "10000.log").write_text("start b 10000 102.000\nend b 10000 103.500\n")
    (tmp_path / "123.log").write_text("start c 123 101.500\n")
    runs = read_runs(tmp_path)
    assert [(r.what, r.item) for r in runs] == [("start", "a"), ("end", "a"), ("start", "c"), ("start", "b"),
                                                ("end", "b")]
    assert [r.pid for r in runs] == [9999, 9999, 123, 10000, 10000]
