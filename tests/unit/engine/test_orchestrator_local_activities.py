"""Local activities in the orchestrator's loop, without Kafka: a step runs the activities a
``LocalActivityRunner`` has and records their results in the same transaction.

The runner here is a stand-in whose runs finish (or not) as each test says, so the tests
look only at what the orchestrator decides and emits.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import engine as wf
from engine.core.history import (
    ExecutionCompleted,
    ExecutionStarted,
    FailureDetails,
    TaskCompleted,
    TaskFailed,
    TaskScheduled,
    TimerCreated,
    WorkflowStatus,
)
from engine.orchestration.local_activities import MAX_LOCAL_PER_STEP, LocalWait, collect_together
from engine.orchestration.orchestrator import STEPS_WAITING_TOGETHER
from engine.replay.registry import Registry
from engine.state.codec import ActivityTask, decode_status
from streams.handler import Headers
from tests.unit.engine.orchestrator_harness import OrchestratorHarness, proposed

registry = Registry()


@registry.activity(name="step")
def step(ctx: wf.WorkflowActivityContext, value: int) -> int:
    return value + 1


@registry.activity(name="remote_step")
def remote_step(ctx: wf.WorkflowActivityContext, value: int) -> int:
    return value + 100


@registry.activity(name="flaky")
def flaky(ctx: wf.WorkflowActivityContext, value: int) -> int:
    return value


@registry.workflow(name="chain3")
def chain3(ctx: wf.DaprWorkflowContext, value: int):
    value = yield ctx.call_activity(step, input=value)
    value = yield ctx.call_activity(step, input=value)
    value = yield ctx.call_activity(step, input=value)
    return value


@registry.workflow(name="mixed")
def mixed(ctx: wf.DaprWorkflowContext, value: int):
    value = yield ctx.call_activity(remote_step, input=value)
    value = yield ctx.call_activity(step, input=value)
    return value


@registry.workflow(name="retried")
def retried(ctx: wf.DaprWorkflowContext, value: int):
    value = yield ctx.call_activity(step, input=value)
    policy = wf.RetryPolicy(first_retry_interval=timedelta(seconds=1), max_number_of_attempts=3)
    value = yield ctx.call_activity(flaky, input=value, retry_policy=policy)
    return value


@registry.workflow(name="fan_out")
def fan_out(ctx: wf.DaprWorkflowContext, count: int):
    yield ctx.call_activity(step, input=0)
    results = yield wf.when_all([ctx.call_activity(step, input=i) for i in range(count)])
    return sum(results)


Outcome = Callable[[ActivityTask], TaskCompleted | TaskFailed | None]


def add_one(task: ActivityTask) -> TaskCompleted:
    return TaskCompleted(task.task_id, str(int(task.input or "0") + 1))


class StandInRun:
    def __init__(self, runner: StandInRunner, task: ActivityTask, result: TaskCompleted | TaskFailed | None) -> None:
        self.runner, self.task, self.result = runner, task, result

    def wait(self, timeout_s: float) -> TaskCompleted | TaskFailed | None:
        return self.result

    def taken(self) -> None:
        self.runner.taken.append(self.task)

    def handed_over(self) -> None:
        self.runner.handed_over.append(self.task)


class StandInEarlyRun:
    def __init__(self, runner: StandInRunner, task: ActivityTask, result: TaskCompleted | TaskFailed | None) -> None:
        self.runner, self.task, self.result = runner, task, result

    def wait(self, timeout_s: float) -> TaskCompleted | TaskFailed | None:
        return self.result

    def done(self) -> bool:
        return self.result is not None

    def recorded(self) -> None:
        self.runner.recorded.append(self.task)

    def released(self) -> None:
        self.runner.released.append(self.task)


class StandInRunner:
    """Runs the activities named in ``outcomes``: each gives the result, or None for a run
    that does not finish within the budget."""

    def __init__(self, outcomes: dict[str, Outcome]) -> None:
        self.outcomes = outcomes
        self.started: list[ActivityTask] = []
        self.taken: list[ActivityTask] = []
        self.handed_over: list[ActivityTask] = []
        self.early: list[ActivityTask] = []  # started once a start step committed
        self.recorded: list[ActivityTask] = []
        self.released: list[ActivityTask] = []
        self.reserved: set[int] = set()

    def can_run(self, name: str) -> bool:
        return name in self.outcomes

    def start(self, task: ActivityTask, headers: Headers | None) -> StandInRun:
        self.started.append(task)
        return StandInRun(self, task, self.outcomes[task.name](task))

    def reserve_early(self, task: ActivityTask) -> None:
        self.reserved.add(task.task_id)

    def unreserve_early(self, task: ActivityTask) -> None:
        self.reserved.discard(task.task_id)

    def start_early(self, task: ActivityTask, headers: Headers | None) -> StandInEarlyRun:
        assert task.task_id in self.reserved  # reserved by its step, before the commit
        self.reserved.discard(task.task_id)
        self.early.append(task)
        return StandInEarlyRun(self, task, self.outcomes[task.name](task))


@pytest.fixture
def make(tmp_path: Path) -> Iterator[Callable[..., OrchestratorHarness]]:
    made: list[OrchestratorHarness] = []

    def build(runner: StandInRunner | None, budget_ms: float = 20.0) -> OrchestratorHarness:
        harness = OrchestratorHarness(registry, tmp_path / str(len(made)), local_activities=runner,
                                      local_activity_budget_ms=budget_ms)
        made.append(harness)
        return harness

    yield build
    for harness in made:
        harness.close()


def kinds(events: list) -> list[str]:
    return [type(e.event).__name__ for e in events]


def started(harness: OrchestratorHarness, instance_id: str, workflow: str, value: str) -> str:
    """Start an instance; its first step's activity goes through Kafka: deliver its result
    as a worker would, run by ``add_one``. Returns the execution ID."""
    out = harness.deliver(proposed(instance_id, ExecutionStarted(workflow, value)))
    assert kinds(out.history) == ["ExecutionStarted", "TaskScheduled"]
    assert [t.task_id for t in out.tasks] == [0]
    return out.history[0].execution_id


def test_the_start_step_sends_its_activities_and_runs_them_here_once_committed(
        make: Callable[..., OrchestratorHarness]) -> None:
    runner = StandInRunner({"step": add_one})
    harness = make(runner)
    turn = harness.driven.process(proposed("c", ExecutionStarted("chain3", "1")), commit=False)
    assert [(t.task_id, t.name, t.input) for t in harness.tasks(turn.emitted)] == [(0, "step", "1")]
    assert runner.started == runner.early == [], "what an activity does must not precede a visible RUNNING"
    assert list(harness.orchestrator.ready_partitions()) == []
    harness.driven.commit(turn)
    assert [(t.task_id, t.input) for t in runner.early] == [(0, "1")] and runner.started == []
    assert list(harness.orchestrator.ready_partitions()) == [0], "its result is wanted at once"


def test_the_next_transaction_records_an_early_result_and_the_chain_goes_on_in_it(
        make: Callable[..., OrchestratorHarness]) -> None:
    runner = StandInRunner({"step": add_one})
    harness = make(runner)
    harness.deliver(proposed("c", ExecutionStarted("chain3", "1")))
    turn = harness.driven.punctuate(0, commit=False)
    assert harness.tasks(turn.emitted) == [], "the other two run in the step"
    assert list(harness.orchestrator.ready_partitions()) == []
    assert runner.recorded == [], "recorded only once its transaction committed"
    harness.driven.commit(turn)
    harness._keep(turn)
    assert kinds(harness.history) == ["ExecutionStarted", "TaskScheduled", "TaskCompleted", "TaskScheduled",
                                      "TaskCompleted", "TaskScheduled", "TaskCompleted", "ExecutionCompleted"]
    assert [t.task_id for t in runner.recorded] == [0] and runner.released == []
    done = harness.history[-1].event
    assert isinstance(done, ExecutionCompleted) and done.output == "4"
    # The worker's copy of the result, had it delivered one, is refused.
    out = harness.deliver(proposed("c", TaskCompleted(0, "2"), harness.history[0].execution_id))
    assert out.history == [] and out.tasks == []


def test_an_early_run_not_done_within_the_budget_is_left_to_the_worker(
        make: Callable[..., OrchestratorHarness]) -> None:
    runner = StandInRunner({"step": lambda task: None})
    harness = make(runner, budget_ms=60_000)
    execution = harness.deliver(proposed("c", ExecutionStarted("chain3", "1"))).history[0].execution_id
    assert harness.orchestrator.ready_soon() and list(harness.orchestrator.ready_partitions()) == [], \
        "not finished and within its budget: input may join the transaction that records it"
    assert harness.punctuate(0) == []
    assert [t.task_id for t in runner.released] == [0] and runner.recorded == []
    assert list(harness.orchestrator.ready_partitions()) == []
    runner.outcomes["step"] = add_one
    out = harness.deliver(proposed("c", TaskCompleted(0, "2"), execution))
    assert kinds(out.history)[0] == "TaskCompleted" and kinds(out.history)[-1] == "ExecutionCompleted"


def test_an_aborted_transaction_leaves_its_early_results_to_the_worker(
        make: Callable[..., OrchestratorHarness]) -> None:
    runner = StandInRunner({"step": add_one})
    harness = make(runner)
    execution = harness.deliver(proposed("c", ExecutionStarted("chain3", "1"))).history[0].execution_id
    harness.driven.punctuate(0, commit=False)
    harness.driven.abort()
    assert [t.task_id for t in runner.released] == [0] and runner.recorded == []
    out = harness.deliver(proposed("c", TaskCompleted(0, "2"), execution))
    assert kinds(out.history)[-1] == "ExecutionCompleted"


def test_a_revoked_partition_leaves_its_waiting_early_runs_to_the_worker(
        make: Callable[..., OrchestratorHarness]) -> None:
    runner = StandInRunner({"step": add_one})
    harness = make(runner)
    harness.deliver(proposed("c", ExecutionStarted("chain3", "1")))
    harness.orchestrator.on_partition_revoked(0)
    assert [t.task_id for t in runner.released] == [0]
    assert list(harness.orchestrator.ready_partitions()) == []


def test_a_deferred_start_sends_its_first_activities_through_kafka_when_it_begins(
        make: Callable[..., OrchestratorHarness]) -> None:
    runner = StandInRunner({"step": add_one})
    harness = make(runner)
    at = datetime.now(UTC) + timedelta(seconds=30)
    out = harness.deliver(proposed("d", ExecutionStarted("chain3", "1", None, at)))
    assert kinds(out.history) == ["ExecutionStarted"] and out.tasks == [], "PENDING until its time"
    fired = harness.punctuate(int(at.timestamp() * 1000) + 1)
    assert [t.task_id for t in harness.tasks(fired)] == [0]
    assert runner.started == [], "what an activity does must not precede a visible RUNNING"
    assert [t.task_id for t in runner.early] == [0], "once its start is committed it runs here"


def test_the_rest_of_a_chain_completes_in_one_transaction(make: Callable[..., OrchestratorHarness]) -> None:
    runner = StandInRunner({"step": add_one})
    harness = make(runner)
    execution = started(harness, "c", "chain3", "1")
    out = harness.deliver(proposed("c", TaskCompleted(0, "2"), execution))
    assert kinds(out.history) == ["TaskCompleted", "TaskScheduled", "TaskCompleted", "TaskScheduled",
                                  "TaskCompleted", "ExecutionCompleted"]
    assert [e.sequence for e in out.history] == list(range(2, 8))
    assert out.tasks == [], "a local activity needs no ActivityTask"
    done = out.history[-1].event
    assert isinstance(done, ExecutionCompleted) and done.output == "4"
    status = harness.status("c")
    assert status is not None and status.runtime_status is WorkflowStatus.COMPLETED
    assert [t.task_id for t in runner.started] == [t.task_id for t in runner.taken] == [1, 2]
    assert runner.started[0].instance_id == "c" and runner.started[0].workflow_name == "chain3"
    assert runner.started[0].execution_id == execution and runner.started[0].input == "2"
    assert runner.handed_over == []


def test_a_chain3_writes_one_status_record_per_transaction(make: Callable[..., OrchestratorHarness]) -> None:
    runner = StandInRunner({"step": add_one})
    harness = make(runner)
    start = harness.deliver(proposed("c", ExecutionStarted("chain3", "1")))
    assert [decode_status(v).runtime_status for v in start.statuses if v is not None] == [WorkflowStatus.RUNNING]
    rest = harness.punctuate(0)
    assert [s.runtime_status for s in harness.statuses(rest)] == [WorkflowStatus.COMPLETED], \
        "three steps in one transaction, one status record: the last"
    status = harness.status("c")
    assert status is not None and status.output == "4"


class LoggingRunner(StandInRunner):
    """Logs when each run starts and when the orchestrator waits for it."""

    def __init__(self, outcomes: dict[str, Outcome]) -> None:
        super().__init__(outcomes)
        self.log: list[str] = []

    def start(self, task: ActivityTask, headers: Headers | None) -> StandInRun:
        self.log.append(f"start {task.instance_id}{task.task_id}")
        run = super().start(task, headers)
        waited = run.wait
        run.wait = lambda timeout_s: (self.log.append(f"wait {task.instance_id}{task.task_id}"), waited(timeout_s))[1]
        return run


def test_the_instances_of_a_batch_wait_for_their_local_activities_together(
        make: Callable[..., OrchestratorHarness]) -> None:
    runner = LoggingRunner({"step": add_one})
    harness = make(runner)
    executions = [started(harness, instance_id, "chain3", "1") for instance_id in ("a", "b")]
    emitted = harness.feed([proposed(instance_id, TaskCompleted(0, "2"), execution)
                            for instance_id, execution in zip(("a", "b"), executions, strict=True)])
    assert runner.log == ["start a1", "start b1", "wait a1", "wait b1", "start a2", "start b2", "wait a2", "wait b2"]
    assert [(s.instance_id, s.runtime_status, s.output) for s in harness.statuses(emitted)] == \
        [("a", WorkflowStatus.COMPLETED, "4"), ("b", WorkflowStatus.COMPLETED, "4")]


def test_a_batch_waits_together_in_groups_that_leave_worker_slots_for_the_next(
        make: Callable[..., OrchestratorHarness]) -> None:
    runner = LoggingRunner({"step": add_one})
    harness = make(runner)
    names = [f"i{n}-" for n in range(STEPS_WAITING_TOGETHER + 1)]
    executions = [started(harness, instance_id, "chain3", "1") for instance_id in names]
    harness.feed([proposed(instance_id, TaskCompleted(0, "2"), execution)
                  for instance_id, execution in zip(names, executions, strict=True)])
    group = names[:STEPS_WAITING_TOGETHER]
    assert runner.log[:2 * len(group)] == [f"start {n}1" for n in group] + [f"wait {n}1" for n in group]
    assert runner.log[-4:] == [f"start {names[-1]}1", f"wait {names[-1]}1", f"start {names[-1]}2",
                               f"wait {names[-1]}2"], "the last instance waits in a group of its own"


class SlowRunner(StandInRunner):
    """Each run takes ``seconds`` to be waited out."""

    def __init__(self, outcomes: dict[str, Outcome], seconds: float) -> None:
        super().__init__(outcomes)
        self.seconds = seconds

    def start(self, task: ActivityTask, headers: Headers | None) -> StandInRun:
        run = super().start(task, headers)
        waited = run.wait
        run.wait = lambda timeout_s: (time.sleep(min(timeout_s, self.seconds)), waited(timeout_s))[1]
        return run


def test_a_step_of_a_group_spends_only_its_own_turns_of_the_wait_from_its_budget(
        make: Callable[..., OrchestratorHarness]) -> None:
    runner = SlowRunner({"step": add_one}, seconds=0.03)
    harness = make(runner, budget_ms=50)
    names = ["a", "b", "c"]
    executions = [started(harness, instance_id, "chain3", "1") for instance_id in names]
    emitted = harness.feed([proposed(instance_id, TaskCompleted(0, "2"), execution)
                            for instance_id, execution in zip(names, executions, strict=True)])
    assert harness.tasks(emitted) == [], "a round of 90 ms left each step 20 ms of its own 50"
    assert [s.runtime_status for s in harness.statuses(emitted)] == [WorkflowStatus.COMPLETED] * 3


class TimedRun:
    """Records the timeouts it was waited with; finishes at once."""

    def __init__(self, timeouts: list[float]) -> None:
        self.timeouts = timeouts

    def wait(self, timeout_s: float) -> TaskCompleted:
        self.timeouts.append(timeout_s)
        return TaskCompleted(0, "1")

    def taken(self) -> None: ...

    def handed_over(self) -> None: ...


def test_each_wait_of_a_group_has_its_own_budget_within_the_transactions_bound() -> None:
    timeouts: list[float] = []
    waits = [LocalWait({0: TimedRun(timeouts)}, 0.5), LocalWait({0: TimedRun(timeouts)}, 0.5)]
    assert [found for found, _ in collect_together(waits, time.monotonic(), 10.0)] == [{0: TaskCompleted(0, "1")}] * 2
    assert all(0.4 < t <= 0.5 for t in timeouts), timeouts
    timeouts.clear()
    collect_together(waits, time.monotonic() - 9.8, 10.0)
    assert all(t <= 0.2 for t in timeouts), timeouts
    timeouts.clear()
    collect_together(waits, time.monotonic() - 11.0, 10.0)
    assert timeouts == [0.0, 0.0], "past the transaction's bound a wait only takes what finished"


def test_a_step_that_fails_leaves_no_local_run_of_its_batch_untold(
        make: Callable[..., OrchestratorHarness]) -> None:
    runner = StandInRunner({"step": add_one})
    harness = make(runner)
    executions = [started(harness, instance_id, "chain3", "1") for instance_id in ("a", "b")]
    starting = runner.start

    def start(task: ActivityTask, headers: Headers | None) -> StandInRun:
        if task.instance_id == "b":
            raise RuntimeError("the worker broke")
        return starting(task, headers)

    runner.start = start  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        harness.driven.process(*[proposed(instance_id, TaskCompleted(0, "2"), execution)
                                 for instance_id, execution in zip(("a", "b"), executions, strict=True)])
    harness.driven.abort()
    assert [(t.instance_id, t.task_id) for t in runner.taken] == [("a", 1)], "its slot is given back"


def test_a_local_result_is_taken_only_once_its_transaction_has_ended(
        make: Callable[..., OrchestratorHarness]) -> None:
    runner = StandInRunner({"step": add_one})
    harness = make(runner)
    execution = started(harness, "c", "chain3", "1")
    turn = harness.driven.process(proposed("c", TaskCompleted(0, "2"), execution), commit=False)
    assert len(runner.started) == 2 and runner.taken == [], "its slot is held until the commit"
    harness.driven.commit(turn)
    assert [t.task_id for t in runner.taken] == [1, 2]


def test_a_budget_of_zero_sends_every_activity_through_kafka(make: Callable[..., OrchestratorHarness]) -> None:
    runner = StandInRunner({"step": add_one})
    harness = make(runner, budget_ms=0)
    execution = started(harness, "c", "chain3", "1")
    out = harness.deliver(proposed("c", TaskCompleted(0, "2"), execution))
    assert kinds(out.history) == ["TaskCompleted", "TaskScheduled"]
    assert [t.task_id for t in out.tasks] == [1]
    assert runner.started == []


def test_an_activity_not_done_within_the_budget_is_emitted_once_and_its_result_accepted_once(
        make: Callable[..., OrchestratorHarness]) -> None:
    runner = StandInRunner({"step": lambda task: None})
    harness = make(runner)
    execution = started(harness, "c", "chain3", "1")
    out = harness.deliver(proposed("c", TaskCompleted(0, "2"), execution))
    assert kinds(out.history) == ["TaskCompleted", "TaskScheduled"]
    assert [(t.task_id, t.name, t.input) for t in out.tasks] == [(1, "step", "2")]
    assert [t.task_id for t in runner.handed_over] == [1] and runner.taken == []

    # Its result arrives through the inbox like a worker's; the next step runs here again.
    runner.outcomes["step"] = add_one
    out = harness.deliver(proposed("c", TaskCompleted(1, "3"), execution))
    assert kinds(out.history) == ["TaskCompleted", "TaskScheduled", "TaskCompleted", "ExecutionCompleted"]
    assert out.tasks == []
    # A second copy of the handed-over result is refused.
    out = harness.deliver(proposed("c", TaskCompleted(1, "3"), execution))
    assert out.history == [] and out.tasks == []
    assert harness.status("c").runtime_status is WorkflowStatus.COMPLETED  # type: ignore[union-attr]


def test_a_local_failure_is_retried_by_its_policy(make: Callable[..., OrchestratorHarness]) -> None:
    attempts: list[int] = []

    def fails_once(task: ActivityTask) -> TaskCompleted | TaskFailed:
        attempts.append(task.task_id)
        if len(attempts) == 1:
            return TaskFailed(task.task_id, FailureDetails("ValueError", "not yet"))
        return TaskCompleted(task.task_id, task.input)

    harness = make(StandInRunner({"step": add_one, "flaky": fails_once}))
    execution = started(harness, "r", "retried", "7")
    out = harness.deliver(proposed("r", TaskCompleted(0, "8"), execution))
    assert kinds(out.history) == ["TaskCompleted", "TaskScheduled", "TaskFailed", "TimerCreated"]
    assert out.tasks == []
    timer = out.history[-1].event
    assert isinstance(timer, TimerCreated)
    fired = harness.punctuate(int(timer.fire_at.timestamp() * 1000) + 1)
    history = harness.history[-4:]
    assert kinds(history) == ["TimerFired", "TaskScheduled", "TaskCompleted", "ExecutionCompleted"]
    assert harness.tasks(fired) == []
    assert len(attempts) == 2 and attempts[0] != attempts[1]
    done = history[-1].event
    assert isinstance(done, ExecutionCompleted) and done.output == "8"


def test_a_workflow_mixes_remote_and_local_activities(make: Callable[..., OrchestratorHarness]) -> None:
    runner = StandInRunner({"step": add_one})  # remote_step is not this process's
    harness = make(runner)
    out = harness.deliver(proposed("m", ExecutionStarted("mixed", "1")))
    assert kinds(out.history) == ["ExecutionStarted", "TaskScheduled"]
    assert [t.name for t in out.tasks] == ["remote_step"]
    execution = out.history[0].execution_id
    out = harness.deliver(proposed("m", TaskCompleted(0, "101"), execution))
    assert kinds(out.history) == ["TaskCompleted", "TaskScheduled", "TaskCompleted", "ExecutionCompleted"]
    assert out.tasks == []
    assert [t.name for t in runner.started] == ["step"]
    done = out.history[-1].event
    assert isinstance(done, ExecutionCompleted) and done.output == "102"


def test_a_step_runs_a_bounded_number_of_activities_here(make: Callable[..., OrchestratorHarness]) -> None:
    runner = StandInRunner({"step": add_one})
    harness = make(runner)
    count = MAX_LOCAL_PER_STEP + 5
    execution = started(harness, "f", "fan_out", str(count))
    out = harness.deliver(proposed("f", TaskCompleted(0, "1"), execution))
    scheduled = [e.event.task_id for e in out.history if isinstance(e.event, TaskScheduled)]
    completed = [e.event.task_id for e in out.history if isinstance(e.event, TaskCompleted)][1:]
    assert len(scheduled) == count
    assert len(runner.started) == len(completed) == MAX_LOCAL_PER_STEP
    assert sorted(t.task_id for t in out.tasks) == sorted(set(scheduled) - set(completed))
    out = harness.deliver(*[proposed("f", TaskCompleted(t.task_id, str(int(t.input or "0") + 1)), execution)
                            for t in out.tasks])
    done = out.history[-1].event
    assert isinstance(done, ExecutionCompleted) and done.output == str(sum(range(1, count + 1)))


@registry.workflow(name="elsewhere")
def elsewhere(ctx: wf.DaprWorkflowContext, value: int):
    value = yield ctx.call_activity(step, input=value)
    value = yield ctx.call_activity(step, input=value, app_id="app3")
    return value


def test_another_applications_activity_never_runs_here_even_when_registered_here(
        tmp_path: Path) -> None:
    from engine.orchestration.app_topics import AppTopics

    runner = StandInRunner({"step": add_one})
    harness = OrchestratorHarness(registry, tmp_path, app_id="app1", local_activities=runner,
                                  app_topics=lambda settings: AppTopics(settings, lambda _: 1))
    try:
        execution = started(harness, "e", "elsewhere", "1")
        emitted = harness.feed([proposed("e", TaskCompleted(0, "2"), execution)])
        assert runner.started == []
        (task,) = [e for e in emitted if e.topic == "kwf.app3.activities"]
        assert task.key is not None
    finally:
        harness.close()
