"""Local activities: a step runs the activities its own process can run, and goes on.

When the host hands the orchestrator a ``LocalActivityRunner`` (this process runs an
activity worker too), a step that schedules activities the runner has starts them at
once, waits up to ``KWF_LOCAL_ACTIVITY_BUDGET_MS`` for them, and records ``TaskScheduled``
and the result in the same transaction; the workflow replays on in the same step, so the
rest of a chain of quick activities is one transaction and no trip through Kafka. An activity not
done within the budget becomes an ordinary task: its ``ActivityTask`` is emitted as today
and the runner delivers its result the ordinary way, without running it a second time.
At least once, like any activity: a crash before the commit runs them again, which is why
a step inlines at most ``MAX_LOCAL_PER_STEP`` of them.

The step that starts an execution runs none inside its transaction: what they do must
never be seen before the instance shows RUNNING. Its activities are sent as tasks, and
once its transaction has committed (RUNNING is visible) the orchestrator starts the ones
the runner has at once, as early runs (``EarlyActivity``), and asks the processor for a
transaction as soon as they have finished (``ready_partitions``; meanwhile the processor
polls in short slices, so inbox records that arrive join it): that transaction takes their
results as if they had come through the inbox and the workflow goes on there, local
activities and all. A chain3 of trivial activities is then two transactions back to back and no trip
through Kafka between them. The task stays the durable record: an early run whose result
the next transaction did not record (not finished within the budget, the transaction
aborted, the partition revoked) is left to the worker that reads its task, which delivers
that run's result instead of running it again; one that was recorded is skipped by that
worker. A crash between the commit and the record leaves the task to be run again by any
worker: at least once, as before. (A worker of this process that read the task before its
early run was registered runs it too; the second result is refused as a duplicate. The
commit's markers reach readers after the commit returns, so this is rare.)

The runner lives at the edge (``engine/edges/local_activities.py``); this module holds
the protocol the orchestrator sees and the plain decisions around it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from engine.core.history import HistoryEvent, TaskCompleted, TaskFailed, TaskScheduled
from engine.state.codec import ActivityTask
from streams.handler import Headers

# Activities one step runs in this process: a crash before the step's commit runs them
# again, and a fan-out beyond this goes to the workers through Kafka as before.
MAX_LOCAL_PER_STEP = 8
# What all the steps of one transaction wait for local activities at most: far below the
# orchestrator's 10 s transaction timeout, and a batch of many instances whose activities
# are slow sends the rest through Kafka rather than waiting on each in turn.
MAX_LOCAL_WAIT_PER_TRANSACTION_S = 1.0


class LocalActivity(Protocol):
    """One activity started in this process for a step of the orchestrator."""

    def wait(self, timeout_s: float) -> TaskCompleted | TaskFailed | None:
        """Its result, once it finished within ``timeout_s``; None if it is still running."""
        ...

    def taken(self) -> None:
        """Its result went into a step's history and that transaction has ended (committed,
        or aborted and to be run again): nothing more will ask for it."""
        ...

    def handed_over(self) -> None:
        """It did not finish in time: its task goes out as an ``ActivityTask``, and the
        worker that reads it delivers this run's result instead of running it again."""
        ...


class EarlyActivity(Protocol):
    """One activity of a start step, started here once that step's transaction committed."""

    def wait(self, timeout_s: float) -> TaskCompleted | TaskFailed | None:
        """Its result, once it finished within ``timeout_s``; None if it is still running."""
        ...

    def done(self) -> bool:
        """Whether it has finished."""
        ...

    def recorded(self) -> None:
        """A committed transaction took its result: the worker that reads its task skips it."""
        ...

    def released(self) -> None:
        """No transaction took its result: the worker that reads its task delivers it."""
        ...


class LocalActivityRunner(Protocol):
    """Runs activities on this process's worker (its executor, limits and observability)."""

    def can_run(self, name: str) -> bool:
        """Whether an activity of this name can run here now."""
        ...

    def start(self, task: ActivityTask, headers: Headers | None) -> LocalActivity | None:
        """Start the task at once; None if it cannot start (the worker has stopped)."""
        ...

    def reserve_early(self, task: ActivityTask) -> None:
        """Before the commit: the worker reading this task waits for ``start_early`` or
        ``unreserve_early`` instead of running it itself."""
        ...

    def unreserve_early(self, task: ActivityTask) -> None:
        """The transaction that would have started it aborted."""
        ...

    def start_early(self, task: ActivityTask, headers: Headers | None) -> EarlyActivity | None:
        """Start a committed task at once, kept for the worker that reads it until
        ``recorded`` or ``released``; None if it cannot start."""
        ...


@dataclass(frozen=True)
class LocalWait:
    """A step's local activities, started: it waits for them up to ``budget_s``, together
    with the other instances' steps of the same handler call (``collect_together``)."""

    runs: Mapping[int, LocalActivity]
    budget_s: float


def pick_local(actions: Sequence[HistoryEvent], refused: Mapping[int, object], can_run: Callable[[str], bool],
               allowance: int) -> list[HistoryEvent]:
    """The scheduled activities of a step to run here: registered here, not refused (input
    over the payload limit), at most ``allowance`` of them, in the order scheduled."""
    picked: list[HistoryEvent] = []
    for event in actions:
        if len(picked) >= allowance:
            break
        payload = event.event
        if isinstance(payload, TaskScheduled) and payload.task_id not in refused and can_run(payload.name):
            picked.append(event)
    return picked


def collect(started: Mapping[int, LocalActivity], deadline: float) -> dict[int, TaskCompleted | TaskFailed]:
    """Wait for the started activities until ``deadline`` (``time.monotonic``); return the
    results of those that finished, by task ID, and hand the others over. The caller tells
    the finished ones ``taken`` once its transaction has ended."""
    finished: dict[int, TaskCompleted | TaskFailed] = {}
    for task_id, run in started.items():
        result = run.wait(max(0.0, deadline - time.monotonic()))
        if result is None:
            run.handed_over()
        else:
            finished[task_id] = result
    return finished


def collect_together(waits: Sequence[LocalWait], began: float,
                     cap_s: float) -> list[tuple[dict[int, TaskCompleted | TaskFailed], float]]:
    """``collect`` for the waits of several steps, whose runs all started before ``began``
    (``time.monotonic``), in turn: each waits up to its budget from when its turn comes, as
    it would alone, and all of them no longer than ``cap_s`` after ``began`` (the
    transaction's bound). The runs go on meanwhile, so the whole costs about the longest
    run, not the sum of them. Returns, for each wait in order, its finished results and the
    seconds its own turn took (what counts against that step's budget)."""
    collected = []
    for wait in waits:
        turn = time.monotonic()
        finished = collect(wait.runs, min(turn + wait.budget_s, began + cap_s))
        collected.append((finished, time.monotonic() - turn))
    return collected
