"""Two processes share the partitions; one is killed and the other takes its partitions over."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from totals_harness import (
    ProcessorProcess,
    TopicReader,
    TotalsTopics,
    assert_exactly_once,
    cleaned_up,
    increments,
    produce_increments,
)

log = logging.getLogger(__name__)

# The killed process's open transaction blocks its partitions until the broker aborts it:
# after this timeout plus the broker's check interval (10 s by default).
TRANSACTION_TIMEOUT_MS = 5_000
# Input arrives over a few seconds, so the kill lands while both processes are busy.
CHUNKS, CHUNK_PAUSE_S = 24, 0.25


def test_survivor_takes_over_and_totals_stay_exact(kafka_bootstrap: str, topic_prefix: str, tmp_path: Path) -> None:
    topics = TotalsTopics.create(kafka_bootstrap, topic_prefix)
    pairs = increments(12_000, keys=300, seed=9)
    group = f"{topic_prefix}.totals"
    extra = ("--transaction-timeout-ms", str(TRANSACTION_TIMEOUT_MS), "--max-batch-records", "100")
    first = ProcessorProcess(kafka_bootstrap, topics, group, tmp_path / "state-a", "pa", tmp_path, *extra)
    second = ProcessorProcess(kafka_bootstrap, topics, group, tmp_path / "state-b", "pb", tmp_path, *extra)
    output = TopicReader(kafka_bootstrap, topics.output)
    size = len(pairs) // CHUNKS

    def feed() -> None:
        for start in range(0, len(pairs), size):
            produce_increments(kafka_bootstrap, topics.input, pairs[start:start + size])
            time.sleep(CHUNK_PAUSE_S)

    feeder = threading.Thread(target=feed, daemon=True)
    with cleaned_up(first, second, output=output):
        first.start()
        second.start()
        feeder.start()
        output.wait_for(len(pairs) // 3, alive=second)
        assert "assigned" in first.log_path.read_text() and "assigned" in second.log_path.read_text()
        first.kill()
        killed_at = time.monotonic()
        feeder.join()
        output.wait_for(len(pairs), alive=second)
        log.warning("survivor finished %.1f s after the kill", time.monotonic() - killed_at)
        output.poll(1.0)
        assert_exactly_once(output.by_key, pairs)
        assert second.stop() == 0
        survivor_log = second.log_path.read_text()
        assert "restored" in survivor_log, "the survivor should have restored the partitions it took over"
