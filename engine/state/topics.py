"""The runtime's topics (ARCHITECTURE.md, "Topics and records")."""

from __future__ import annotations

from confluent_kafka.admin import AdminClient

from engine.state.config import Settings
from streams.topics import DAY_MS, TopicSpec, ensure_topics

INBOX, HISTORY, ACTIVITIES, STATUS, DLQ = "inbox", "history", "activities", "status", "dlq"


def workflow_topics(settings: Settings) -> list[TopicSpec]:
    """Inbox, history and status share keys (instance IDs), so they are co-partitioned."""
    n = settings.partitions
    rf = settings.replication_factor
    return [
        TopicSpec(settings.topic(INBOX), n, {"retention.ms": str(7 * DAY_MS)}, rf),
        # The history is the truth: kept forever.
        TopicSpec(settings.topic(HISTORY), n, {"retention.ms": "-1", "retention.bytes": "-1"}, rf),
        TopicSpec(settings.topic(STATUS), n, {"cleanup.policy": "compact"}, rf),
        TopicSpec(settings.topic(ACTIVITIES), n, {"retention.ms": str(7 * DAY_MS)}, rf, co_partitioned=False),
        TopicSpec(settings.topic(DLQ), n, {"retention.ms": str(30 * DAY_MS)}, rf, co_partitioned=False),
    ]


def ensure_workflow_topics(settings: Settings) -> None:
    """Create the runtime's topics where missing; verify the co-partitioned ones agree."""
    ensure_topics(AdminClient(settings.client()), workflow_topics(settings))
