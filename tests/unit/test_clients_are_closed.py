"""Every owner of a Kafka client closes it: a client left to the garbage collector keeps
reconnecting (and logging "Connection refused") after its broker has gone, as long as
anything, a traceback or a framework's cache, still references it.
"""

from __future__ import annotations

from typing import Any

import pytest

import engine.api.client
import streams.restore
import streams.transaction
from engine.api.client import WorkflowClient
from engine.state.config import Settings
from streams.restore import ChangelogRestorer
from streams.transaction import TransactionalWriter


class FakeClient:
    """Records what is asked of a producer, consumer or admin client."""

    made: list[FakeClient] = []

    def __init__(self, settings: Any = None) -> None:
        self.calls: list[str] = []
        FakeClient.made.append(self)

    def flush(self, *_: Any) -> int:
        self.calls.append("flush")
        return 0

    def close(self, *_: Any) -> None:
        self.calls.append("close")


@pytest.fixture(autouse=True)
def fakes(monkeypatch: pytest.MonkeyPatch) -> None:
    FakeClient.made = []
    monkeypatch.setattr(engine.api.client, "Producer", FakeClient)
    monkeypatch.setattr(streams.transaction, "Producer", FakeClient)
    monkeypatch.setattr(streams.restore, "Consumer", FakeClient)
    monkeypatch.setattr(streams.restore, "AdminClient", FakeClient)


def test_a_workflow_client_closes_its_producer() -> None:
    client = WorkflowClient(settings=Settings())
    client.close()
    client.close()  # twice is harmless
    assert FakeClient.made[0].calls == ["flush", "close"]


def test_a_transactional_writer_closes_its_producer() -> None:
    writer = TransactionalWriter({"transactional.id": "t"})
    writer.close()
    assert FakeClient.made[0].calls[-1] == "close"


def test_a_changelog_restorer_closes_its_consumer_and_lets_go_of_its_admin_client() -> None:
    restorer = ChangelogRestorer({"bootstrap.servers": "x"}, "changelog")
    admin, consumer = FakeClient.made
    restorer.close()
    assert consumer.calls == ["close"]
    assert not any(ref is admin for ref in vars(restorer).values())
