"""The client's wait for a command's acknowledgement: one thread at a time serves the
producer for every caller, the others wait on their own acknowledgement."""

from __future__ import annotations

import threading
import time
from typing import Any

from engine.api.client import WorkflowClient
from engine.core.clock import now_utc
from engine.core.history import EventRaised, HistoryEvent
from engine.state.config import Settings

CALLERS = 8


class StandInProducer:
    """Acknowledges what was produced when flushed; counts the flushes running at once."""

    def __init__(self) -> None:
        self.pending: list[Any] = []
        self.lock = threading.Lock()
        self.flushing = 0
        self.most_at_once = 0

    def produce(self, topic: str, key: bytes, value: bytes, on_delivery: Any, headers: Any = None) -> None:
        with self.lock:
            self.pending.append(on_delivery)

    def flush(self, timeout: float) -> int:
        with self.lock:
            self.flushing += 1
            self.most_at_once = max(self.most_at_once, self.flushing)
        time.sleep(0.005)  # the broker's round trip
        with self.lock:
            acknowledged, self.pending = self.pending, []
            self.flushing -= 1
        for report in acknowledged:
            report(None, None)
        return 0


def test_concurrent_callers_share_one_flush_and_each_sees_its_acknowledgement() -> None:
    client = WorkflowClient(settings=Settings(bootstrap_servers="127.0.0.1:1"))
    real = client._producer
    producer = StandInProducer()
    client._producer = producer  # type: ignore[assignment]
    client._topics_ready = True
    go = threading.Barrier(CALLERS)
    errors: list[BaseException] = []

    def call(n: int) -> None:
        try:
            go.wait(5)
            for _ in range(5):
                client._produce(HistoryEvent(f"i{n}", "", -1, now_utc(), EventRaised("e", None)))
        except BaseException as err:  # reported by the test thread
            errors.append(err)

    threads = [threading.Thread(target=call, args=(n,)) for n in range(CALLERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    real.close()
    assert errors == []
    assert producer.pending == []
    assert producer.most_at_once == 1, f"{producer.most_at_once} threads flushed at once"
