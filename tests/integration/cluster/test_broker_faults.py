"""A node of the 3-node cluster SIGKILLed under load: the transaction coordinator, the
leader of most history partitions, the active controller.

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

pytestmark = pytest.mark.slow

# Small enough for a busy 2-core machine to keep up with, long enough for a steady rate.
LOAD = {"rate": 5.0, "before_s": 5.0, "down_s": 8.0, "after_s": 5.0}


def check(result: dict) -> None:
    print(json.dumps(result))
    assert result["restart_error"] is None, result
    assert result["instances"] >= 20, result
    assert (result["lost"], result["wrong"], result["backwards"]) == (0, 0, 0), result
    assert result["history_anomalies"] == 0, result
    assert result["in_sync_after"], result


def test_a_killed_transaction_coordinator_loses_nothing_and_rejoins(kafka_cluster: LocalCluster,
                                                                     tmp_path: Path) -> None:
    # The hardest of the three: the orchestrator's open transaction outlives its timeout
    # while the cluster notices the loss, and its producer is fenced (it also leads a
    # third of the partitions, so leaders move as in the leader kill).
    check(run_fault(kafka_cluster, FaultConfig("coordinator", **LOAD), tmp_path))


# A minute each on top of `make test`; the coordinator kill above takes the same paths
# (leaders move, transactions abort) and more. `make test-cluster-faults` runs all three.
@pytest.mark.cluster_faults
@pytest.mark.parametrize("fault", ["leader", "controller"])
def test_a_killed_node_loses_nothing_and_rejoins(kafka_cluster: LocalCluster, fault: str, tmp_path: Path) -> None:
    check(run_fault(kafka_cluster, FaultConfig(fault, **LOAD), tmp_path))
