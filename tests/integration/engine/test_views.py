"""The clients' persistent copies of the status and history topics: they resume from their
stored offsets, start over when the topic was recreated, page with a cursor while statuses
change, and answer a history without reading the instance's partition."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from engine.api.history_reader import HistoryView, read_history
from engine.api.status_index import ListFilter
from engine.api.status_view import StatusView
from engine.core.history import ExecutionCompleted, ExecutionStarted, HistoryEvent, TaskScheduled, WorkflowStatus
from engine.core.partitioner import partition_for
from engine.state.codec import StatusRecord, encode_event, encode_status
from engine.state.config import Settings
from engine.state.history_log import event_key
from engine.state.topics import HISTORY, STATUS, ensure_workflow_topics
from streams.topics import delete_topics_with_prefix
from tests.integration.engine.runtime_process import wait_until

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


def status(n: int, runtime_status: WorkflowStatus = WorkflowStatus.RUNNING) -> StatusRecord:
    created = EPOCH + timedelta(seconds=n)
    return StatusRecord(f"v-{n:04d}", "e1", "wf", runtime_status, created, created)


def publish(settings: Settings, records: list[StatusRecord], deleted: tuple[str, ...] = ()) -> None:
    producer = Producer(settings.producer())
    for record in records:
        producer.produce(settings.topic(STATUS), key=record.instance_id.encode(), value=encode_status(record))
    for instance_id in deleted:
        producer.produce(settings.topic(STATUS), key=instance_id.encode(), value=None)
    assert producer.flush(30) == 0


def started_view(settings: Settings) -> StatusView:
    view = StatusView(settings)
    view.start(timeout=30)
    return view


def test_a_new_view_resumes_from_the_stored_offsets_and_reads_only_the_tail(settings: Settings) -> None:
    ensure_workflow_topics(settings)
    publish(settings, [status(n) for n in range(60)])
    first = started_view(settings)
    try:
        assert first.mirror.records_read == 60 and first.mirror.plan is not None
        assert first.mirror.plan.reason == "a new copy"
        folder = first.mirror.folder
    finally:
        first.close()

    publish(settings, [status(n, WorkflowStatus.COMPLETED) for n in range(3)] + [status(60), status(61)],
            deleted=("v-0010",))
    second = started_view(settings)
    try:
        assert second.mirror.folder == folder and not second.mirror.plan.rebuild  # type: ignore[union-attr]
        assert second.mirror.records_read == 6, "a resumed view reads only what the topic gained"
        assert second.get("v-0001").runtime_status is WorkflowStatus.COMPLETED  # type: ignore[union-attr]
        assert second.get("v-0010") is None and second.get("v-0061") is not None
        listed = second.list_page(ListFilter(), 1000).records
        assert len(listed) == 61
        done = second.list_page(ListFilter(status=WorkflowStatus.COMPLETED), 1000).records
        assert [r.instance_id for r in done] == ["v-0000", "v-0001", "v-0002"]
    finally:
        second.close()


def test_two_views_at_once_use_two_folders(settings: Settings) -> None:
    ensure_workflow_topics(settings)
    publish(settings, [status(1)])
    first, second = started_view(settings), started_view(settings)
    try:
        assert first.mirror.folder != second.mirror.folder
        assert first.get("v-0001") is not None and second.get("v-0001") is not None
    finally:
        first.close()
        second.close()


def test_a_view_starts_over_when_its_topic_was_recreated(settings: Settings) -> None:
    ensure_workflow_topics(settings)
    publish(settings, [status(n) for n in range(20)])
    started_view(settings).close()
    delete_topics_with_prefix(AdminClient(settings.client()), settings.topic_prefix)
    wait_until(lambda: settings.topic(STATUS) not in AdminClient(settings.client()).list_topics(timeout=10).topics,
               30, "the topic was not deleted")
    wait_until(lambda: try_create(settings), 60, "the topics could not be created again")
    publish(settings, [status(100), status(101)])
    view = started_view(settings)
    try:
        assert view.mirror.plan is not None and view.mirror.plan.rebuild, view.mirror.plan
        assert view.get("v-0001") is None, "a record of the deleted topic survived"
        assert [r.instance_id for r in view.list_page(ListFilter(), 100).records] == ["v-0100", "v-0101"]
    finally:
        view.close()


def try_create(settings: Settings) -> bool:
    try:
        ensure_workflow_topics(settings)
        return True
    except Exception:
        return False


def test_paging_through_instances_whose_statuses_change_shows_each_once(settings: Settings) -> None:
    ensure_workflow_topics(settings)
    count = 200
    publish(settings, [status(n) for n in range(count)])
    view = started_view(settings)
    try:
        seen: list[str] = []
        token = None
        round_ = 0
        while True:
            page = view.list_page(ListFilter(), 13, token)
            seen.extend(r.instance_id for r in page.records)
            token = page.continuation_token
            if token is None:
                break
            # Some instances end, one is removed and one is added while the pages are read.
            changed = [status(n, WorkflowStatus.COMPLETED) for n in range(round_, count, 11)]
            publish(settings, changed + [status(count + round_)])
            view.wait_for(changed[-1].instance_id, lambda s: s is not None and s.runtime_status.name == "COMPLETED",
                          20)
            round_ += 1
        assert len(seen) == len(set(seen)), "an instance was listed twice"
        assert set(seen) >= {f"v-{n:04d}" for n in range(count)}, "an instance was skipped"
        running = {r.instance_id for r in view.list_page(ListFilter(status=WorkflowStatus.RUNNING), 1000).records}
        assert running == {r.instance_id for r in view.records() if r.runtime_status is WorkflowStatus.RUNNING}
        assert not running & {r.instance_id for r in view.records() if r.runtime_status is WorkflowStatus.COMPLETED}
    finally:
        view.close()


def history_of(instance_id: str, steps: int) -> list[HistoryEvent]:
    events = [HistoryEvent(instance_id, "x1", 0, EPOCH, ExecutionStarted("wf", "1"))]
    events += [HistoryEvent(instance_id, "x1", n, EPOCH, TaskScheduled(n, "step")) for n in range(1, steps)]
    return events


def publish_history(settings: Settings, events: list[HistoryEvent], partitions: int) -> None:
    producer = Producer(settings.producer())
    for event in events:
        producer.produce(settings.topic(HISTORY), key=event_key(event.instance_id, event.sequence),
                         value=encode_event(event), partition=partition_for(event.instance_id.encode(), partitions))
    assert producer.flush(30) == 0


def test_a_history_is_read_from_the_copy_not_from_its_partition(settings: Settings) -> None:
    ensure_workflow_topics(settings)
    others = [e for n in range(100) for e in history_of(f"other-{n}", 3)]
    publish_history(settings, others + history_of("mine", 12), settings.partitions)
    try:
        events = read_history(settings, "mine")
        assert [e.sequence for e in events] == list(range(12))  # 10 sorts after 9: by number
        view = HistoryView.shared(settings)
        read = view.mirror.records_read
        assert read == len(others) + 12
        for _ in range(20):
            assert len(read_history(settings, "mine")) == 12
        assert view.mirror.records_read == read, "a read of one instance read records"

        # Committed before the call: in the answer (read-your-writes), and only the tail was read.
        done = HistoryEvent("mine", "x1", 12, EPOCH, ExecutionCompleted(WorkflowStatus.COMPLETED, "2"))
        publish_history(settings, [done], settings.partitions)
        assert read_history(settings, "mine")[-1] == done
        assert view.mirror.records_read == read + 1
        assert read_history(settings, "nobody") == []
    finally:
        HistoryView.close_shared(settings.topic_prefix)

    # Another process (a new view on the same folder) resumes from the stored offsets.
    resumed = HistoryView.shared(settings)
    try:
        assert resumed.mirror.records_read == 0 and not resumed.mirror.plan.rebuild  # type: ignore[union-attr]
        assert len(resumed.events("mine", 10)) == 13
    finally:
        HistoryView.close_shared(settings.topic_prefix)
