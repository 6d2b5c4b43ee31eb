"""Local activities at the edge: the orchestrator's steps run activities on this process's worker.

``LocalActivities`` is the ``LocalActivityRunner`` the host hands the orchestrator when
both run in one process (see ``engine/orchestration/local_activities.py`` for what a step
does with it). A task runs through ``ActivityWorker.submit``: the same runner, slots,
timeout, metrics and span as a task read from Kafka.

A run the step did not wait out is handed over: its ``ActivityTask`` goes to Kafka with
the step's commit, and it is kept here as a claim. When this process's worker reads that
task, it takes the claim and delivers the run's result instead of running it again; the
run's slot goes with it and is freed once the offset is committed, as for any plain task.
A run that ends before its task is read gives its slot back at once (the task may go to
another process's worker, or never come), so its result in transit holds no slot. Claims
are bounded: the oldest are dropped past ``MAX_CLAIMS`` (a dropped one's task, if it is
ever read, merely runs again). A worker of another process that reads the task runs it,
as before: at least once.

An early run (a start step's activity, started once that step committed) is a claim from
its start, whose fate the orchestrator decides after its next transaction: recorded (the
worker that reads the task delivers nothing, the slot is given back at once) or released
(it becomes a handed-over run as above). A worker that reads the task before the decision
waits for it without blocking.
"""

from __future__ import annotations

import inspect
import threading
import time
from collections import OrderedDict
from concurrent.futures import Future, wait
from dataclasses import dataclass, field

from engine.core.history import FailureDetails, TaskCompleted, TaskFailed
from engine.edges.activities import ActivityOutcome, result_event
from engine.edges.worker import ActivityWorker
from engine.state.codec import ActivityTask
from streams.handler import Headers

# Handed-over runs remembered for the worker: far more than one step hands over (eight at
# most), so only a worker that stopped reading its tasks lets claims go unused.
MAX_CLAIMS = 10_000
# The longest the worker waits for a reserved early run to be started (it is started right
# after its transaction commits; this bound only guards against a stopped orchestrator).
RESERVATION_WAIT_S = 5.0

RunFuture = Future[tuple[ActivityOutcome, bool]]
ClaimKey = tuple[str, str, int]


def _key(task: ActivityTask) -> ClaimKey:
    return task.instance_id, task.execution_id, task.task_id


@dataclass
class _Slot:
    # Given back, or someone else's to give back: the run ended before the worker read its
    # task, or the claim was dropped.
    settled: bool = False


@dataclass
class _Claim:
    future: RunFuture
    # Apart from the claim so that the run's callbacks can hold it: a callback holding the
    # claim, which holds the run, would make a cycle only the cycle collector frees.
    slot: _Slot = field(default_factory=_Slot)
    # An early run's fate: True once a transaction recorded its result, False once released;
    # None for a run handed over by a step.
    recorded: Future[bool] | None = None


class LocalActivities:
    """Runs the orchestrator's local activities on ``worker`` and keeps the handed-over ones.

    Args:
        worker: This process's activity worker; its ``claimed`` hook is set to this.
        max_claims: Handed-over runs remembered at most.
    """

    def __init__(self, worker: ActivityWorker, max_claims: int = MAX_CLAIMS) -> None:
        self._worker = worker
        self.max_payload_bytes = worker.settings.max_payload_bytes
        self._max_claims = max_claims
        self._claims: OrderedDict[ClaimKey, _Claim] = OrderedDict()
        # Claims are added by the orchestrator, taken by the worker.
        self._lock = threading.Condition(threading.Lock())
        # Early runs a transaction will start once it commits: the worker can read their
        # tasks the moment it commits, before the run is started and claimed here.
        self._reserved: set[ClaimKey] = set()
        worker.claimed = self.take

    def can_run(self, name: str) -> bool:
        entry = self._worker.registry.get_activity(name)
        if entry is None:
            return False
        # A plain one waiting for a slot would only wait out the budget: send it through Kafka.
        return inspect.iscoroutinefunction(entry.fn) or self._worker.has_free_slot()

    def start(self, task: ActivityTask, headers: Headers | None) -> LocalRun | None:
        future = self._worker.submit(task, headers)
        return None if future is None else LocalRun(self, task, future)

    def reserve_early(self, task: ActivityTask) -> None:
        with self._lock:
            self._reserved.add(_key(task))

    def unreserve_early(self, task: ActivityTask) -> None:
        with self._lock:
            self._reserved.discard(_key(task))
            self._lock.notify_all()

    def start_early(self, task: ActivityTask, headers: Headers | None) -> EarlyRun | None:
        try:
            future = self._worker.submit(task, headers)
            if future is None:
                return None
            claim = _Claim(future, recorded=Future())
            self._remember(_key(task), claim)
            return EarlyRun(self, task, claim)
        finally:
            self.unreserve_early(task)

    def take(self, task: ActivityTask) -> RunFuture | None:
        """The run of a task read from Kafka, if this process has it (it is then forgotten).

        Its slot, if it still holds one, goes with it: the worker frees it once the task's
        offset is committed, as for any plain task. An early run whose result a transaction
        recorded gives an outcome of None: nothing to deliver.
        """
        key = _key(task)
        with self._lock:
            # Read between its step's commit and its early run's start: wait for the claim.
            deadline = time.monotonic() + RESERVATION_WAIT_S
            while key in self._reserved and deadline > time.monotonic():
                self._lock.wait(deadline - time.monotonic())
            claim = self._claims.pop(key, None)
            if claim is None:
                return None
            if claim.recorded is None or claim.recorded.done():
                settled, claim.slot.settled = claim.slot.settled, True
            else:
                settled = False  # decided by ``EarlyRun``, which knows whether it was taken
        if claim.recorded is None:
            return _without_slot(claim.future) if settled else claim.future
        return _after_decision(claim, settled)

    @property
    def claims(self) -> int:
        """Handed-over runs not yet taken by the worker."""
        return len(self._claims)

    def hand_over(self, task: ActivityTask, future: RunFuture) -> None:
        """Keep a run the step did not wait out for the worker that reads its task."""
        claim = _Claim(future)
        self._remember(_key(task), claim)
        slot = claim.slot
        future.add_done_callback(lambda done: self._ended_unclaimed(slot, done))

    def _remember(self, key: ClaimKey, claim: _Claim) -> None:
        dropped = []
        with self._lock:
            replaced = self._claims.pop(key, None)
            self._claims[key] = claim
            if replaced is not None:
                dropped.append(replaced)
            while len(self._claims) > self._max_claims:
                dropped.append(self._claims.popitem(last=False)[1])
            unsettled = [old for old in dropped if not old.slot.settled]
            for old in dropped:
                old.slot.settled = True
        for old in unsettled:
            self.release_when_done(old.future)

    def _ended_unclaimed(self, slot: _Slot, run: RunFuture) -> None:
        # Its task may be read by another process's worker, or never: do not keep the slot.
        with self._lock:
            if slot.settled:
                return
            slot.settled = True
        self.release_when_done(run)

    def release_when_done(self, future: RunFuture) -> None:
        """No one will deliver this run's result: give its slot back once it ends."""
        future.add_done_callback(lambda done: self._worker.free_slot() if _holds_slot(done) else None)


class LocalRun:
    """One task started for a step (the ``LocalActivity`` of the orchestrator's protocol)."""

    def __init__(self, owner: LocalActivities, task: ActivityTask, future: RunFuture) -> None:
        self._owner = owner
        self._task = task
        self._future = future

    def wait(self, timeout_s: float) -> TaskCompleted | TaskFailed | None:
        done, _ = wait([self._future], timeout_s)
        if not done:
            return None
        outcome = _outcome_of(self._future)
        return result_event(self._task.task_id, self._task.name, outcome, self._owner.max_payload_bytes)

    def taken(self) -> None:
        # Its result is durable (or its step will run again): the slot is free.
        self._owner.release_when_done(self._future)

    def handed_over(self) -> None:
        self._owner.hand_over(self._task, self._future)


class EarlyRun:
    """A start step's task started once that step committed (the orchestrator's ``EarlyActivity``)."""

    def __init__(self, owner: LocalActivities, task: ActivityTask, claim: _Claim) -> None:
        self._owner = owner
        self._task = task
        self._claim = claim

    def wait(self, timeout_s: float) -> TaskCompleted | TaskFailed | None:
        return LocalRun(self._owner, self._task, self._claim.future).wait(timeout_s)

    def done(self) -> bool:
        return self._claim.future.done()

    def recorded(self) -> None:
        owner, claim = self._owner, self._claim
        assert claim.recorded is not None
        # Decided under the lock, so that ``take`` sees either no decision or this one whole.
        with owner._lock:
            settled, claim.slot.settled = claim.slot.settled, True
            claim.recorded.set_result(True)
        if not settled:
            owner.release_when_done(claim.future)  # its result is durable: the slot is free

    def released(self) -> None:
        owner, claim = self._owner, self._claim
        assert claim.recorded is not None
        with owner._lock:
            waiting = owner._claims.get(_key(self._task)) is claim
            claim.recorded.set_result(False)
        if waiting:  # not read yet: a handed-over run from now on
            slot = claim.slot
            claim.future.add_done_callback(lambda done: owner._ended_unclaimed(slot, done))


def _after_decision(claim: _Claim, settled: bool) -> RunFuture:
    """What the worker delivers for an early run it read: nothing once recorded, else the run's outcome."""
    assert claim.recorded is not None
    answer: RunFuture = Future()
    run = claim.future  # not the claim: it holds ``recorded``, whose callback this is

    def decided(recorded: Future[bool]) -> None:
        if recorded.result():
            answer.set_result((None, False))  # type: ignore[arg-type]
        else:
            delivered = _without_slot(run) if settled else run
            delivered.add_done_callback(lambda done: answer.set_result(done.result()))

    claim.recorded.add_done_callback(decided)
    return answer


def _without_slot(future: RunFuture) -> RunFuture:
    """The same run's outcome, holding no slot (its slot was given back already)."""
    plain: RunFuture = Future()
    future.add_done_callback(lambda done: plain.set_result((_outcome_of(done), False)))
    return plain


def _outcome_of(future: RunFuture) -> ActivityOutcome:
    try:
        return future.result()[0]
    except Exception as err:  # the runner catches activity errors; this is a bug guard
        return ActivityOutcome(failure=FailureDetails(type(err).__name__, str(err)))


def _holds_slot(future: RunFuture) -> bool:
    try:
        return future.result()[1]
    except Exception:
        return False
