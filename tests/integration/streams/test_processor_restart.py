"""A restarted process (same process_id) fences its killed predecessor instead of waiting it out."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from totals_harness import (
    ProcessorProcess,
    TopicReader,
    TotalsTopics,
    assert_exactly_once,
    increments,
    produce_increments,
)

log = logging.getLogger(__name__)

TRANSACTION_TIMEOUT_MS = 60_000
# Group rejoin (session timeout 2 s) plus start-up; far below the transaction timeout that
# a process with a new transactional id would have to wait for.
MAX_RESTART_S = 15.0


def test_restart_is_not_stalled_by_the_predecessors_open_transaction(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    topics = TotalsTopics.create(kafka_bootstrap, topic_prefix)
    pairs = increments(12_000, keys=200, seed=5)
    produce_increments(kafka_bootstrap, topics.input, pairs)
    proc = ProcessorProcess(
        kafka_bootstrap, topics, f"{topic_prefix}.totals", tmp_path / "state", "p1", tmp_path,
        "--transaction-timeout-ms", str(TRANSACTION_TIMEOUT_MS), "--max-batch-records", "100",
    )
    output = TopicReader(kafka_bootstrap, topics.output)
    try:
        proc.start()
        output.wait_for(3_000, alive=proc)
        proc.kill()  # mid-run: its last transaction is left open
        output.poll(1.0)  # everything committed before the kill
        before = len(output.records)
        restarted = time.monotonic()
        proc.start()
        output.wait_for(before + 1, timeout=TRANSACTION_TIMEOUT_MS / 1000, alive=proc)
        elapsed = time.monotonic() - restarted
        log.warning("first output %.1f s after the restart (transaction timeout %d s)",
                    elapsed, TRANSACTION_TIMEOUT_MS // 1000)
        print(f"first output {elapsed:.1f} s after the restart")
        assert elapsed < MAX_RESTART_S
        output.wait_for(len(pairs), alive=proc)
        output.poll(1.0)
        assert_exactly_once(output.by_key, pairs)
        assert proc.stop() == 0
    except BaseException:
        print(proc.logs())
        raise
    finally:
        if proc.alive():
            proc.kill()
        output.close()
