"""One partition of an orchestrator without Kafka (``streams.testing.HandlerHarness``), with
readers for what it emitted: history, statuses, activity tasks, inbox records, dead letters.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from engine.core.history import HistoryEvent
from engine.orchestration.app_topics import AppTopics
from engine.orchestration.orchestrator import Orchestrator
from engine.replay.registry import Registry
from engine.state.codec import ActivityTask, StatusRecord, decode_event, decode_status, decode_task, encode_event
from engine.state.config import MIB, Settings
from streams.handler import Headers
from streams.testing import Emitted, HandlerHarness, Incoming, Turn

PREFIX = "kwf"


@dataclass
class Delivered:
    """What one batch emitted, by kind (statuses as their raw values: None is a tombstone)."""

    history: list[HistoryEvent] = field(default_factory=list)
    inbox: list[HistoryEvent] = field(default_factory=list)
    tasks: list[ActivityTask] = field(default_factory=list)
    statuses: list[bytes | None] = field(default_factory=list)


class OrchestratorHarness:
    """Partition 0 of 1 of an orchestrator over a store in ``folder`` (of application ``app_id``;
    ``app_topics`` builds its view of other applications' topics from its settings)."""

    def __init__(self, registry: Registry, folder: Path, *, max_payload_bytes: int = MIB, app_id: str = "",
                 app_topics: Callable[[Settings], AppTopics] | None = None) -> None:
        self.settings = Settings(topic_prefix=PREFIX, app_id=app_id, partitions=1, state_dir=folder,
                                 process_id="test", max_payload_bytes=max_payload_bytes)
        self.orchestrator = Orchestrator(self.settings, registry, partitions=1,
                                         app_topics=None if app_topics is None else app_topics(self.settings))
        self.driven = HandlerHarness(self.orchestrator, folder / "inbox-0", input_topic=self.settings.topic("inbox"))
        self.orchestrator.on_partition_ready(0, self.driven.store)
        self.emitted: list[Emitted] = []
        self.history: list[HistoryEvent] = []  # every committed history event, in order (no tombstones)
        self._last_history = 0  # how many of them the latest batch added

    def close(self) -> None:
        self.driven.close()

    def feed(self, events: Iterable[HistoryEvent | tuple[HistoryEvent, Headers]]) -> list[Emitted]:
        """One committed transaction over these inbox events (optionally with record headers)."""
        items = []
        for item in events:
            event, headers = item if isinstance(item, tuple) else (item, None)
            items.append(Incoming(event, event.instance_id.encode(), headers))
        return self._keep(self.driven.process(*items))

    def deliver(self, *events: HistoryEvent) -> Delivered:
        """Like ``feed``, but each event goes through the inbox's ``decode`` door first (which
        raises where the processor would dead-letter the record); returns what came out by kind.
        """
        inbox = self.settings.topic("inbox")
        decoded = [self.orchestrator.decode(inbox, e.instance_id.encode(), encode_event(e)) for e in events]
        out = Delivered()
        for e in self.feed(decoded):
            if e.topic == inbox:
                out.inbox.append(decode_event(e.value))
            elif e.topic == self.settings.topic("activities"):
                out.tasks.append(decode_task(e.value))
            elif e.topic == self.settings.topic("status"):
                out.statuses.append(e.value)
        out.history = self.history[len(self.history) - self._last_history:]
        return out

    def punctuate(self, now_ms: int) -> list[Emitted]:
        """One punctuation at ``now_ms`` (fires the timers due by then)."""
        return self._keep(self.driven.punctuate(now_ms))

    def _keep(self, turn: Turn) -> list[Emitted]:
        self.emitted += turn.emitted
        # Tombstones (a purge, a superseded execution) are deletions, not history events.
        fresh = [decoded if decoded is not None else decode_event(value) for _, value, decoded in turn.changelog
                 if decoded is not None or value is not None]
        self.history += fresh
        self._last_history = len(fresh)
        return turn.emitted

    # -- reading what came out -----------------------------------------------------------

    def statuses(self, emitted: list[Emitted] | None = None) -> list[StatusRecord]:
        return [decode_status(e.value) for e in (self.emitted if emitted is None else emitted)
                if e.topic == self.settings.topic("status") and e.value is not None]

    def status(self, instance_id: str) -> StatusRecord | None:
        found = [s for s in self.statuses() if s.instance_id == instance_id]
        return found[-1] if found else None

    def tasks(self, emitted: list[Emitted] | None = None) -> list[ActivityTask]:
        return [decode_task(e.value) for e in (self.emitted if emitted is None else emitted)
                if e.topic == self.settings.topic("activities")]

    def dead_letters(self, emitted: list[Emitted] | None = None) -> list[Emitted]:
        return [e for e in (self.emitted if emitted is None else emitted) if e.topic == self.settings.topic("dlq")]


def proposed(instance_id: str, event: Any, execution_id: str = "") -> HistoryEvent:
    """An event as a client, worker or bridge puts it on the inbox."""
    return HistoryEvent(instance_id, execution_id, -1, datetime.now(UTC), event)
