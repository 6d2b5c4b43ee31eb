"""The status view follows its topic whenever it appears and whatever partitions it gains."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewPartitions

from engine.api.status_view import StatusView
from engine.core.history import WorkflowStatus
from engine.state.codec import StatusRecord, encode_status
from engine.state.config import Settings
from engine.state.topics import STATUS, ensure_workflow_topics
from tests.integration.engine.runtime_process import wait_until


def publish_status(settings: Settings, instance_id: str, partition: int | None = None) -> None:
    now = datetime.now(UTC)
    record = StatusRecord(instance_id, "e1", "w", WorkflowStatus.RUNNING, now, now)
    producer = Producer(settings.producer())
    errors: list[object] = []

    def delivered(err: object, _: object) -> None:
        if err is not None:
            errors.append(err)

    if partition is None:
        producer.produce(settings.topic(STATUS), key=instance_id.encode(), value=encode_status(record),
                         on_delivery=delivered)
    else:
        producer.produce(settings.topic(STATUS), key=instance_id.encode(), value=encode_status(record),
                         partition=partition, on_delivery=delivered)
    assert producer.flush(30) == 0
    assert errors == [], errors


def partitions_led(admin: AdminClient, topic: str) -> int:
    meta = admin.list_topics(topic, timeout=10).topics[topic]
    return sum(1 for p in meta.partitions.values() if p.leader >= 0)


def test_a_view_started_before_its_topic_exists_reads_it_once_created(settings: Settings) -> None:
    view = StatusView(settings)
    started: list[BaseException | None] = []

    def start() -> None:
        try:
            view.start(timeout=30)
            started.append(None)
        except BaseException as err:
            started.append(err)

    thread = threading.Thread(target=start)
    thread.start()
    try:
        thread.join(1.5)
        assert thread.is_alive(), "the view called itself caught up with a topic that does not exist"
        ensure_workflow_topics(settings)
        thread.join(30)
        assert started == [None], started
        publish_status(settings, "late-topic")
        status = view.wait_for("late-topic", lambda s: s is not None, 20)
        assert status is not None and status.runtime_status is WorkflowStatus.RUNNING
    finally:
        thread.join(30)
        view.close()


def test_a_view_reads_partitions_added_after_it_started(settings: Settings) -> None:
    ensure_workflow_topics(settings)
    view = StatusView(settings)
    view.start(timeout=30)
    try:
        topic = settings.topic(STATUS)
        admin = AdminClient(settings.client())
        for future in admin.create_partitions([NewPartitions(topic, settings.partitions + 2)]).values():
            future.result(30)
        # The broker's metadata shows new partitions (and their leaders) a moment later.
        wait_until(lambda: partitions_led(admin, topic) == settings.partitions + 2, 30, "no new partitions")
        publish_status(settings, "in-a-new-partition", partition=settings.partitions + 1)
        status = view.wait_for("in-a-new-partition", lambda s: s is not None, 30)
        assert status is not None
    finally:
        view.close()
