"""ProcessorConfig: identity, store folders and the client settings that EOS depends on."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.handler import Batch
from streams.processor import ProcessorConfig


def config(**client: str) -> ProcessorConfig:
    return ProcessorConfig(
        group_id="orders",
        input_topic="orders.in",
        changelog_topic="orders.changelog",
        dlq_topic="orders.dlq",
        state_dir=Path("/state"),
        process_id="host-1",
        client={"bootstrap.servers": "b:9092", **client},
    )


def test_transactional_id_is_stable_per_group_and_process() -> None:
    assert config().transactional_id == "orders-host-1"
    assert config().producer_settings()["transactional.id"] == "orders-host-1"


def test_store_folder_per_group_topic_and_partition() -> None:
    assert config().store_folder(3) == Path("/state/orders/orders.in-3")


def test_exactly_once_consumer_settings_win_over_the_base_client() -> None:
    settings = config(**{"isolation.level": "read_uncommitted", "enable.auto.commit": "true"}).consumer_settings()
    assert settings["isolation.level"] == "read_committed"
    assert settings["enable.auto.commit"] is False
    assert settings["auto.offset.reset"] == "earliest"
    assert settings["group.id"] == "orders"
    assert settings["bootstrap.servers"] == "b:9092"
    assert settings["heartbeat.interval.ms"] < settings["session.timeout.ms"]


def test_producer_defaults_can_be_tuned_but_not_the_identity() -> None:
    settings = config(**{"linger.ms": "1", "transactional.id": "random"}).producer_settings()
    assert settings["linger.ms"] == "1"
    assert settings["transactional.id"] == "orders-host-1"
    assert config().producer_settings()["partitioner"] == "murmur2_random"


def test_emit_changelog_without_a_changelog_topic_says_so(tmp_path: Path) -> None:
    batch = Batch(0, None, [], None, None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="changelog_topic"):
        batch.emit_changelog(b"k", b"v")


def test_membership_is_static_cooperative_with_a_short_session() -> None:
    settings = config().consumer_settings()
    # The member's ID is the transactional ID: a taker reads it to know which owners have gone.
    assert settings["group.instance.id"] == "orders-host-1"
    assert settings["partition.assignment.strategy"] == "cooperative-sticky"
    # Heartbeats three times per session; the broker's group.min.session.timeout.ms is 1 s.
    assert 1000 <= settings["session.timeout.ms"] <= 3000
    assert settings["heartbeat.interval.ms"] * 3 <= settings["session.timeout.ms"]
