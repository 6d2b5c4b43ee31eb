"""Another process takes a killed one's partitions and fences the transaction it left open."""

from __future__ import annotations

import json
import time
from pathlib import Path

from totals_harness import (
    WAIT_S,
    ProcessorProcess,
    TopicReader,
    TotalsTopics,
    assert_exactly_once,
    increments,
    produce,
    produce_increments,
)

# Far longer than the test waits: the stalled partition's output can only come from the
# taker fencing the dead producer, never from the broker timing its transaction out.
TRANSACTION_TIMEOUT_MS = 600_000


def test_a_taker_fences_the_open_transaction_of_a_killed_owner_with_another_id(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    topics = TotalsTopics.create(kafka_bootstrap, topic_prefix)
    before, after = increments(2_000, keys=200, seed=7), increments(2_000, keys=200, seed=8)
    group = f"{topic_prefix}.totals"
    marker = tmp_path / "stalled"
    timeout = ("--transaction-timeout-ms", str(TRANSACTION_TIMEOUT_MS))
    owner = ProcessorProcess(kafka_bootstrap, topics, group, tmp_path / "state-1", "p1", tmp_path, *timeout,
                             module="faulty_totals", env={"STALL_MARKER": str(marker)})
    taker = ProcessorProcess(kafka_bootstrap, topics, group, tmp_path / "state-2", "p2", tmp_path, *timeout)
    output = TopicReader(kafka_bootstrap, topics.output)
    try:
        produce_increments(kafka_bootstrap, topics.input, before)
        owner.start()
        # Every partition has a commit of p1 behind it (naming p1) before the stall.
        output.wait_for(len(before), alive=owner)
        produce(kafka_bootstrap, topics.input, [(b"stall", json.dumps({"amount": 1}).encode())])
        produce_increments(kafka_bootstrap, topics.input, after)
        deadline = time.monotonic() + WAIT_S
        while not marker.exists():
            assert time.monotonic() < deadline and owner.alive(), "the owner never reached the stall record"
            output.poll(0.1)
        owner.kill()  # its transaction, with the stall record's output, stays open at the broker
        taker.start()
        everything = [*before, (b"stall", 1), *after]
        output.wait_for(len(everything), alive=taker)
        output.poll(1.0)
        assert_exactly_once(output.by_key, everything)
        assert f"fenced the producer of departed {group}-p1" in taker.logs()
        assert taker.stop() == 0
    except BaseException:
        print(owner.logs())
        print(taker.logs())
        raise
    finally:
        for proc in (owner, taker):
            if proc.alive():
                proc.kill()
        output.close()
