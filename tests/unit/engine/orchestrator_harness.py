"""One partition of an orchestrator without Kafka (``streams.testing.HandlerHarness``), with
readers for what it emitted: statuses, activity tasks and dead letters.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from engine.core.history import HistoryEvent
from engine.orchestration.orchestrator import Orchestrator
from engine.replay.registry import Registry
from engine.state.codec import ActivityTask, StatusRecord, decode_status, decode_task
from engine.state.config import Settings
from streams.handler import Headers
from streams.testing import Emitted, HandlerHarness, Incoming


class OrchestratorHarness:
    """Partition 0 of 1 of an orchestrator over a store in ``folder``."""

    def __init__(self, registry: Registry, folder: Path) -> None:
        self.settings = Settings(topic_prefix="kwf", state_dir=folder, process_id="test")
        self.orchestrator = Orchestrator(self.settings, registry, partitions=1)
        self.driven = HandlerHarness(self.orchestrator, folder / "inbox-0", input_topic=self.settings.topic("inbox"))
        self.orchestrator.on_partition_ready(0, self.driven.store)
        self.emitted: list[Emitted] = []

    def close(self) -> None:
        self.driven.close()

    def feed(self, events: Iterable[HistoryEvent | tuple[HistoryEvent, Headers]]) -> list[Emitted]:
        """One committed transaction over these inbox events (optionally with record headers)."""
        items = []
        for item in events:
            event, headers = item if isinstance(item, tuple) else (item, None)
            items.append(Incoming(event, event.instance_id.encode(), headers))
        out = self.driven.process(*items).emitted
        self.emitted += out
        return out

    def punctuate(self, now_ms: int) -> list[Emitted]:
        """One punctuation at ``now_ms`` (fires the timers due by then)."""
        out = self.driven.punctuate(now_ms).emitted
        self.emitted += out
        return out

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
