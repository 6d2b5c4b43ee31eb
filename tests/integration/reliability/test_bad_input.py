"""Bad input at every door: it goes to the dead-letter topic or fails its one instance, and work goes on.

The commands door and the bridge have their dead-letter tests beside them
(tests/integration/contract, tests/integration/engine/test_bridge.py); the HTTP API is
fuzzed in tests/integration/engine/test_http_fuzz.py; oversized payloads are unit tests
(tests/unit/engine/test_security.py). Here: the inbox itself,
and workflow and activity code that raises, loops, blocks or is not deterministic.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from engine import DaprWorkflowContext, TaskFailedError, WorkflowClient, WorkflowRuntime, WorkflowStatus
from engine.core.history import EventRaised, ExecutionStarted, HistoryEvent
from engine.core.partitioner import partition_for
from engine.state.codec import ActivityTask, encode_event, encode_task
from engine.state.config import Settings

SECRET = "card-4111-1111"


def double(ctx: Any, value: int) -> int:
    return value * 2


def doubler(ctx: DaprWorkflowContext, value: int):
    result = yield ctx.call_activity(double, input=value)
    return result


def spins(ctx: DaprWorkflowContext, _: Any):
    while True:  # a workflow bug: no yield, ever
        pass
    yield  # makes this a generator


def raises(ctx: DaprWorkflowContext, _: Any):
    yield ctx.call_activity(double, input=1)
    raise ValueError("the order has no lines")


async def waits_forever(ctx: Any, _: Any) -> None:
    await asyncio.Event().wait()


def blocks(ctx: Any, _: Any) -> str:
    time.sleep(4)
    return "too late"


def times_out(ctx: DaprWorkflowContext, name: str):
    try:
        yield ctx.call_activity(name, input=None)
    except TaskFailedError as err:
        return {"type": err.details.type, "message": err.details.message}
    return "no timeout"


_replays = {"count": 0}


def changes_its_mind(ctx: DaprWorkflowContext, _: Any):
    # Non-deterministic on purpose: each replay of this process asks for another step.
    _replays["count"] += 1
    first = yield ctx.call_activity(double if _replays["count"] == 1 else "other_activity", input=1)
    second = yield ctx.call_activity(double, input=first)
    return second


def register(runtime: WorkflowRuntime) -> None:
    for workflow in (doubler, spins, raises, times_out, changes_its_mind):
        runtime.register_workflow(workflow)
    for activity in (double, waits_forever, blocks):
        runtime.register_activity(activity)


@pytest.fixture
def runtime_with(settings: Settings) -> Iterator[Callable[..., WorkflowRuntime]]:
    started: list[WorkflowRuntime] = []

    def start(**changes: Any) -> WorkflowRuntime:
        cache_size = changes.pop("cache_size", 10_000)
        runtime = WorkflowRuntime(settings=replace(settings, **changes), cache_size=cache_size)
        register(runtime)
        runtime.start()
        started.append(runtime)
        return runtime

    yield start
    for runtime in started:
        runtime.shutdown()


def assert_still_works(client: WorkflowClient, instance_id: str) -> None:
    client.schedule_new_workflow(doubler, input=21, instance_id=instance_id)
    state = client.wait_for_workflow_completion(instance_id, timeout_in_seconds=30)
    assert state is not None and state.runtime_status is WorkflowStatus.COMPLETED, state
    assert json.loads(state.serialized_output) == 42


def dead_letters(settings: Settings, at_least: int, timeout: float = 30) -> list[Any]:
    """Every record on the dead-letter topic, read to its end once ``at_least`` have arrived.

    Reading to the end offsets (not stopping at the count expected) is what lets a test
    say "exactly n": a letter too many would be read too.
    """
    topic = settings.topic("dlq")
    consumer = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": uuid.uuid4().hex,
                         "isolation.level": "read_committed", "enable.partition.eof": True})
    try:
        partitions = list(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
        found: list[Any] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found, at_end = [], set()
            consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
            while len(at_end) < len(partitions) and time.monotonic() < deadline:
                message = consumer.poll(0.5)
                if message is None:
                    continue
                if message.error() is not None:
                    if message.error().code() == KafkaError._PARTITION_EOF:
                        at_end.add(message.partition())
                    continue
                found.append(message)
            if len(found) >= at_least:
                return found
            time.sleep(0.2)
        return found
    finally:
        consumer.close()


def test_undecodable_and_invalid_inbox_records_go_to_the_dlq_and_the_inbox_goes_on(
        runtime_with: Callable[..., WorkflowRuntime], settings: Settings, client: WorkflowClient,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)  # everything the runtime logs, in this process
    runtime_with()
    now = datetime.now(UTC)

    def event(instance_id: str, payload: Any) -> bytes:
        return encode_event(HistoryEvent(instance_id, "", -1, now, payload))

    bad = [
        (b"junk", b"\x00\x01 not avro " + SECRET.encode()),  # no schema header at all
        (b"junk", b"\xc3\x01" + b"\x00" * 8 + b"unknown fingerprint"),  # a schema nobody knows
        (b"task", encode_task(ActivityTask("x", "e", 1, "double", "1", "doubler", now))),  # the wrong schema
        (b"bad id!", event("bad id!", ExecutionStarted("doubler", "1", None, None))),  # an invalid instance ID
        (b"someone-else", event("order-1", ExecutionStarted("doubler", "1", None, None))),  # key != instance
        (b"order-1", event("order-1", EventRaised("bell\x07", json.dumps(SECRET)))),  # an invalid event name
        (b"order-1", event("order-1", ExecutionStarted("doubler", json.dumps(SECRET), None, None))[:-3]),  # cut short
        (SECRET.encode(), b"\x00" + SECRET.encode()),  # the secret in the key too
    ]
    producer = Producer({**settings.client(), "partitioner": "murmur2_random"})
    for key, value in bad:
        producer.produce(settings.topic("inbox"), key=key, value=value)
    producer.flush(30)

    assert_still_works(client, "after-bad-inbox-records")
    letters = dead_letters(settings, len(bad))
    assert len(letters) == len(bad), [m.value() for m in letters]
    assert sorted(m.value() for m in letters) == sorted(v for _, v in bad)
    for message in letters:
        headers = dict(message.headers())
        assert headers["streams.source.topic"] == settings.topic("inbox").encode()
        assert headers["streams.error"], headers
    assert client.get_workflow_state("order-1") is None, "a record keyed by another ID was processed"
    # Logs name records by topic, partition and offset, never by their bytes.
    assert "cannot be decoded" in caplog.text, "the runtime's log was not captured"
    assert SECRET not in caplog.text
    for record in caplog.records:
        assert SECRET not in record.getMessage() and SECRET not in str(record.exc_info), record


def test_an_undecodable_activity_task_goes_to_the_dlq_through_the_worker_and_work_goes_on(
        runtime_with: Callable[..., WorkflowRuntime], settings: Settings, client: WorkflowClient) -> None:
    runtime_with()
    bad = (b"wf-x/3", b"\x00 not an activity task " + SECRET.encode())
    producer = Producer({**settings.client(), "partitioner": "murmur2_random"})
    producer.produce(settings.topic("activities"), key=bad[0], value=bad[1])
    producer.flush(30)

    letters = dead_letters(settings, 1)
    assert [(m.key(), m.value()) for m in letters] == [bad]
    headers = dict(letters[0].headers())
    assert any(value == settings.topic("activities").encode() for value in headers.values()), headers
    assert_still_works(client, "after-bad-task")  # the worker goes on with the next task


def test_a_workflow_that_loops_forever_fails_at_the_step_time_limit_and_its_partition_goes_on(
        runtime_with: Callable[..., WorkflowRuntime], client: WorkflowClient) -> None:
    runtime = runtime_with(step_time_limit_s=1.0)
    began = time.monotonic()
    client.schedule_new_workflow(spins, instance_id="spinner")
    state = client.wait_for_workflow_completion("spinner", timeout_in_seconds=30)
    assert state is not None and state.runtime_status is WorkflowStatus.FAILED, state
    assert state.failure_details.error_type == "StepTimeLimitExceeded"
    assert "KWF_STEP_TIME_LIMIT_S" in state.failure_details.message and "spins" in state.failure_details.message
    # Failed at the limit, before the orchestrator's transaction timeout could abort the
    # step's transaction (the limit exists to stay under it), with room for the start.
    timeout_s = runtime._processor.config.transaction_timeout_ms / 1000
    assert time.monotonic() - began < runtime.settings.step_time_limit_s + timeout_s + 30
    # Every partition still serves, the spinner's included: one instance on each.
    partitions = client.settings.partitions
    spinner_partition = partition_for(b"spinner", partitions)
    on: dict[int, str] = {}
    for n in range(1000):
        on.setdefault(partition_for(f"after-spinner-{n}".encode(), partitions), f"after-spinner-{n}")
    assert set(on) == set(range(partitions)) and spinner_partition in on
    for instance_id in on.values():
        assert_still_works(client, instance_id)


def test_workflow_code_that_raises_fails_its_instance_with_the_error(
        runtime_with: Callable[..., WorkflowRuntime], client: WorkflowClient) -> None:
    runtime_with()
    client.schedule_new_workflow(raises, instance_id="raiser")
    state = client.wait_for_workflow_completion("raiser", timeout_in_seconds=30)
    assert state is not None and state.runtime_status is WorkflowStatus.FAILED, state
    assert state.failure_details.error_type == "ValueError"
    assert state.failure_details.message == "the order has no lines"
    assert_still_works(client, "after-raiser")


def test_non_deterministic_workflow_code_fails_naming_the_step(
        runtime_with: Callable[..., WorkflowRuntime], client: WorkflowClient) -> None:
    runtime_with(cache_size=0)  # every step replays the history: the change of mind shows
    client.schedule_new_workflow(changes_its_mind, instance_id="fickle")
    state = client.wait_for_workflow_completion("fickle", timeout_in_seconds=30)
    assert state is not None and state.runtime_status is WorkflowStatus.FAILED, state
    assert state.failure_details.error_type == "NonDeterminismError", state.failure_details
    assert "other_activity" in state.failure_details.message and "double" in state.failure_details.message
    assert_still_works(client, "after-fickle")


@pytest.mark.parametrize("activity", ["waits_forever", "blocks"])
def test_an_activity_over_its_timeout_fails_its_task_with_activity_timeout(
        runtime_with: Callable[..., WorkflowRuntime], client: WorkflowClient, activity: str) -> None:
    runtime_with(activity_timeout_s=1.0)
    client.schedule_new_workflow(times_out, input=activity, instance_id=f"slow-{activity}")
    state = client.wait_for_workflow_completion(f"slow-{activity}", timeout_in_seconds=30)
    assert state is not None and state.runtime_status is WorkflowStatus.COMPLETED, state
    output = json.loads(state.serialized_output)
    assert output["type"] == "ActivityTimeout", output
    assert activity in output["message"] and "KWF_ACTIVITY_TIMEOUT_S" in output["message"]
    assert_still_works(client, f"after-{activity}")
