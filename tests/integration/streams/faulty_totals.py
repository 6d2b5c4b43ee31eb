"""Running totals with faults on cue, for tests. Run as ``python -m faulty_totals`` (this
folder on PYTHONPATH) with the arguments of ``examples.running_totals``.

* key ``stall``, the first time: let the transaction's records reach the broker, touch
  ``$STALL_MARKER`` and hang, so a test can kill the process inside an open transaction.
* key ``oversize``, the first time in this process: emit a record larger than the
  producer accepts, which fails the transaction; the processor aborts it and replays.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from examples import running_totals
from streams.processor import Batch

# Far longer than any test waits: the process is killed while it hangs.
STALL_S = 300.0
# Lets the producer send the transaction's records (linger.ms is a few ms).
SEND_S = 1.0
# Above librdkafka's default message.max.bytes (1 MB): produce() refuses it.
OVERSIZE_BYTES = 2_000_000


class FaultyTotals(running_totals.RunningTotals):
    def __init__(self, output_topic: str) -> None:
        super().__init__(output_topic)
        marker = os.environ.get("STALL_MARKER")
        self.stall_marker = Path(marker) if marker else None
        self.oversized = False
        self.revoked: list[int] = []

    def process(self, batch: Batch) -> None:
        super().process(batch)
        keys = {record.key for record in batch.records}
        if b"oversize" in keys and not self.oversized:
            self.oversized = True
            batch.emit(self.output_topic, b"oversize", b"x" * OVERSIZE_BYTES)
        if b"stall" in keys and self.stall_marker is not None and not self.stall_marker.exists():
            time.sleep(SEND_S)
            self.stall_marker.touch()
            time.sleep(STALL_S)

    def on_partition_revoked(self, partition: int) -> None:
        print(f"handler: partition {partition} revoked", flush=True)


if __name__ == "__main__":
    running_totals.RunningTotals = FaultyTotals  # type: ignore[misc]
    sys.exit(running_totals.main())
