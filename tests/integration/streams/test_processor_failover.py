"""Another process takes a killed one's partitions and fences the transaction it left open."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from totals_harness import (
    PARTITIONS,
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

from engine.core.partitioner import partition_for

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
    with cleaned_up(owner, taker, output=output):
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


RESTORED = re.compile(r"restored \S+-(\d+): (\d+) records")
ASSIGNED = re.compile(r"assigned \S+ partitions \[([\d, ]+)\]")
# After the standby says it follows the other's partitions: reading a few thousand
# records takes well under this, so the takeover below finds the copy warm.
STANDBY_CATCH_UP_S = 5.0


def test_a_standby_copy_makes_the_takeover_read_only_the_tail(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    topics = TotalsTopics.create(kafka_bootstrap, topic_prefix)
    before, after = increments(4_000, keys=400, seed=9), increments(500, keys=400, seed=10)
    group = f"{topic_prefix}.totals"
    standby = ("--standby-replicas", "1")
    owner = ProcessorProcess(kafka_bootstrap, topics, group, tmp_path / "state-1", "p1", tmp_path, *standby)
    taker = ProcessorProcess(kafka_bootstrap, topics, group, tmp_path / "state-2", "p2", tmp_path, *standby)
    output = TopicReader(kafka_bootstrap, topics.output)
    with cleaned_up(owner, taker, output=output):
        owner.start()
        taker.start()
        produce_increments(kafka_bootstrap, topics.input, before)
        output.wait_for(len(before), alive=owner)
        deadline = time.monotonic() + WAIT_S
        while "as a standby" not in taker.logs():
            assert time.monotonic() < deadline and taker.alive(), "the taker never followed the owner's partitions"
            time.sleep(0.2)
        time.sleep(STANDBY_CATCH_UP_S)
        seen_before_kill = taker.log_path.stat().st_size
        owner.kill()
        produce_increments(kafka_bootstrap, topics.input, after)
        everything = [*before, *after]
        output.wait_for(len(everything), alive=taker)
        output.poll(1.0)
        assert_exactly_once(output.by_key, everything)
        # The owner's partitions came to the taker: without the copy their restore would read
        # every changelog record of them (one per increment), with it only what it missed.
        since_kill = taker.log_path.read_text(errors="replace")[seen_before_kill:]
        taken = {int(p) for listed in ASSIGNED.findall(since_kill) for p in listed.split(",")}
        assert taken, "the taker was given none of the owner's partitions"
        restored = sum(int(n) for _, n in RESTORED.findall(since_kill))
        written = sum(1 for key, _ in before if partition_for(key, PARTITIONS) in taken)
        assert restored < written // 10, (taken, restored, written)
        assert taker.stop() == 0
