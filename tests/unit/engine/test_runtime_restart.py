"""A processor stopped by a transient Kafka error is started again; anything else stops the runtime."""

from __future__ import annotations

from pathlib import Path

import pytest
from confluent_kafka import KafkaError, KafkaException

from engine import runtime as runtime_module
from engine.runtime import WorkflowRuntime, transient
from engine.state.config import Settings
from streams.transaction import ProcessorFenced


def kafka_error(code: int, fatal: bool = False) -> KafkaException:
    return KafkaException(KafkaError(code, "from the test", fatal=fatal))


def test_which_errors_are_transient() -> None:
    assert transient(kafka_error(KafkaError.FENCED_LEADER_EPOCH))  # seen after a broker restart
    assert transient(kafka_error(KafkaError.NOT_COORDINATOR))
    assert transient(kafka_error(KafkaError._TRANSPORT))
    assert not transient(kafka_error(KafkaError._FENCED, fatal=True))
    assert not transient(kafka_error(KafkaError.TOPIC_AUTHORIZATION_FAILED))
    assert not transient(ProcessorFenced("another process took over"))
    assert not transient(ValueError("a bug"))


def make_runtime() -> WorkflowRuntime:
    return WorkflowRuntime(settings=Settings(bootstrap_servers="127.0.0.1:1", state_dir=Path("/tmp/restart"),
                                             process_id="p"))


def test_a_processor_is_started_again_after_a_transient_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime_module, "RESTART_PAUSE_CAP_S", 0.01)
    calls = []

    def processor() -> None:
        calls.append(1)
        if len(calls) < 3:
            raise kafka_error(KafkaError.FENCED_LEADER_EPOCH)

    runtime = make_runtime()
    runtime._spawn("test-processor", processor, restartable=True)
    runtime._threads[0].join(5)
    assert len(calls) == 3 and runtime.failure is None


def test_other_errors_and_endless_restarts_stop_the_runtime(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime_module, "RESTART_PAUSE_CAP_S", 0.01)
    runtime = make_runtime()
    runtime._spawn("bug", lambda: (_ for _ in ()).throw(ValueError("a bug")), restartable=True)
    runtime._threads[0].join(5)
    assert isinstance(runtime.failure, ValueError)

    calls = []

    def always_down() -> None:
        calls.append(1)
        raise kafka_error(KafkaError._TRANSPORT)

    runtime = make_runtime()
    runtime._spawn("down", always_down, restartable=True)
    runtime._threads[0].join(5)
    assert len(calls) == runtime_module.MAX_RESTARTS_IN_A_ROW + 1
    assert isinstance(runtime.failure, KafkaException)
