"""Local activities at the edge: the orchestrator's steps run activities on this process's worker.

``LocalActivities`` is the ``LocalActivityRunner`` the host hands the orchestrator when
both run in one process (see ``engine/orchestration/local_activities.py`` for what a step
does with it). A task runs through ``ActivityWorker.submit``: the same runner, slots,
timeout, metrics and span as a task read from Kafka.

A run the step did not wait out is handed over: its ``ActivityTask`` goes to Kafka with
the step's commit, and it is kept here as a claim. When this process's worker reads that
task, it takes the claim and delivers the run's result (its slot held until the offset is
committed, as for any plain task) instead of running it again. Claims are bounded: the
oldest are dropped past ``MAX_CLAIMS`` (its task, if it is ever read, merely runs again).
A worker of another process that reads the task runs it, as before: at least once.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout

from engine.core.history import FailureDetails, TaskCompleted, TaskFailed
from engine.edges.activities import ActivityOutcome, result_event
from engine.edges.worker import ActivityWorker
from engine.state.codec import ActivityTask
from streams.handler import Headers

# Handed-over runs remembered for the worker: far more than one step hands over (eight at
# most), so only a worker that stopped reading its tasks lets claims go unused.
MAX_CLAIMS = 10_000

RunFuture = Future[tuple[ActivityOutcome, bool]]
ClaimKey = tuple[str, str, int]


def _key(task: ActivityTask) -> ClaimKey:
    return task.instance_id, task.execution_id, task.task_id


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
        self._claims: OrderedDict[ClaimKey, RunFuture] = OrderedDict()
        self._lock = threading.Lock()  # claims are added by the orchestrator, taken by the worker
        worker.claimed = self.take

    def can_run(self, name: str) -> bool:
        return self._worker.registry.get_activity(name) is not None

    def start(self, task: ActivityTask, headers: Headers | None) -> LocalRun | None:
        future = self._worker.submit(task, headers)
        return None if future is None else LocalRun(self, task, future)

    def take(self, task: ActivityTask) -> RunFuture | None:
        """The run of a task read from Kafka, if this process has it (it is then forgotten)."""
        with self._lock:
            return self._claims.pop(_key(task), None)

    @property
    def claims(self) -> int:
        """Handed-over runs not yet taken by the worker."""
        return len(self._claims)

    def hand_over(self, task: ActivityTask, future: RunFuture) -> None:
        """Keep a run the step did not wait out for the worker that reads its task."""
        with self._lock:
            replaced = self._claims.pop(_key(task), None)
            self._claims[_key(task)] = future
            dropped = [replaced] if replaced is not None else []
            while len(self._claims) > self._max_claims:
                dropped.append(self._claims.popitem(last=False)[1])
        for old in dropped:
            self.release_when_done(old)

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
        try:
            outcome, _ = self._future.result(timeout_s)
        except FutureTimeout:
            return None
        except Exception as err:  # the runner catches activity errors; this is a bug guard
            outcome = ActivityOutcome(failure=FailureDetails(type(err).__name__, str(err)))
        return result_event(self._task.task_id, self._task.name, outcome, self._owner.max_payload_bytes)

    def taken(self) -> None:
        # Its result is in the step's history: the slot is free once the run has ended.
        self._owner.release_when_done(self._future)

    def handed_over(self) -> None:
        self._owner.hand_over(self._task, self._future)


def _holds_slot(future: RunFuture) -> bool:
    try:
        return future.result()[1]
    except Exception:
        return False
