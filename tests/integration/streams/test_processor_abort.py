"""A failed transaction is aborted and its batch replayed from the committed offsets, once."""

from __future__ import annotations

import json
from pathlib import Path

from totals_harness import (
    ProcessorProcess,
    TopicReader,
    TotalsTopics,
    assert_exactly_once,
    cleaned_up,
    increments,
    produce,
)


def test_failed_transaction_is_aborted_and_replayed(kafka_bootstrap: str, topic_prefix: str, tmp_path: Path) -> None:
    topics = TotalsTopics.create(kafka_bootstrap, topic_prefix)
    pairs = [*increments(400, keys=20, seed=1), (b"oversize", 3), *increments(400, keys=20, seed=2)]
    produce(kafka_bootstrap, topics.input, [(key, json.dumps({"amount": a}).encode()) for key, a in pairs])
    proc = ProcessorProcess(kafka_bootstrap, topics, f"{topic_prefix}.totals", tmp_path / "state", "p1", tmp_path,
                            module="faulty_totals")
    output = TopicReader(kafka_bootstrap, topics.output)
    with cleaned_up(proc, output=output):
        proc.start()
        output.wait_for(len(pairs), alive=proc)
        output.poll(1.0)
        assert_exactly_once(output.by_key, pairs)
        assert proc.stop() == 0
        log = proc.log_path.read_text()
        assert "transaction aborted" in log
        assert "handler: partition" in log  # the handler was told to drop what the batch cached
