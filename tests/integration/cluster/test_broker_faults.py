"""A broker of the 3-node cluster SIGKILLed under load, then the active controller.

Real processes: three Kafka JVMs, a ``kwf run`` subprocess, a client starting chain3 and
fan-out instances at a steady rate (``broker_faults.py`` beside it). Every instance must complete
with its right output, every history be numbered without a gap or a repeat, no status go
backwards, and the killed node rejoin the in-sync replicas. The figures are printed (run
with ``-s``) and recorded in RELIABILITY.md.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from streams.broker import LocalCluster
from tests.integration.cluster.broker_faults import FaultConfig, run_fault

# Not in `make test` yet: after the killed node held the transaction coordinator, the runtime
# can stall (an abort fails with INVALID_TXN_STATE, a new producer takes over, no progress
# follows); it fails often enough to make CI a coin toss. `make test-cluster-faults` runs it.
pytestmark = [pytest.mark.slow, pytest.mark.cluster_faults]

# Small enough for a busy 2-core machine to keep up with, long enough for a steady rate.
LOAD = {"rate": 5.0, "before_s": 5.0, "down_s": 8.0, "after_s": 5.0}


@pytest.mark.parametrize("fault", ["leader", "controller"])
def test_a_killed_node_loses_nothing_and_rejoins(kafka_cluster: LocalCluster, fault: str, tmp_path: Path) -> None:
    result = run_fault(kafka_cluster, FaultConfig(fault, **LOAD), tmp_path)
    print(json.dumps(result))
    assert result["restart_error"] is None, result
    assert result["instances"] >= 20, result
    assert (result["lost"], result["wrong"], result["backwards"]) == (0, 0, 0), result
    assert result["history_anomalies"] == 0, result
    assert result["in_sync_after"], result
