"""The benchmarks' shared pieces: result lines, percentiles, the restore log lines."""

from __future__ import annotations

import json

import pytest

from bench.common import Results, percentile
from engine.testing import RESTORED


def test_a_result_is_one_json_line_with_the_five_fields(capsys: pytest.CaptureFixture[str]) -> None:
    results = Results()
    results.emit("chain3", "kwf", "wf_per_s", 123.4567, "wf/s")
    line = json.loads(capsys.readouterr().out)
    assert line == {"workload": "chain3", "system": "kwf", "metric": "wf_per_s", "value": 123.457, "unit": "wf/s"}
    assert results.rows == [line]


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile([7.0], 99) == 7.0


def test_restore_lines_give_records_and_seconds() -> None:
    line = "INFO streams.restore: restored p.history-3: 6250 records up to offset 6301 in 0.42 s"
    assert RESTORED.findall(line) == [("6250", "0.42")]
