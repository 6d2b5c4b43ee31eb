"""A result delivered twice is recorded once; an instance's events keep the order they were sent in.

Both through the real inbox, with records produced the way a worker or any other producer
would (a second worker, a replayed delivery).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Producer

from engine import DaprWorkflowContext, WorkflowClient, WorkflowRuntime, WorkflowStatus
from engine.api.history_reader import read_history
from engine.core.history import EventRaised, ExecutionStarted, HistoryEvent, TaskCompleted
from engine.state.codec import encode_event
from engine.state.config import Settings
from tests.integration.engine.inbox_barrier import wait_inbox_processed
from tests.integration.engine.runtime_process import wait_until

EVENTS = 40


def lookup(ctx: Any, key: str) -> str:
    return f"value-of-{key}"


def looks_up_then_waits(ctx: DaprWorkflowContext, key: str):
    found = yield ctx.call_activity(lookup, input=key)
    yield ctx.wait_for_external_event("go")
    return found


def collects(ctx: DaprWorkflowContext, count: int):
    got = []
    for _ in range(count):
        got.append((yield ctx.wait_for_external_event("item")))
    return got


def register(runtime: WorkflowRuntime) -> None:
    runtime.register_workflow(looks_up_then_waits)
    runtime.register_workflow(collects)
    runtime.register_activity(lookup)


def produce(settings: Settings, events: list[HistoryEvent]) -> None:
    producer = Producer(settings.producer())
    for event in events:
        producer.produce(settings.topic("inbox"), key=event.instance_id.encode(), value=encode_event(event))
    assert producer.flush(30) == 0


def test_a_task_result_delivered_twice_is_recorded_once(
        settings: Settings, start_runtime: Callable[..., WorkflowRuntime], client: WorkflowClient) -> None:
    start_runtime(register)
    instance_id = client.schedule_new_workflow(looks_up_then_waits, input="k1", instance_id="dup-1")

    def completed() -> list[HistoryEvent]:
        return [e for e in read_history(settings, instance_id) if isinstance(e.event, TaskCompleted)]

    wait_until(lambda: completed(), 60, "the activity's result never reached history")
    (original,) = completed()
    # The same result again (a worker that crashed before committing), a forged one for the
    # same task, and both once more in a batch of their own.
    now = datetime.now(UTC)
    again = HistoryEvent(instance_id, original.execution_id, -1, now, original.event)
    forged = HistoryEvent(instance_id, original.execution_id, -1, now,
                          TaskCompleted(original.event.task_id, json.dumps("forged")))
    produce(settings, [again, forged])
    wait_inbox_processed(settings, instance_id)
    produce(settings, [again, again, forged])
    wait_inbox_processed(settings, instance_id)
    client.raise_workflow_event(instance_id, "go")
    state = client.wait_for_workflow_completion(instance_id, timeout_in_seconds=60)

    assert state is not None and state.runtime_status is WorkflowStatus.COMPLETED, state
    assert json.loads(state.serialized_output) == "value-of-k1"
    assert [e.event for e in completed()] == [original.event], "a duplicate result entered history"


def test_an_instances_history_keeps_the_order_its_events_were_sent_in(
        settings: Settings, start_runtime: Callable[..., WorkflowRuntime], client: WorkflowClient) -> None:
    start_runtime(register)
    instance_id = client.schedule_new_workflow(collects, input=EVENTS, instance_id="ordered-1")
    client.wait_for_workflow_start(instance_id, timeout_in_seconds=60)
    now = datetime.now(UTC)
    # Sent without waiting between them, so they share batches and transactions.
    produce(settings, [HistoryEvent(instance_id, "", -1, now, EventRaised("item", json.dumps(n)))
                       for n in range(EVENTS)])
    state = client.wait_for_workflow_completion(instance_id, timeout_in_seconds=60)

    assert state is not None and state.runtime_status is WorkflowStatus.COMPLETED, state
    assert json.loads(state.serialized_output) == list(range(EVENTS))
    history = read_history(settings, instance_id)
    assert isinstance(history[0].event, ExecutionStarted)
    assert [e.sequence for e in history] == list(range(len(history))), "sequence numbers skip or repeat"
    raised = [json.loads(e.event.data) for e in history if isinstance(e.event, EventRaised)]
    assert raised == list(range(EVENTS)), "history is not in the order the events were sent"
    assert all(a.timestamp <= b.timestamp for a, b in zip(history, history[1:], strict=False))
