"""Prometheus metrics of the stream processors: transactions, restores, lag, dead letters.

Generic: the labels name consumer groups, topics and partitions, never records or keys, so
the cardinality is bounded by the deployment's topology. The processor, the restorer and
any consumer call the small functions below at clear points; each is a no-op once
``disable()`` has been called (for measuring what the metrics cost).

Consumer lag comes from librdkafka's own statistics (``statistics.interval.ms``): a
consumer built from ``reporting_lag(settings)`` exports its per-partition lag every
``STATS_INTERVAL_MS`` without a single extra request to the brokers.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

log = logging.getLogger("streams.metrics")

# librdkafka's statistics are a JSON document per client; every 5 s keeps the lag fresh
# enough for a dashboard at the cost of one parse per client per 5 s.
STATS_INTERVAL_MS = 5000
# Transaction commits take milliseconds on a healthy broker and seconds on a struggling one.
COMMIT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# A restore takes from milliseconds (an empty partition) to many minutes (a long history).
RESTORE_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0)

TRANSACTIONS = Counter(
    "streams_transactions_total", "Kafka transactions of a processor, by outcome (committed or aborted).",
    ["group", "outcome"])
COMMIT_SECONDS = Histogram(
    "streams_transaction_commit_seconds", "Time to commit one transaction (offsets included).",
    ["group"], buckets=COMMIT_BUCKETS)
DEAD_LETTERS = Counter(
    "streams_dead_letters_total", "Records sent to a dead-letter topic, by the door that refused them and why.",
    ["door", "reason"])
RESTORE_REMAINING = Gauge(
    "streams_restore_remaining_records", "Changelog records still to read before a partition's store is restored.",
    ["topic", "partition"])
RESTORED_RECORDS = Counter(
    "streams_restored_records_total", "Changelog records read into stores by restores.", ["topic"])
RESTORE_SECONDS = Histogram(
    "streams_restore_seconds", "Duration of a partition's restore from its changelog.",
    ["topic"], buckets=RESTORE_BUCKETS)
CONSUMER_LAG = Gauge(
    "streams_consumer_lag_records", "Records of a partition not yet consumed by a group (librdkafka's view).",
    ["group", "topic", "partition"])

_enabled = True


def disable() -> None:
    """Turn every function of this module into a no-op (the metrics keep their last values)."""
    global _enabled
    _enabled = False


def enabled() -> bool:
    """Whether metrics are being recorded."""
    return _enabled


def transaction_committed(group: str, seconds: float) -> None:
    """One transaction of ``group`` committed after ``seconds`` of commit call."""
    if _enabled:
        TRANSACTIONS.labels(group, "committed").inc()
        COMMIT_SECONDS.labels(group).observe(seconds)


def transaction_aborted(group: str) -> None:
    if _enabled:
        TRANSACTIONS.labels(group, "aborted").inc()


def dead_lettered(door: str, reason: str) -> None:
    """A record refused by ``door`` (a group or component name) for ``reason`` (an error type)."""
    if _enabled:
        DEAD_LETTERS.labels(door, reason).inc()


def restore_progress(topic: str, partition: int, remaining: int, records: int = 0) -> None:
    """``remaining`` records are left to restore of ``topic``-``partition``; ``records`` were just read."""
    if _enabled:
        RESTORE_REMAINING.labels(topic, str(partition)).set(max(0, remaining))
        if records:
            RESTORED_RECORDS.labels(topic).inc(records)


def restore_finished(topic: str, partition: int, seconds: float) -> None:
    if _enabled:
        RESTORE_REMAINING.labels(topic, str(partition)).set(0)
        RESTORE_SECONDS.labels(topic).observe(seconds)


def reporting_lag(settings: dict[str, Any]) -> dict[str, Any]:
    """Consumer ``settings`` plus what exports its per-partition lag as ``streams_consumer_lag_records``."""
    if not _enabled:
        return settings
    return {**settings, "statistics.interval.ms": STATS_INTERVAL_MS,
            "stats_cb": _stats_callback(str(settings.get("group.id", "")))}


def consumer_lags(stats: dict[str, Any]) -> dict[tuple[str, int], int]:
    """The lag of each assigned (topic, partition) in one librdkafka statistics document.

    librdkafka reports -1 where it does not know the lag yet (no position or no high
    watermark), and lists unassigned partitions too (and the internal partition -1): those
    are left out.
    """
    lags: dict[tuple[str, int], int] = {}
    for topic, info in (stats.get("topics") or {}).items():
        for number, partition in (info.get("partitions") or {}).items():
            lag = partition.get("consumer_lag", -1)
            if int(number) < 0 or lag is None or lag < 0 or partition.get("fetch_state") in (None, "none"):
                continue
            lags[(topic, int(number))] = int(lag)
    return lags


def _stats_callback(group: str) -> Callable[[str], None]:
    known: set[tuple[str, int]] = set()

    def on_stats(document: str) -> None:
        try:
            lags = consumer_lags(json.loads(document))
        except (ValueError, AttributeError, TypeError) as err:  # a malformed document: skip one sample
            log.debug("unreadable librdkafka statistics: %s", err)
            return
        for (topic, partition), lag in lags.items():
            CONSUMER_LAG.labels(group, topic, str(partition)).set(lag)
        # A partition this consumer no longer owns is reported by its new owner.
        for topic, partition in known - lags.keys():
            try:
                CONSUMER_LAG.remove(group, topic, str(partition))
            except KeyError:
                pass
        known.clear()
        known.update(lags)

    return on_stats
