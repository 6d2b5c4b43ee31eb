"""The orchestrator: inbox events in, accepted history, activity tasks and statuses out.

A ``streams`` handler. Per partition batch it groups the inbox records by instance,
accepts or rejects each proposed event, runs the executor over the accepted ones and
emits, in the batch's one transaction: history events (the changelog, folded into the
RocksDB store after the commit), activity tasks, child starts, parent notifications and
the instance's new status. Durable timers are history too: punctuation reads the due
ones from the store's time index and fires them through the same path.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import uuid
import weakref
from collections.abc import Collection, Generator, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from engine.core.bulk import ENDED, PURGE, BulkCommand
from engine.core.clock import now_utc
from engine.core.history import (
    ChildWorkflowFailed,
    ChildWorkflowScheduled,
    EventRaised,
    ExecutionCompleted,
    ExecutionResumed,
    ExecutionStarted,
    ExecutionSuspended,
    ExecutionTerminated,
    HistoryEvent,
    ParentInstance,
    PurgeRequested,
    TaskCompleted,
    TaskFailed,
    TaskScheduled,
    TimerFired,
    WorkflowStatus,
    validate_event_name,
    validate_instance_id,
)
from engine.core.partitioner import partition_for
from engine.observability import logs, metrics, tracing
from engine.orchestration.app_topics import AppTopics
from engine.orchestration.decisions import (
    check_inbox_payload,
    closed_item,
    limit_payloads,
    other_app,
    parent_notice,
    purge_refusal,
    refusal,
    source_of,
    start_refusal,
    step_overrun,
)
from engine.orchestration.local_activities import (
    MAX_LOCAL_PER_STEP,
    MAX_LOCAL_WAIT_PER_TRANSACTION_S,
    EarlyActivity,
    LocalActivity,
    LocalActivityRunner,
    LocalWait,
    collect_together,
    pick_local,
)
from engine.orchestration.step_watchdog import StepTimeLimitExceeded, StepWatchdog
from engine.replay.executor import ExecutionResult, Executor
from engine.replay.registry import Registry
from engine.state.codec import (
    ActivityTask,
    decode_bulk,
    decode_event,
    encode_bulk,
    encode_event,
    encode_status,
    encode_task,
    is_bulk,
)
from engine.state.config import Settings
from engine.state.history_log import event_key, execution_keys
from engine.state.instance_state import InstanceState, fold, from_ms
from engine.state.instance_store import InstanceStore
from engine.state.topics import ACTIVITIES, DLQ, HISTORY, INBOX, STATUS
from streams import dlq
from streams.handler import Batch, Headers, Record
from streams.metrics import dead_lettered
from streams.processor import ProcessorConfig
from streams.store import PartitionStore, StoreBatch

log = logging.getLogger("engine.orchestration.orchestrator")

# A workflow that continues as new without ever waiting would spin forever in one step.
MAX_CONTINUATIONS_PER_STEP = 1000
# Retention purges per partition and punctuation: each writes a tombstone per history
# event, so a backlog (a retention just switched on) drains over many short transactions.
RETENTION_PURGES_PER_TICK = 200
# Instances a bulk command looks at per transaction: a purge writes a tombstone per event
# and a terminate replays the instance, so chunks keep transactions short.
BULK_CHUNK = 200
# Instances whose steps wait for their local activities together. Each run keeps its worker
# slot until the commit, so a batch advanced breadth-first spreads the slots over all its
# instances and finishes none once they run out; groups this small take a chain3's two
# steps each and leave slots for the next group, while 8 instances still share each wait.
STEPS_WAITING_TOGETHER = 8


# What a step generator gets back for its ``LocalWait``: the runs that finished, by task
# ID, and the seconds its own turn of the wait took.
LocalDone = tuple[dict[int, TaskCompleted | TaskFailed], float]
# A step of one instance, run as a generator: it yields when it waits for local activities,
# so that one handler call waits for the activities of all its instances at once.
Stepping = Generator[LocalWait, LocalDone, InstanceState | None]


@dataclass(frozen=True)
class _StepInput:
    """One instance's step: the events proposed for it, the step's time, their inbox records."""

    instance_id: str
    proposed: Sequence[HistoryEvent]
    now: datetime
    records: Sequence[Record] = ()


@dataclass
class _Transaction:
    """What this transaction changed that the store does not show until it commits."""

    states: dict[str, InstanceState | None] = field(default_factory=dict)
    closed: set[tuple[str, int]] = field(default_factory=set)
    # History events emitted for each instance's current execution: a second step of the
    # instance in the same transaction (an inbox event, then a due timer) must see them.
    history: dict[str, list[HistoryEvent]] = field(default_factory=dict)
    # Seconds its steps spent waiting for local activities (``MAX_LOCAL_WAIT_PER_TRANSACTION_S``).
    local_wait_s: float = 0.0
    # Local activities whose results it recorded: told once it has ended (see ``_ended``).
    local_runs: list[LocalActivity] = field(default_factory=list)
    # Tasks its start steps scheduled that this process runs once it has committed:
    # (partition, task, trace headers).
    early: list[tuple[int, ActivityTask, Headers | None]] = field(default_factory=list)
    # Early runs whose results it recorded: recorded or released once it has ended.
    early_recorded: list[EarlyActivity] = field(default_factory=list)
    # Each changed instance's last status (None: purged), written once when the handler
    # call ends: a chain that runs several steps in one transaction writes one record.
    statuses: dict[str, InstanceState | None] = field(default_factory=dict)

    def began(self, instance_id: str) -> bool:
        """Whether the instance's current execution started in this transaction."""
        events = self.history.get(instance_id)
        return events is not None and bool(events) and isinstance(events[0].event, ExecutionStarted)


class Orchestrator:
    """The handler of the orchestrator processor (see ``streams.processor.Handler``).

    Args:
        settings: Topics and identity.
        registry: The workflows this runtime can run.
        partitions: The partition count of the inbox, for checking where records belong.
        cache_size: Live workflow runs kept between steps (bounds memory by count).
        max_batch_records: Inbox records taken into one transaction (None: the processor's default).
        app_topics: Other applications' topics (default: looked up, and created, on the broker).
        local_activities: Runs activities in this process for a step to record their results
            in the same transaction (``local_activities.py``); None, or a budget of 0 in
            ``settings``, sends every activity through Kafka.
    """

    def __init__(self, settings: Settings, registry: Registry, partitions: int, *, cache_size: int = 10_000,
                 max_batch_records: int | None = None, app_topics: AppTopics | None = None,
                 local_activities: LocalActivityRunner | None = None) -> None:
        self.settings = settings
        self.local_activities = local_activities if settings.local_activity_budget_ms > 0 else None
        self.partitions = partitions
        self.max_batch_records = max_batch_records
        self.executor = Executor(registry, cache_size=cache_size)
        # Each partition's store keeps its share of the live runs' decoded first/last events.
        self._edge_cache_size = -(-cache_size // max(1, partitions))
        metrics.watch_executor(self.executor)
        self._spans = tracing.WorkflowSpans()
        self._watchdog = StepWatchdog(settings.step_time_limit_s)
        self.inbox = settings.topic(INBOX)
        self.history_topic = settings.topic(HISTORY)
        self.activities = settings.topic(ACTIVITIES)
        self.status = settings.topic(STATUS)
        self.dlq = settings.topic(DLQ)
        self.apps = app_topics or AppTopics(settings)
        # Keyed by the store object: a revoked partition's store is closed and dropped.
        self._stores: weakref.WeakKeyDictionary[PartitionStore, InstanceStore] = weakref.WeakKeyDictionary()
        self._txn = _Transaction()
        # Early runs started after a commit, by partition, for its next transaction to record.
        self._early: dict[int, list[tuple[ActivityTask, EarlyActivity]]] = {}
        # When each partition's early runs have waited their budget (``time.monotonic``).
        self._early_until: dict[int, float] = {}

    def processor_config(self, group_suffix: str = "orchestrator") -> ProcessorConfig:
        config = ProcessorConfig(
            group_id=f"{self.settings.app_prefix}.{group_suffix}",
            input_topic=self.inbox,
            changelog_topic=self.history_topic,
            dlq_topic=self.dlq,
            state_dir=self.settings.state_dir / "orchestrator",
            process_id=self.settings.process_id,
            client=self.settings.client(),
            # A crashed process's open transaction blocks its partitions' readers until it
            # times out; batches commit within milliseconds, so 10 s is plenty of margin.
            transaction_timeout_ms=10_000,
            standby_replicas=self.settings.standby_replicas,
            session_timeout_ms=self.settings.session_timeout_ms,
        )
        if self.max_batch_records is None:
            return config
        return dataclasses.replace(config, max_batch_records=self.max_batch_records)

    # -- the streams handler ------------------------------------------------------------

    def decode(self, topic: str, key: bytes | None, value: bytes | None) -> HistoryEvent | BulkCommand:
        if is_bulk(value):
            return decode_bulk(value)
        event = decode_event(value)
        validate_instance_id(event.instance_id)
        if key is not None and key != event.instance_id.encode():
            raise ValueError(f"record key {key!r} is not the instance ID {event.instance_id!r}")
        if isinstance(event.event, EventRaised):
            validate_event_name(event.event.name)
        check_inbox_payload(event.event, self.settings.max_payload_bytes)
        return event

    def process(self, batch: Batch) -> None:
        store = self._store(batch.store)
        by_instance: dict[str, list[Record]] = {}
        commands: list[BulkCommand] = []
        for record in batch.records:
            if isinstance(record.value, BulkCommand):
                commands.append(record.value)  # sent to every partition: each applies it to its own
                continue
            event: HistoryEvent = record.value
            self._spans.received(event, record.headers)
            owner = partition_for(event.instance_id.encode(), self.partitions)
            if owner != batch.partition:
                # Produced with another partitioner: hand it to the partition that owns it.
                batch.emit(self.inbox, event.instance_id.encode(), encode_event(event), partition=owner,
                           headers=record.headers)
                continue
            by_instance.setdefault(event.instance_id, []).append(record)
        now = now_utc()
        self._steps(batch, store, [_StepInput(instance_id, [r.value for r in records], now, records)
                                   for instance_id, records in by_instance.items()])
        for command in commands:
            self._apply_bulk(batch, store, command, now)
        self._write_statuses(batch)

    def _apply_bulk(self, batch: Batch, store: InstanceStore, command: BulkCommand, now: datetime) -> None:
        """Apply a bulk command to one chunk of this partition's instances; pass the rest on.

        The next chunk is the same command, with where it stopped, sent to the end of this
        partition of the inbox in this transaction: progress is as durable as the inbox, and
        other instances' events are not held up behind a large command.
        """
        if all(status in ENDED for status in command.statuses):
            # Only ended instances can match (a purge): the ended index holds just those.
            states, resume_after = store.ended_after(command.statuses, command.resume_after, BULK_CHUNK)
        else:
            states = store.states_after(command.resume_after, BULK_CHUNK)
            resume_after = states[-1].instance_id if len(states) == BULK_CHUNK else None
        event: Any = PurgeRequested() if command.action == PURGE else ExecutionTerminated(
            f"bulk terminate {command.command_id}", command.output, True)
        matched = [_StepInput(state.instance_id, [HistoryEvent(state.instance_id, "", -1, now, event)], now)
                   for state in states if command.matches(state.status, state.name, state.created_ms)]
        self._steps(batch, store, matched)
        if resume_after is not None:
            rest = replace(command, resume_after=resume_after)
            batch.emit(self.inbox, command.command_id.encode(), encode_bulk(rest), partition=batch.partition)
        log.info("bulk %s %s on partition %d: %d of %d instances%s", command.action.lower(), command.command_id,
                 batch.partition, len(matched), len(states), ", continuing" if resume_after is not None else ", done")

    def ready_partitions(self) -> Collection[int]:
        """Partitions whose early runs a transaction can record now: all finished, or the
        budget since they started is spent (the processor punctuates them at once)."""
        now = time.monotonic()
        return [partition for partition, runs in self._early.items()
                if now >= self._early_until.get(partition, 0.0) or all(run.done() for _, run in runs)]

    def ready_soon(self) -> bool:
        """Whether early runs are under way (the processor polls in short slices meanwhile)."""
        return bool(self._early)

    def punctuate(self, batch: Batch, now_ms: int) -> None:
        store = self._store(batch.store)
        self._record_early(batch, store)
        due: dict[str, list[HistoryEvent]] = {}
        for fire_ms, instance_id, timer_id in store.due_timers(now_ms):
            if (instance_id, timer_id) in self._txn.closed:
                continue
            fired = TimerFired(timer_id, from_ms(fire_ms))
            due.setdefault(instance_id, []).append(HistoryEvent(instance_id, "", -1, from_ms(fire_ms), fired))
        now = now_utc()
        self._steps(batch, store, [_StepInput(instance_id, events, now) for instance_id, events in due.items()])
        self._purge_retired(batch, store, now_ms)
        self._write_statuses(batch)

    def _purge_retired(self, batch: Batch, store: InstanceStore, now_ms: int) -> None:
        """Purge instances that have been in a final status longer than the retention policy.

        Reads only the due entries of the store's ended index; the purge takes the path a
        client's purge takes, so it is in history and in this transaction.
        """
        cutoffs = self.settings.retention.cutoffs(now_ms)
        if not cutoffs:
            return
        now = now_utc()
        for status, before_ms in cutoffs.items():
            for instance_id in store.ended_before(status, before_ms, RETENTION_PURGES_PER_TICK):
                if instance_id in self._txn.states:
                    continue  # changed in this transaction: the index entry is stale until it commits
                log.info("purging %s: %s longer than its retention", instance_id, status.name)
                purge = HistoryEvent(instance_id, "", -1, now, PurgeRequested())
                self._steps(batch, store, [_StepInput(instance_id, [purge], now)])

    def apply_changelog(
        self, store_batch: StoreBatch, store: PartitionStore, key: bytes | None, value: bytes | None, decoded: Any
    ) -> None:
        if value is None:
            return
        # The transaction committed: from now on the store shows what it changed.
        self._ended(committed=True)
        event = decoded if decoded is not None else decode_event(value)
        self._store(store).apply(store_batch, event, value)

    def on_partition_ready(self, partition: int, store: PartitionStore) -> None:
        self._store(store).written()

    def on_partition_revoked(self, partition: int) -> None:
        # Called on revoke, loss, and an aborted transaction: forget what the transaction
        # changed. Live runs of the executor that advanced past the history are checked
        # against its length on their next step and replayed.
        self._ended(committed=False)
        self._early_until.pop(partition, None)
        for _, run in self._early.pop(partition, []):
            run.released()  # the worker that reads its task delivers it

    def _ended(self, committed: bool) -> None:
        """The transaction committed or aborted: start a new one.

        Local activities recorded in it held their worker slots until now, so a crash
        re-runs no more plain activities than the worker has threads. Once its start steps
        are committed (RUNNING is visible), their activities that run here start now.
        """
        txn, self._txn = self._txn, _Transaction()
        for run in txn.local_runs:
            run.taken()
        for early in txn.early_recorded:
            if committed:
                early.recorded()
            else:
                early.released()
        if not committed and self.local_activities is not None:
            for _, task, _ in txn.early:
                self.local_activities.unreserve_early(task)
        if committed and txn.early and self.local_activities is not None:
            until = time.monotonic() + self.settings.local_activity_budget_ms / 1000
            for partition, task, headers in txn.early:
                started = self.local_activities.start_early(task, headers)
                if started is not None:
                    self._early.setdefault(partition, []).append((task, started))
                    self._early_until.setdefault(partition, until)

    def _record_early(self, batch: Batch, store: InstanceStore) -> None:
        """Take the results of this partition's early runs into this transaction, as results
        from the inbox would be; a run not finished within the budget is left to the worker."""
        runs = self._early.pop(batch.partition, None)
        self._early_until.pop(batch.partition, None)
        if not runs:
            return
        began = time.monotonic()
        budget_s = min(self.settings.local_activity_budget_ms / 1000,
                       MAX_LOCAL_WAIT_PER_TRANSACTION_S - self._txn.local_wait_s)
        results: dict[str, list[HistoryEvent]] = {}
        for task, run in runs:
            result = run.wait(max(0.0, began + budget_s - time.monotonic()))
            if result is None:
                run.released()
                continue
            self._txn.early_recorded.append(run)
            results.setdefault(task.instance_id, []).append(
                HistoryEvent(task.instance_id, task.execution_id, -1, now_utc(), result))
        self._txn.local_wait_s += time.monotonic() - began
        now = now_utc()  # the step's time: once the results are in, as for results from the inbox
        self._steps(batch, store, [_StepInput(instance_id, events, now) for instance_id, events in results.items()])

    # -- one instance, one step ----------------------------------------------------------

    def _store(self, store: PartitionStore) -> InstanceStore:
        found = self._stores.get(store)
        if found is None:
            found = self._stores[store] = InstanceStore(store, self._edge_cache_size)
        return found

    def _state(self, store: InstanceStore, instance_id: str) -> InstanceState | None:
        if instance_id in self._txn.states:
            return self._txn.states[instance_id]
        return store.state(instance_id)

    def _steps(self, batch: Batch, store: InstanceStore, inputs: Sequence[_StepInput]) -> None:
        """Run the steps of distinct instances side by side, ``STEPS_WAITING_TOGETHER`` at a
        time: each runs until it waits for local activities, then all of them wait at once
        (``collect_together``) and go on; a group of chains costs one wait per round, not one
        per instance."""
        for first in range(0, len(inputs), STEPS_WAITING_TOGETHER):
            self._steps_together(batch, store, inputs[first:first + STEPS_WAITING_TOGETHER])

    def _steps_together(self, batch: Batch, store: InstanceStore, inputs: Sequence[_StepInput]) -> None:
        running: list[tuple[_StepInput, Stepping]] = [
            (step, self._step(batch, store, step.instance_id, step.proposed, step.now, step.records))
            for step in inputs]
        answers: list[LocalDone | None] = [None] * len(running)
        while running:
            waiting: list[tuple[_StepInput, Stepping, LocalWait]] = []
            try:
                for (step, stepping), answer in zip(running, answers, strict=True):
                    wait = self._advance(step, stepping, answer)
                    if wait is not None:
                        waiting.append((step, stepping, wait))
            except BaseException:
                # The transaction aborts: the runs started for it hold slots until told.
                for _, _, wait in waiting:
                    self._txn.local_runs += wait.runs.values()
                raise
            began = time.monotonic()
            cap_s = MAX_LOCAL_WAIT_PER_TRANSACTION_S - self._txn.local_wait_s
            answers = list(collect_together([wait for _, _, wait in waiting], began, cap_s))
            self._txn.local_wait_s += time.monotonic() - began
            running = [(step, stepping) for step, stepping, _ in waiting]

    @staticmethod
    def _advance(step: _StepInput, stepping: Stepping, answer: LocalDone | None) -> LocalWait | None:
        """Run one instance's step on to its next wait for local activities; None once it ended."""
        first = step.proposed[0].event if step.proposed else None
        workflow = first.name if isinstance(first, ExecutionStarted) else None
        with logs.bound(instance_id=step.instance_id, workflow=workflow):
            try:
                return stepping.send(answer) if answer is not None else next(stepping)
            except StopIteration:
                return None

    def _step(
        self, batch: Batch, store: InstanceStore, instance_id: str, proposed: Sequence[HistoryEvent], now: datetime,
        records: Sequence[Record] = (),
    ) -> Stepping:
        """Accept or refuse each proposed event in order, then run the instance over the accepted.

        ``records`` are the inbox records the events came from (none for fired timers).
        """
        state = self._state(store, instance_id)
        pending: list[HistoryEvent] = []
        status = None if state is None else state.status
        for index, event in enumerate(proposed):
            payload = event.event
            if isinstance(payload, ExecutionStarted):
                reason = start_refusal(state)
                if reason is not None:
                    log.warning("refused a start of %s: %s", instance_id, reason)
                    metrics.event_dropped(payload)
                    continue
                state = yield from self._run(batch, store, state, pending, now)
                pending = []
                state = yield from self._start(batch, store, instance_id, state, event, now)
                status = state.status if state else None
                continue
            if isinstance(payload, PurgeRequested):
                state = yield from self._run(batch, store, state, pending, now)
                pending = []
                reason = purge_refusal(state)
                if reason is not None or state is None:
                    log.warning("refused a purge of %s: %s", instance_id, reason)
                    continue
                self._emit_history(batch, [HistoryEvent(instance_id, state.execution_id, state.next_sequence, now,
                                                        payload)])
                self._txn.statuses[instance_id] = None
                self.executor.evict(instance_id)
                self._txn.states[instance_id] = state = status = None
                continue
            if state is None and index < len(records) and source_of(records[index].headers) is not None:
                self._dead_letter_unknown(batch, records[index], event)
                continue
            if state is None or state.ended:
                log.info("dropped %s for %s: the instance is %s", type(payload).__name__, instance_id,
                         "unknown" if state is None else state.status.name)
                metrics.event_dropped(payload)
                continue
            reason = self._refusal(store, state, status, event)
            if reason is not None:
                log.info("dropped %s for %s: %s", type(payload).__name__, instance_id, reason)
                metrics.event_dropped(payload)
                continue
            if isinstance(payload, ExecutionSuspended):
                status = WorkflowStatus.SUSPENDED
            elif isinstance(payload, ExecutionResumed):
                status = WorkflowStatus.RUNNING
            elif isinstance(payload, ExecutionTerminated) and payload.recurse:
                self._terminate_children(batch, store, state, payload, now)
            item = closed_item(payload)
            if item is not None:
                self._txn.closed.add((instance_id, item[0]))
            pending.append(HistoryEvent(instance_id, state.execution_id, -1, now, payload))
        return (yield from self._run(batch, store, state, pending, now))

    def _dead_letter_unknown(self, batch: Batch, record: Record, event: HistoryEvent) -> None:
        """An event from another topic (the pub/sub bridge) for an instance that does not exist.

        The record keeps the headers naming its source record; the reason is added to them.
        """
        name = event.event.name if isinstance(event.event, EventRaised) else type(event.event).__name__
        reason = f"no workflow instance {event.instance_id!r} for event {name!r}"
        log.warning("%s (from %s); sending it to %s", reason, source_of(record.headers), self.dlq)
        headers = [*(record.headers or []), (dlq.ERROR, reason.encode()), (dlq.ERROR_TYPE, b"UnknownInstance")]
        batch.emit(self.dlq, record.key, encode_event(event), headers=headers)
        dead_lettered(self.processor_config().group_id, "UnknownInstance")

    def _refusal(self, store: InstanceStore, state: InstanceState, status: WorkflowStatus | None,
                 event: HistoryEvent) -> str | None:
        """Why a proposed event is not accepted (``decisions.refusal``), or None to accept it."""
        item = closed_item(event.event)
        if item is None:
            return refusal(event.event, event.execution_id, state, status)
        opened = store.open_item(state.instance_id, item[0])
        return refusal(event.event, event.execution_id, state, status, began_here=self._txn.began(state.instance_id),
                       closed_here=(state.instance_id, item[0]) in self._txn.closed,
                       open_kind=opened.kind if opened else None)

    def _start(self, batch: Batch, store: InstanceStore, instance_id: str, previous: InstanceState | None,
               event: HistoryEvent, now: datetime) -> Stepping:
        if previous is not None:
            self.executor.evict(instance_id)
        execution_id = event.execution_id or uuid.uuid4().hex
        started = HistoryEvent(instance_id, execution_id, 0, now, event.event)
        state = fold(None, started).state
        assert state is not None
        if state.status is WorkflowStatus.PENDING:
            self._emit_history(batch, [started])
            self._emit_status(batch, state)
            self._txn.states[instance_id] = state
            return state
        return (yield from self._execute(batch, store, None, [], [started], now))

    def _run(self, batch: Batch, store: InstanceStore, state: InstanceState | None, pending: list[HistoryEvent],
             now: datetime) -> Stepping:
        if state is None or not pending:
            return state
        numbered = [HistoryEvent(e.instance_id, state.execution_id, state.next_sequence + i, now, e.event)
                    for i, e in enumerate(pending)]
        if state.awaiting_start:
            return (yield from self._run_pending(batch, store, state, numbered, now))
        return (yield from self._execute(batch, store, state, self._history(store, state), numbered, now))

    def _run_pending(self, batch: Batch, store: InstanceStore, state: InstanceState, events: list[HistoryEvent],
                     now: datetime) -> Stepping:
        """Events for an instance whose start is deferred: history only, until it begins.

        It begins once its time has come and it is not suspended: the start timer fires, or a
        resume arrives after the timer fired while it was suspended.
        """
        terminated = next((e.event for e in events if isinstance(e.event, ExecutionTerminated)), None)
        if terminated is not None:
            end = ExecutionCompleted(WorkflowStatus.TERMINATED, terminated.output, None)
            events = [*events, HistoryEvent(state.instance_id, state.execution_id,
                                             state.next_sequence + len(events), now, end)]
            return self._commit(batch, state, events)
        stored = list(self._history(store, state))
        after = self._commit(batch, state, events)
        if after is None or after.awaiting_start or after.ended:
            return after
        # The start is due: the executor sees the whole execution so far as its first step.
        return (yield from self._execute(batch, store, after, [], [*stored, *events], now, emitted=True))

    def _execute(self, batch: Batch, store: InstanceStore, state: InstanceState | None,
                 history: Sequence[HistoryEvent], events: list[HistoryEvent], now: datetime,
                 emitted: bool = False) -> Stepping:
        """Run the executor over ``events`` and emit them (unless ``emitted``) and its actions."""
        instance_id = events[0].instance_id
        # Time spent waiting for local activities counts against the budget, not replay time.
        local_budget_s = min(self.settings.local_activity_budget_ms / 1000,
                             MAX_LOCAL_WAIT_PER_TRANSACTION_S - self._txn.local_wait_s)
        local_allowance = MAX_LOCAL_PER_STEP
        begins = emitted  # a deferred start that begins now: its first step runs here
        for _ in range(MAX_CONTINUATIONS_PER_STEP):
            result = self._timed_execute(instance_id, history, events)
            decided, refused = limit_payloads(result.actions, self.settings.max_payload_bytes)
            if decided is not result.actions:
                self.executor.evict(instance_id)  # its live run saw the actions as the code made them
            base = events[-1].sequence + 1
            execution_id = events[0].execution_id
            actions = [HistoryEvent(instance_id, execution_id, base + i, now, a) for i, a in enumerate(decided)]
            state = self._commit(batch, state, actions if emitted else [*events, *actions])
            started, finished = 0, dict[int, TaskCompleted | TaskFailed]()
            if result.continued_as_new is None and state is not None and not state.ended \
                    and not begins and not self._txn.began(instance_id):
                # (Not in the step that starts an execution: its activities run once the
                # start is committed, so their effects never precede a visible RUNNING.)
                started, finished, waited = yield from self._run_local(state, actions, refused, now, local_budget_s,
                                                            local_allowance)
                local_budget_s -= waited
            elif result.continued_as_new is None and state is not None and not state.ended:
                self._run_once_committed(batch, state, actions, refused, now)
            self._side_effects(batch, state, actions, now, refused, ran_here=finished.keys())
            if finished and state is not None:
                # Their results are this step's next events: the workflow goes on in this transaction.
                local_allowance -= started
                history = [*history, *events, *actions]
                events = self._local_results(state, finished)
                emitted = False
                continue
            if result.continued_as_new is None or state is None:
                return state
            # Continue as new: the next execution starts in this same step.
            self.executor.evict(instance_id)
            new_id = uuid.uuid4().hex
            carried = result.continued_as_new
            start = ExecutionStarted(state.name, carried.input, state.parent, None)
            events = [HistoryEvent(instance_id, new_id, 0, now, start)]
            events += [HistoryEvent(instance_id, new_id, i + 1, now, e)
                       for i, e in enumerate(carried.carried_events)]
            history, state, emitted = [], None, False
        raise RuntimeError(f"{instance_id} continued as new {MAX_CONTINUATIONS_PER_STEP} times without waiting")

    def _run_local(self, state: InstanceState, actions: list[HistoryEvent], refused: dict[int, Any],
                   now: datetime, budget_s: float,
                   allowance: int) -> Generator[LocalWait, LocalDone, tuple[int, dict[int, TaskCompleted | TaskFailed],
                                                                             float]]:
        """Start the step's activities this process can run and wait for them (yielded to
        ``_steps``); return how many started, the results of those that finished within
        ``budget_s`` (the others are handed over), and the seconds spent waiting."""
        runner = self.local_activities
        if runner is None or allowance <= 0 or budget_s <= 0:
            return 0, {}, 0.0
        started = {}
        # Another application's activities run in its own processes, whatever is registered here.
        own = [e for e in actions
               if not isinstance(e.event, TaskScheduled) or other_app(self.settings.app_id, e.event.app_id) is None]
        for event in pick_local(own, refused, runner.can_run, allowance):
            payload = event.event
            assert isinstance(payload, TaskScheduled)
            run = runner.start(self._task(state, event, payload, now), self._spans.headers(event.instance_id))
            if run is not None:
                started[payload.task_id] = run
        if not started:
            return 0, {}, 0.0
        finished, waited = yield LocalWait(started, budget_s)
        self._txn.local_runs += [started[task_id] for task_id in finished]
        return len(started), finished, waited

    def _run_once_committed(self, batch: Batch, state: InstanceState, actions: list[HistoryEvent],
                            refused: dict[int, Any], now: datetime) -> None:
        """A start step's activities this process can run: started once its transaction has
        committed (``_ended``); their tasks go out as usual and stay the durable record."""
        runner = self.local_activities
        if runner is None:
            return
        own = [e for e in actions
               if not isinstance(e.event, TaskScheduled) or other_app(self.settings.app_id, e.event.app_id) is None]
        for event in pick_local(own, refused, runner.can_run, MAX_LOCAL_PER_STEP):
            payload = event.event
            assert isinstance(payload, TaskScheduled)
            task = self._task(state, event, payload, now)
            runner.reserve_early(task)
            self._txn.early.append((batch.partition, task, self._spans.headers(event.instance_id)))

    def _local_results(self, state: InstanceState,
                       finished: dict[int, TaskCompleted | TaskFailed]) -> list[HistoryEvent]:
        """The results of activities run here, numbered after the step's actions."""
        at = now_utc()
        for task_id in finished:
            self._txn.closed.add((state.instance_id, task_id))  # a late copy of the result is a duplicate
        return [HistoryEvent(state.instance_id, state.execution_id, state.next_sequence + i, at, result)
                for i, result in enumerate(finished.values())]

    def _timed_execute(self, instance_id: str, history: Sequence[HistoryEvent],
                       events: list[HistoryEvent]) -> ExecutionResult:
        """``executor.execute`` under the step time limit: an overrun fails the instance."""
        try:
            self._watchdog.begin()
            result = self.executor.execute(instance_id, history, events)
            self._watchdog.end()
            return result
        except StepTimeLimitExceeded:
            self._watchdog.end()
            self.executor.evict(instance_id)
            first = (history[0] if history else events[0]).event
            name = first.name if isinstance(first, ExecutionStarted) else "?"
            failure = step_overrun(name, instance_id, self.settings.step_time_limit_s)
            return ExecutionResult([ExecutionCompleted(WorkflowStatus.FAILED, None, failure)], WorkflowStatus.FAILED,
                                   failure=failure)

    def _commit(self, batch: Batch, state: InstanceState | None,
                events: Iterable[HistoryEvent]) -> InstanceState | None:
        """Emit events to history and the resulting status; return the state after them."""
        events = list(events)
        for event in events:
            state = fold(state, event).state
        self._emit_history(batch, events)
        if state is not None:
            self._emit_status(batch, state)
            self._txn.states[state.instance_id] = state
        return state

    def _side_effects(self, batch: Batch, state: InstanceState | None, actions: list[HistoryEvent],
                      now: datetime, refused: dict[int, TaskFailed | ChildWorkflowFailed] | None = None,
                      ran_here: Collection[int] = ()) -> None:
        """Send what the step's actions ask for; ``ran_here``: tasks whose results are already
        in this step's history (local activities), which need no ``ActivityTask``."""
        if state is None:
            return
        for event in actions:
            payload = event.event
            failed = (refused or {}).get(getattr(payload, "task_id", -1))
            if isinstance(payload, TaskScheduled | ChildWorkflowScheduled) and failed is not None:
                # Its input is over the limit: the task fails instead of running.
                self._send(batch, event.instance_id, HistoryEvent(event.instance_id, event.execution_id, -1, now,
                                                                  failed))
            elif isinstance(payload, TaskScheduled):
                if payload.task_id in ran_here:
                    continue
                task = self._task(state, event, payload, now)
                self._emit_task(batch, task, payload.app_id, self._spans.headers(event.instance_id))
            elif isinstance(payload, ChildWorkflowScheduled):
                parent = ParentInstance(event.instance_id, event.execution_id, payload.task_id, state.name,
                                        self._caller_app(payload.app_id))
                start = ExecutionStarted(payload.name, payload.input, parent, None, payload.propagated_history)
                self._send(batch, payload.instance_id, HistoryEvent(payload.instance_id, "", -1, now, start),
                           headers=self._spans.headers(event.instance_id), app_id=payload.app_id)
            elif isinstance(payload, ExecutionCompleted):
                self._notify_parent(batch, state, payload, now)

    @staticmethod
    def _task(state: InstanceState, event: HistoryEvent, payload: TaskScheduled, now: datetime) -> ActivityTask:
        return ActivityTask(event.instance_id, event.execution_id, payload.task_id, payload.name, payload.input,
                            state.name, now, payload.propagated_history)

    def _notify_parent(self, batch: Batch, state: InstanceState, done: ExecutionCompleted, now: datetime) -> None:
        notice = parent_notice(state, done)
        if notice is not None and state.parent is not None:
            parent = state.parent
            event = HistoryEvent(parent.instance_id, parent.execution_id, -1, now, notice)
            self._send(batch, parent.instance_id, event, app_id=parent.app_id)

    def _terminate_children(self, batch: Batch, store: InstanceStore, state: InstanceState,
                            terminated: ExecutionTerminated, now: datetime) -> None:
        for item in store.open_items(state.instance_id).values():
            if item.kind == "child" and item.child_instance_id:
                stop = ExecutionTerminated(f"parent {state.instance_id} was terminated", None, True)
                self._send(batch, item.child_instance_id, HistoryEvent(item.child_instance_id, "", -1, now, stop),
                           app_id=item.child_app_id)

    def _send(self, batch: Batch, instance_id: str, event: HistoryEvent, headers: Any = None,
              app_id: str | None = None) -> None:
        """To the instance's partition of the inbox: this application's, or ``app_id``'s."""
        key = instance_id.encode()
        target = other_app(self.settings.app_id, app_id)
        topic, partitions = (self.inbox, self.partitions) if target is None else self.apps.inbox(target)
        batch.emit(topic, key, encode_event(event), partition=partition_for(key, partitions), headers=headers)

    def _emit_task(self, batch: Batch, task: ActivityTask, app_id: str | None, headers: Any) -> None:
        """To this application's workers, or to ``app_id``'s with the way back to this inbox."""
        target = other_app(self.settings.app_id, app_id)
        if target is None:
            batch.emit(self.activities, task.key, encode_task(task), headers=headers)
            return
        batch.emit(self.apps.activities(target), task.key, encode_task(replace(task, reply_to=self.inbox)),
                   headers=headers)

    def _caller_app(self, app_id: str | None) -> str | None:
        """What a child in application ``app_id`` records as its parent's application."""
        return None if other_app(self.settings.app_id, app_id) is None else self.settings.app_id

    def _history(self, store: InstanceStore, state: InstanceState) -> Sequence[HistoryEvent]:
        """The current execution's history: the store's, plus what this transaction added."""
        fresh = self._txn.history.get(state.instance_id)
        if not fresh:
            return store.history(state)
        if self._txn.began(state.instance_id):
            return list(fresh)
        committed = store.state(state.instance_id)
        assert committed is not None, f"{state.instance_id} has events in this transaction but no stored state"
        return [*store.history(committed), *fresh]

    def _emit_history(self, batch: Batch, events: Iterable[HistoryEvent]) -> None:
        events = list(events)
        metrics.history_emitted(events)
        self._spans.history_emitted(events)
        for event in events:
            instance_id = event.instance_id
            if isinstance(event.event, ExecutionStarted):
                # The execution this one replaces leaves the compacted history.
                previous = self._state(self._store(batch.store), instance_id)
                if previous is not None:
                    self._emit_tombstones(batch, instance_id, previous.next_sequence)
            batch.emit_changelog(event_key(instance_id, event.sequence), encode_event(event), decoded=event)
            if isinstance(event.event, PurgeRequested):
                self._emit_tombstones(batch, instance_id, event.sequence + 1)
                self._txn.history.pop(instance_id, None)
                continue
            if isinstance(event.event, ExecutionStarted):
                self._txn.history[instance_id] = []
            self._txn.history.setdefault(instance_id, []).append(event)

    def _emit_tombstones(self, batch: Batch, instance_id: str, length: int) -> None:
        """Tombstones on an execution's history keys: compaction removes its events."""
        for key in execution_keys(instance_id, length):
            batch.emit_changelog(key, None)

    def _emit_status(self, batch: Batch, state: InstanceState) -> None:
        """The instance's new status, written by ``_write_statuses`` (only its last one counts)."""
        self._txn.statuses[state.instance_id] = state

    def _write_statuses(self, batch: Batch) -> None:
        """Emit the last status of each instance this handler call changed, one record each."""
        statuses, self._txn.statuses = self._txn.statuses, {}
        for instance_id, state in statuses.items():
            if state is None:
                batch.emit(self.status, instance_id.encode(), None)
                continue
            batch.emit(self.status, instance_id.encode(), encode_status(state.status_record()))
            metrics.status_emitted(state)
            self._spans.status_emitted(state)

