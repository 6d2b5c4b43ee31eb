"""A restarted process (same process_id) fences its killed predecessor instead of waiting it out."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from totals_harness import (
    WAIT_S,
    ProcessorProcess,
    TopicReader,
    TotalsTopics,
    assert_exactly_once,
    cleaned_up,
    increments,
    produce,
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
    before, after = increments(3_000, keys=200, seed=5), increments(3_000, keys=200, seed=6)
    produce_increments(kafka_bootstrap, topics.input, before)
    produce(kafka_bootstrap, topics.input, [(b"stall", json.dumps({"amount": 1}).encode())])
    produce_increments(kafka_bootstrap, topics.input, after)
    marker = tmp_path / "stalled"
    proc = ProcessorProcess(
        kafka_bootstrap, topics, f"{topic_prefix}.totals", tmp_path / "state", "p1", tmp_path,
        "--transaction-timeout-ms", str(TRANSACTION_TIMEOUT_MS),
        module="faulty_totals", env={"STALL_MARKER": str(marker)},
    )
    output = TopicReader(kafka_bootstrap, topics.output)
    with cleaned_up(proc, output=output):
        proc.start()
        deadline = time.monotonic() + WAIT_S
        while not marker.exists():
            assert time.monotonic() < deadline and proc.alive(), "the processor never reached the stall record"
            output.poll(0.1)
        proc.kill()  # its transaction holding the stall record's output is open at the broker
        output.poll(1.0)  # everything committed before it
        assert b"stall" not in output.by_key
        restarted = time.monotonic()
        proc.start()
        # Only the partition of the stall record waits on the open transaction (its
        # consumed offsets are part of it): time the first output from that partition.
        deadline = restarted + TRANSACTION_TIMEOUT_MS / 1000
        while b"stall" not in output.by_key:
            assert time.monotonic() < deadline and proc.alive(), "no output for the stalled partition"
            output.poll(0.1)
        elapsed = time.monotonic() - restarted
        log.warning("output of the stalled partition %.1f s after the restart (transaction timeout %d s)",
                    elapsed, TRANSACTION_TIMEOUT_MS // 1000)
        assert elapsed < MAX_RESTART_S
        everything = [*before, (b"stall", 1), *after]
        output.wait_for(len(everything), alive=proc)
        output.poll(1.0)
        assert_exactly_once(output.by_key, everything)
        assert proc.stop() == 0
