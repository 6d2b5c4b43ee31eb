"""Running totals that hang once, inside an open transaction, on the record keyed ``stall``.

Run as ``python -m stalling_totals`` (with this folder on PYTHONPATH) and the same arguments
as ``examples.running_totals``. The first time it meets the ``stall`` key it lets its
records reach the broker, touches ``$STALL_MARKER`` and sleeps: a test then kills it with
a transaction that is certainly open.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from examples import running_totals
from streams.processor import Batch

# Far longer than any test waits: the process is killed while it sleeps.
STALL_S = 300.0
# Lets the producer send the transaction's records (linger.ms is a few ms).
SEND_S = 1.0


class StallingTotals(running_totals.RunningTotals):
    def __init__(self, output_topic: str) -> None:
        super().__init__(output_topic)
        self.marker = Path(os.environ["STALL_MARKER"])

    def process(self, batch: Batch) -> None:
        super().process(batch)
        if not self.marker.exists() and any(record.key == b"stall" for record in batch.records):
            time.sleep(SEND_S)
            self.marker.touch()
            time.sleep(STALL_S)


if __name__ == "__main__":
    running_totals.RunningTotals = StallingTotals  # type: ignore[misc]
    sys.exit(running_totals.main())
