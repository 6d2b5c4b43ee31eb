"""A local 3-node KRaft cluster (streams/broker.py ``LocalCluster``) for the tests in this folder.

Started once per session in a folder of its own beside the single test broker, on free
ports, and stopped afterwards. Starting three JVMs takes about a minute on a busy 2-core
machine, so every test here is marked ``slow``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.broker import LocalCluster, free_port_block

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="session")
def kafka_cluster() -> Iterator[LocalCluster]:
    home = Path(os.environ.get("KWF_HOME", REPO / ".kwf")).resolve()
    cluster = LocalCluster(home=home, size=3, port=free_port_block(6), folder_name="test-cluster")
    cluster.stop()
    shutil.rmtree(cluster.folder, ignore_errors=True)
    cluster.start()
    try:
        yield cluster
    finally:
        # Thrown away, so killed: a clean stop moves leaderships node by node for half a minute.
        cluster.kill()
        shutil.rmtree(cluster.folder, ignore_errors=True)
