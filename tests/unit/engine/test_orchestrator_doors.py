"""The orchestrator decides what an event for an unknown instance is, and suspends deferred starts
(``OrchestratorHarness``, without Kafka)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from engine.core.clock import now_utc
from engine.core.history import (
    EventRaised,
    ExecutionResumed,
    ExecutionStarted,
    ExecutionSuspended,
    ExecutionTerminated,
    HistoryEvent,
    WorkflowStatus,
)
from engine.replay.registry import Registry
from engine.state.codec import decode_event
from engine.state.instance_state import to_ms
from streams import dlq
from tests.unit.engine.orchestrator_harness import OrchestratorHarness

registry = Registry()


@registry.activity(name="note")
def note(ctx: object, value: object) -> object:
    return value


@registry.workflow(name="await_payment")
def await_payment(ctx, order: str):
    paid = yield ctx.wait_for_external_event("paid")
    return {"order": order, "paid": paid}


@registry.workflow(name="one_step")
def one_step(ctx, value: int):
    result = yield ctx.call_activity(note, input=value)
    return result


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[OrchestratorHarness]:
    made = OrchestratorHarness(registry, tmp_path)
    yield made
    made.close()


def inbox(instance_id: str, event: object, execution_id: str = "") -> HistoryEvent:
    return HistoryEvent(instance_id, execution_id, -1, now_utc(), event)  # type: ignore[arg-type]


# A bridge event names the record it came from, in the dead-letter headers' terms.
FROM_PAYMENTS = [(dlq.SOURCE_TOPIC, b"payments"), (dlq.SOURCE_PARTITION, b"2"), (dlq.SOURCE_OFFSET, b"41")]


# -- events from the pub/sub bridge ---------------------------------------------------


def test_a_bridge_event_right_after_its_start_reaches_the_instance(harness: OrchestratorHarness) -> None:
    out = harness.feed([inbox("order-1", ExecutionStarted("await_payment", '"lamp"'), "e1"),
                        (inbox("order-1", EventRaised("paid", "25")), FROM_PAYMENTS)])
    assert harness.dead_letters(out) == []
    status = harness.status("order-1")
    assert status is not None and status.runtime_status is WorkflowStatus.COMPLETED, status
    assert json.loads(status.output or "null") == {"order": "lamp", "paid": 25}


def test_a_bridge_event_for_an_unknown_instance_is_dead_lettered_with_the_reason(
        harness: OrchestratorHarness) -> None:
    event = inbox("nobody", EventRaised("paid", "5"))
    out = harness.feed([(event, FROM_PAYMENTS)])
    [dead] = harness.dead_letters(out)
    headers = dict(dead.headers or [])
    assert headers[dlq.ERROR] == b"no workflow instance 'nobody' for event 'paid'"
    assert headers[dlq.ERROR_TYPE] == b"UnknownInstance"
    # The source record (the payment), not the inbox copy, is what the headers name.
    assert (headers[dlq.SOURCE_TOPIC], headers[dlq.SOURCE_PARTITION], headers[dlq.SOURCE_OFFSET]) == (
        b"payments", b"2", b"41")
    assert dead.key == b"nobody"
    assert decode_event(dead.value).event == EventRaised("paid", "5")
    assert harness.statuses(out) == []


def test_a_client_event_for_an_unknown_instance_is_dropped_as_before(harness: OrchestratorHarness) -> None:
    out = harness.feed([inbox("nobody", EventRaised("paid", "5"))])
    assert out == []


# -- suspending an instance whose start is deferred --------------------------------------


def deferred_start(harness: OrchestratorHarness, instance_id: str, delay: timedelta) -> int:
    """Start ``one_step`` at now + delay; return the start time in ms."""
    start_at = now_utc() + delay
    harness.feed([inbox(instance_id, ExecutionStarted("one_step", "7", None, start_at), "e1")])
    status = harness.status(instance_id)
    assert status is not None and status.runtime_status is WorkflowStatus.PENDING
    return to_ms(start_at)


def test_a_pending_instance_suspends_and_starts_on_resume_once_its_time_has_come(
        harness: OrchestratorHarness) -> None:
    start_ms = deferred_start(harness, "later", timedelta(minutes=5))
    harness.feed([inbox("later", ExecutionSuspended(None))])
    assert harness.status("later").runtime_status is WorkflowStatus.SUSPENDED  # type: ignore[union-attr]

    # Its time comes while it is suspended: it stays suspended and runs nothing.
    out = harness.punctuate(start_ms + 1)
    assert harness.tasks(out) == []
    assert harness.status("later").runtime_status is WorkflowStatus.SUSPENDED  # type: ignore[union-attr]

    out = harness.feed([inbox("later", ExecutionResumed(None))])
    assert harness.status("later").runtime_status is WorkflowStatus.RUNNING  # type: ignore[union-attr]
    assert [t.name for t in harness.tasks(out)] == ["note"]


def test_a_pending_instance_resumed_before_its_time_waits_for_it(harness: OrchestratorHarness) -> None:
    start_ms = deferred_start(harness, "later", timedelta(minutes=5))
    harness.feed([inbox("later", ExecutionSuspended(None))])
    assert harness.status("later").runtime_status is WorkflowStatus.SUSPENDED  # type: ignore[union-attr]
    out = harness.feed([inbox("later", ExecutionResumed(None))])
    assert harness.status("later").runtime_status is WorkflowStatus.PENDING  # type: ignore[union-attr]
    assert harness.tasks(out) == []

    out = harness.punctuate(start_ms + 1)
    assert harness.status("later").runtime_status is WorkflowStatus.RUNNING  # type: ignore[union-attr]
    assert [t.name for t in harness.tasks(out)] == ["note"]


def test_a_suspended_pending_instance_can_be_terminated(harness: OrchestratorHarness) -> None:
    deferred_start(harness, "later", timedelta(minutes=5))
    harness.feed([inbox("later", ExecutionSuspended(None))])
    harness.feed([inbox("later", ExecutionTerminated(None, None, True))])
    assert harness.status("later").runtime_status is WorkflowStatus.TERMINATED  # type: ignore[union-attr]
