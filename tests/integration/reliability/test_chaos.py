"""Chaos, bounded: mixed workflows while orchestrators and workers are SIGKILLed at random.

The longer run is ``python -m tests.integration.reliability.chaos --minutes N``; both use
``run_chaos`` of ``chaos.py`` beside it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.integration.reliability.chaos import ChaosConfig, run_chaos

# Two to three minutes on a 2-core machine: ~75 s of kills, then the settling.
BOUNDED = ChaosConfig(instances=150, chaos_s=75.0, settle_s=120.0, partitions=4, kill_every_s=(4.0, 9.0),
                      seed=int(os.environ.get("KWF_CHAOS_SEED", "7")))


# Starting the processes, the kills, the settling, and room for the final checks.
@pytest.mark.slow
@pytest.mark.timeout(BOUNDED.chaos_s + BOUNDED.settle_s + 300)
def test_every_instance_ends_as_expected_with_processes_killed_at_random(kafka_bootstrap: str,
                                                                          tmp_path: Path) -> None:
    summary = run_chaos(kafka_bootstrap, BOUNDED, folder=tmp_path)
    print(json.dumps(summary))
    assert summary["kills"] >= 5, summary
    assert summary["lost"] == 0, summary["examples"]
    assert summary["wrong"] == 0, summary["examples"]
    assert summary["duplicates"] == 0, summary["examples"]
    assert summary["never_ran"] == 0, summary["examples"]
