"""The runtime's topics (ARCHITECTURE.md, "Topics and records")."""

from __future__ import annotations

from confluent_kafka.admin import AdminClient

from engine.state.config import Settings
from streams.topics import DAY_MS, TopicSpec, ensure_topics

INBOX, HISTORY, ACTIVITIES, STATUS, DLQ = "inbox", "history", "activities", "status", "dlq"


# Every topic the runtime creates is stored compressed; producers compress with the same
# codec, so the broker keeps their batches as they are.
COMPRESSION = {"compression.type": "zstd"}
# The compacted topics roll a segment a day and compact it within a day after that (the
# active segment is never compacted), and keep tombstones a day so that a store that was
# briefly behind still sees them: a purged instance leaves them within about two days.
COMPACTED = {
    "cleanup.policy": "compact",
    "segment.ms": str(DAY_MS),
    "max.compaction.lag.ms": str(DAY_MS),
    "delete.retention.ms": str(DAY_MS),
    **COMPRESSION,
}


def workflow_topics(settings: Settings) -> list[TopicSpec]:
    """Inbox, history and status share keys (instance IDs), so they are co-partitioned."""
    n = settings.partitions
    return [
        TopicSpec(settings.topic(INBOX), n, {"retention.ms": str(7 * DAY_MS), **COMPRESSION}),
        # The history is the truth and the store's changelog: compacted on one key per event,
        # it keeps each instance's current execution until a purge (engine.state.history_log).
        TopicSpec(settings.topic(HISTORY), n, {**COMPACTED, "retention.ms": "-1", "retention.bytes": "-1"}),
        TopicSpec(settings.topic(STATUS), n, dict(COMPACTED)),
        TopicSpec(settings.topic(ACTIVITIES), n, {"retention.ms": str(7 * DAY_MS), **COMPRESSION},
                  co_partitioned=False),
        TopicSpec(settings.topic(DLQ), n, {"retention.ms": str(30 * DAY_MS), **COMPRESSION}, co_partitioned=False),
    ]


def ensure_workflow_topics(settings: Settings) -> None:
    """Create the runtime's topics where missing; verify the co-partitioned ones agree."""
    ensure_topics(AdminClient(settings.client()), workflow_topics(settings))
