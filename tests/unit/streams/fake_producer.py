"""A transactional writer whose producers are fakes that record each call and fail on request."""

from __future__ import annotations

from typing import Any

from confluent_kafka import KafkaError, KafkaException

from streams.transaction import TransactionalWriter


class FakeProducer:
    """Records the transactional calls; ``fail`` maps a call's name to the error it raises."""

    def __init__(self, fail: dict[str, KafkaError]) -> None:
        self.fail = fail
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        def call(*_: Any, **__: Any) -> None:
            self.calls.append(name)
            if name in self.fail:
                raise KafkaException(self.fail[name])

        return call


class FakeWriter(TransactionalWriter):
    def __init__(self, fails: list[dict[str, KafkaError]]) -> None:
        self.fails = fails
        self.producers: list[FakeProducer] = []
        super().__init__({"transactional.id": "group-p1"})

    def _new_producer(self) -> Any:
        self.producers.append(FakeProducer(self.fails.pop(0) if self.fails else {}))
        return self.producers[-1]
