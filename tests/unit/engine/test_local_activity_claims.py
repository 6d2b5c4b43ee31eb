"""The edge of local activities (``engine/edges/local_activities.py``) over a stand-in worker:
which run the worker's Kafka copy of a task gets, and when each run's slot is given back."""

from __future__ import annotations

import gc
import threading
from concurrent.futures import Future
from datetime import UTC, datetime
from typing import Any

from engine.core.history import TaskCompleted, TaskFailed
from engine.edges.activities import ActivityOutcome
from engine.edges.local_activities import LocalActivities
from engine.replay.registry import Registry
from engine.state.codec import ActivityTask
from engine.state.config import Settings

registry = Registry()


@registry.activity(name="plain")
def plain(ctx: Any, value: int) -> int:
    return value


@registry.activity(name="waits")
async def waits(ctx: Any, value: int) -> int:
    return value


class StandInWorker:
    """Runs nothing: each submitted task's future is completed by the test."""

    def __init__(self, max_payload_bytes: int = 1024) -> None:
        self.settings = Settings(max_payload_bytes=max_payload_bytes)
        self.registry = registry
        self.claimed: Any = None
        self.runs: dict[int, Future[tuple[ActivityOutcome, bool]]] = {}
        self.freed = 0
        self.slot_free = True

    def submit(self, task: ActivityTask, headers: Any = None) -> Future[tuple[ActivityOutcome, bool]]:
        self.runs[task.task_id] = Future()
        return self.runs[task.task_id]

    def has_free_slot(self) -> bool:
        return self.slot_free

    def free_slot(self) -> None:
        self.freed += 1


def task(task_id: int, name: str = "plain") -> ActivityTask:
    return ActivityTask("i", "e", task_id, name, str(task_id), "wf", datetime.now(UTC))


def finish(worker: StandInWorker, task_id: int, result: str = "1", holds_slot: bool = True) -> None:
    worker.runs[task_id].set_result((ActivityOutcome(result=result), holds_slot))


def make(**kwargs: Any) -> tuple[StandInWorker, LocalActivities]:
    worker = StandInWorker(**kwargs)
    local = LocalActivities(worker, max_claims=2)  # type: ignore[arg-type]
    assert worker.claimed == local.take
    return worker, local


def test_a_finished_run_gives_its_result_and_frees_its_slot_once_taken() -> None:
    worker, local = make()
    run = local.start(task(1), None)
    assert run is not None and run.wait(0) is None
    finish(worker, 1, "7")
    assert run.wait(0) == TaskCompleted(1, "7")
    assert worker.freed == 0, "held until the step's transaction has ended"
    run.taken()
    assert worker.freed == 1
    assert local.take(task(1)) is None, "a run taken in its step leaves no claim"


def test_a_result_over_the_payload_limit_fails_the_task() -> None:
    worker, local = make(max_payload_bytes=10)
    run = local.start(task(1), None)
    assert run is not None
    finish(worker, 1, '"' + "x" * 20 + '"')
    result = run.wait(0)
    assert isinstance(result, TaskFailed) and result.failure.type == "PayloadTooLarge"


def test_a_handed_over_run_goes_with_its_slot_to_the_worker_that_reads_its_task() -> None:
    worker, local = make()
    run = local.start(task(1), None)
    assert run is not None and run.wait(0) is None
    run.handed_over()
    claimed = local.take(task(1))
    assert claimed is worker.runs[1]
    finish(worker, 1)
    assert claimed.result() == (ActivityOutcome(result="1"), True), "the worker frees it after its commit"
    assert worker.freed == 0
    assert local.take(task(1)) is None, "taken once"


def test_a_handed_over_run_that_ends_before_its_task_is_read_frees_its_slot_at_once() -> None:
    worker, local = make()
    run = local.start(task(1), None)
    assert run is not None
    run.handed_over()
    finish(worker, 1)
    assert worker.freed == 1, "its task may be read by another process, or never"
    claimed = local.take(task(1))
    assert claimed is not None and claimed.result() == (ActivityOutcome(result="1"), False)
    assert worker.freed == 1


def test_claims_are_bounded_and_a_dropped_one_frees_its_slot_when_it_ends() -> None:
    worker, local = make()
    for task_id in (1, 2, 3):
        run = local.start(task(task_id), None)
        assert run is not None
        run.handed_over()
    assert local.claims == 2
    assert local.take(task(1)) is None, "the oldest was dropped"
    finish(worker, 1)
    assert worker.freed == 1


def test_a_plain_activity_runs_here_only_while_a_slot_is_free() -> None:
    worker, local = make()
    assert local.can_run("plain") and local.can_run("waits") and not local.can_run("unknown")
    worker.slot_free = False
    assert not local.can_run("plain")
    assert local.can_run("waits"), "an async activity takes no slot"


# -- early runs: a start step's activities, started once it committed ---------------------


def test_an_early_run_recorded_before_its_task_is_read_gives_the_worker_nothing_to_send() -> None:
    worker, local = make()
    run = local.start_early(task(1), None)
    assert run is not None
    finish(worker, 1, "7")
    assert run.wait(0) == TaskCompleted(1, "7")
    run.recorded()
    assert worker.freed == 1, "its result is durable: the slot is free"
    read = local.take(task(1))
    assert read is not None and read.result(0) == (None, False)
    assert worker.freed == 1


def test_an_early_run_read_before_its_record_waits_for_it() -> None:
    worker, local = make()
    run = local.start_early(task(1), None)
    assert run is not None
    finish(worker, 1, "7")
    read = local.take(task(1))
    assert read is not None and not read.done(), "the orchestrator has not decided yet"
    run.recorded()
    assert read.result(0) == (None, False) and worker.freed == 1


def test_an_early_run_released_goes_with_its_slot_to_the_worker_that_reads_its_task() -> None:
    worker, local = make()
    run = local.start_early(task(1), None)
    assert run is not None
    read = local.take(task(1))
    assert read is not None
    run.released()
    assert not read.done()
    finish(worker, 1, "7")
    outcome, holds_slot = read.result(0)
    assert outcome.result == "7" and holds_slot and worker.freed == 0, "freed by the worker after its commit"


def test_an_early_run_released_and_ended_before_its_task_is_read_frees_its_slot_at_once() -> None:
    worker, local = make()
    run = local.start_early(task(1), None)
    assert run is not None
    run.released()
    finish(worker, 1, "7")
    assert worker.freed == 1, "its task may be read by another process, or never"
    read = local.take(task(1))
    assert read is not None
    outcome, holds_slot = read.result(0)
    assert outcome.result == "7" and not holds_slot and worker.freed == 1


def test_a_task_read_between_its_commit_and_its_early_start_waits_for_the_early_run() -> None:
    worker, local = make()
    local.reserve_early(task(1))  # its step reserved it; the transaction has just committed
    taken: list[Any] = []
    reader = threading.Thread(target=lambda: taken.append(local.take(task(1))))
    reader.start()  # the worker reads the task before the orchestrator starts the run
    reader.join(0.2)
    assert reader.is_alive(), "the worker waits for the reserved early run instead of running it again"
    run = local.start_early(task(1), None)
    reader.join(5)
    assert run is not None and taken and taken[0] is not None, "the worker got the early run's claim"
    finish(worker, 1, "7")
    run.recorded()
    assert taken[0].result(1) == (None, False), "recorded: nothing to send, and nothing ran twice"
    assert list(worker.runs) == [1]


def test_a_reservation_dropped_by_an_abort_lets_the_worker_run_the_task() -> None:
    worker, local = make()
    local.reserve_early(task(1))
    taken: list[Any] = []
    reader = threading.Thread(target=lambda: taken.append(local.take(task(1))))
    reader.start()
    local.unreserve_early(task(1))
    reader.join(5)
    assert taken == [None], "no claim: the worker runs the task itself"


# -- memory: a run's bookkeeping is freed by reference counting alone ---------------------


def claim_paths(worker: StandInWorker, local: LocalActivities) -> None:
    """Every way a claim ends: handed over and read, handed over and ended first, early and
    recorded, early read before its record, early released before and after its read."""
    for task_id in (1, 2):
        run = local.start(task(task_id), None)
        assert run is not None
        run.handed_over()
    assert local.take(task(1)) is not None
    finish(worker, 1)
    finish(worker, 2)
    assert local.take(task(2)) is not None
    for task_id, read_first, record in ((3, False, True), (4, True, True), (5, True, False), (6, False, False)):
        early = local.start_early(task(task_id), None)
        assert early is not None
        read = local.take(task(task_id)) if read_first else None
        finish(worker, task_id)
        early.recorded() if record else early.released()
        read = read or local.take(task(task_id))
        assert read is not None and read.result(0) is not None


def test_ended_claims_leave_nothing_for_the_cycle_collector() -> None:
    worker, local = make()
    gc.collect()
    gc.disable()
    try:
        claim_paths(worker, local)
        worker.runs.clear()
        assert local.claims == 0
        assert gc.collect() == 0, "a claim's run, its callbacks and the claim formed a cycle"
    finally:
        gc.enable()
