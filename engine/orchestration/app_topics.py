"""Where the orchestrator sends what is for another application: its inbox and its task queue.

Each application has its own topics (``Settings.app_topic``). A call to another one goes
straight to that application's inbox (a child workflow's start) or activities topic (an
activity task), in the orchestrator's own transaction. The first record for an application
creates its topics where missing, with this runtime's specs, as its own runtime would: a
call to an application that no process runs yet waits there until one starts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from engine.state.config import Settings
from engine.state.topics import ACTIVITIES, INBOX, ensure_app_topics


class AppTopics:
    """Other applications' topic names, and their inbox partition counts, looked up once each.

    Args:
        settings: This runtime's settings (the prefix, and the specs of topics it creates).
        ensure: Creates an application's topics where missing and returns its inbox's
            partition count (a stand-in in unit tests).
    """

    def __init__(self, settings: Settings, ensure: Callable[[Settings], int] = ensure_app_topics) -> None:
        self.settings = settings
        self._ensure = ensure
        self._inbox_partitions: dict[str, int] = {}

    def inbox(self, app_id: str) -> tuple[str, int]:
        """The inbox of ``app_id`` and its partition count (records are placed by murmur2 over it)."""
        return self.settings.app_topic(app_id, INBOX), self._ready(app_id)

    def activities(self, app_id: str) -> str:
        """The activities topic of ``app_id``: that application's task queue."""
        self._ready(app_id)
        return self.settings.app_topic(app_id, ACTIVITIES)

    def _ready(self, app_id: str) -> int:
        partitions = self._inbox_partitions.get(app_id)
        if partitions is None:
            # Once per application and process: a blocking admin call, inside the batch's
            # transaction, well within its timeout.
            partitions = self._inbox_partitions[app_id] = self._ensure(replace(self.settings, app_id=app_id))
        return partitions
