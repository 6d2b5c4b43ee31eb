"""Running totals stay exact across SIGKILLs and a lost state folder (real broker, real subprocesses)."""

from __future__ import annotations

import logging
import random
import shutil
from pathlib import Path

from totals_harness import (
    ProcessorProcess,
    TopicReader,
    TotalsTopics,
    assert_exactly_once,
    cleaned_up,
    increments,
    prefix_sums,
    produce_increments,
    stored_totals,
)

log = logging.getLogger(__name__)


def final_totals(pairs: list[tuple[bytes, int]]) -> dict[bytes, int]:
    return {key: sums[-1] for key, sums in prefix_sums(pairs).items()}


def test_totals_are_exact_after_three_kills(kafka_bootstrap: str, topic_prefix: str, tmp_path: Path) -> None:
    topics = TotalsTopics.create(kafka_bootstrap, topic_prefix)
    pairs = increments(20_000, keys=300, seed=11)
    produce_increments(kafka_bootstrap, topics.input, pairs)
    group, state = f"{topic_prefix}.totals", tmp_path / "state"
    # Small transactions: more of them, so a kill lands inside one.
    proc = ProcessorProcess(kafka_bootstrap, topics, group, state, "p1", tmp_path, "--max-batch-records", "100")
    output = TopicReader(kafka_bootstrap, topics.output)
    rng = random.Random()
    thresholds = sorted(rng.sample(range(1_000, 17_000), 3))
    try:
        proc.start()
        for threshold in thresholds:
            output.wait_for(threshold, alive=proc)
            proc.kill()
            log.info("killed after %d committed totals; restarting", len(output.records))
            proc.start()
        output.wait_for(len(pairs), alive=proc)
        output.poll(1.0)  # a duplicate would show up as an extra record
        assert_exactly_once(output.by_key, pairs)
        assert proc.stop() == 0
        assert stored_totals(state, group, topics.input) == final_totals(pairs)
    except BaseException:
        print(f"kill thresholds {thresholds}\n{proc.logs()}")
        raise
    finally:
        if proc.alive():
            proc.kill()
        output.close()


def test_lost_state_folder_is_rebuilt_from_the_changelog(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    topics = TotalsTopics.create(kafka_bootstrap, topic_prefix)
    first, second = increments(6_000, keys=100, seed=3), increments(4_000, keys=100, seed=4)
    group, state = f"{topic_prefix}.totals", tmp_path / "state"
    proc = ProcessorProcess(kafka_bootstrap, topics, group, state, "p1", tmp_path)
    output = TopicReader(kafka_bootstrap, topics.output)
    with cleaned_up(proc, output=output):
        produce_increments(kafka_bootstrap, topics.input, first)
        proc.start()
        output.wait_for(len(first), alive=proc)
        assert proc.stop() == 0
        shutil.rmtree(state)
        produce_increments(kafka_bootstrap, topics.input, second)
        proc.start()
        output.wait_for(len(first) + len(second), alive=proc)
        output.poll(1.0)
        assert_exactly_once(output.by_key, first + second)
        assert proc.stop() == 0
        assert "restored" in proc.log_path.read_text()
        assert stored_totals(state, group, topics.input) == final_totals(first + second)
