"""Processor metrics: librdkafka statistics read into per-partition lag, transactions, dead letters."""

from __future__ import annotations

import json

from prometheus_client import REGISTRY

from streams import metrics


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


STATS = {
    "name": "rdkafka#consumer-1",
    "topics": {
        "p.inbox": {"partitions": {
            "0": {"fetch_state": "active", "consumer_lag": 12},
            "1": {"fetch_state": "active", "consumer_lag": -1},  # not known yet
            "2": {"fetch_state": "none", "consumer_lag": 40},  # not assigned here
            "-1": {"fetch_state": "none", "consumer_lag": -1},  # librdkafka's internal partition
        }},
    },
}


def test_lag_is_read_for_assigned_partitions_with_a_known_lag() -> None:
    assert metrics.consumer_lags(STATS) == {("p.inbox", 0): 12}
    assert metrics.consumer_lags({}) == {}


def test_a_consumer_reporting_lag_exports_it_and_forgets_partitions_it_lost() -> None:
    settings = metrics.reporting_lag({"group.id": "g-lag", "bootstrap.servers": "x"})
    assert settings["statistics.interval.ms"] == metrics.STATS_INTERVAL_MS
    assert settings["bootstrap.servers"] == "x"
    on_stats = settings["stats_cb"]
    on_stats(json.dumps(STATS))
    assert value("streams_consumer_lag_records", group="g-lag", topic="p.inbox", partition="0") == 12
    on_stats(json.dumps({"topics": {"p.inbox": {"partitions": {"3": {"fetch_state": "active", "consumer_lag": 1}}}}}))
    assert REGISTRY.get_sample_value("streams_consumer_lag_records",
                                     {"group": "g-lag", "topic": "p.inbox", "partition": "0"}) is None
    assert value("streams_consumer_lag_records", group="g-lag", topic="p.inbox", partition="3") == 1
    on_stats("not json")  # skipped, not raised


def test_transactions_dead_letters_and_restores_are_counted() -> None:
    before = [value("streams_transactions_total", group="g-t", outcome="committed"),
              value("streams_transactions_total", group="g-t", outcome="aborted"),
              value("streams_dead_letters_total", door="g-t", reason="SerdeError"),
              value("streams_restored_records_total", topic="g-t.history")]
    metrics.transaction_committed("g-t", 0.004)
    metrics.transaction_aborted("g-t")
    metrics.dead_lettered("g-t", "SerdeError")
    metrics.restore_progress("g-t.history", 3, remaining=90, records=10)
    assert value("streams_restore_remaining_records", topic="g-t.history", partition="3") == 90
    metrics.restore_finished("g-t.history", 3, 1.5)
    after = [value("streams_transactions_total", group="g-t", outcome="committed"),
             value("streams_transactions_total", group="g-t", outcome="aborted"),
             value("streams_dead_letters_total", door="g-t", reason="SerdeError"),
             value("streams_restored_records_total", topic="g-t.history")]
    assert [a - b for a, b in zip(after, before, strict=True)] == [1, 1, 1, 10]
    assert value("streams_restore_remaining_records", topic="g-t.history", partition="3") == 0
    assert value("streams_restore_seconds_count", topic="g-t.history") >= 1
    assert value("streams_transaction_commit_seconds_bucket", group="g-t", le="0.005") >= 1
