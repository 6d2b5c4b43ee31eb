"""An in-memory runtime for the executor: runs activities, fires timers, starts children, raises events.

It plays the orchestrator's part without Kafka: every step wraps the executor's actions in
HistoryEvents with sequence numbers and the driver's clock. Pending work (activities to
run, timers to fire, child starts, deliveries) waits in a pool; by default the driver takes
the oldest non-timer work first and fires timers in due order when nothing else is left,
moving its clock to each timer's due time. With ``rng`` it picks pending work at random
instead, which the property tests use to try many orders.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from engine.core import payload
from engine.core.history import (
    ChildWorkflowCompleted,
    ChildWorkflowFailed,
    ChildWorkflowScheduled,
    Event,
    EventRaised,
    ExecutionCompleted,
    ExecutionResumed,
    ExecutionStarted,
    ExecutionSuspended,
    ExecutionTerminated,
    FailureDetails,
    HistoryEvent,
    ParentInstance,
    TaskCompleted,
    TaskFailed,
    TaskScheduled,
    TimerCreated,
    TimerFired,
    WorkflowStatus,
)
from engine.edges.activities import run_activity
from engine.replay.executor import ExecutionResult, Executor
from engine.replay.registry import Registry, name_of

START = datetime(2024, 1, 1, tzinfo=UTC)


@dataclass
class Instance:
    """One workflow instance as the driver tracks it."""

    instance_id: str
    name: str
    parent: ParentInstance | None
    execution_id: str = ""
    history: list[HistoryEvent] = field(default_factory=list)
    past_executions: list[list[HistoryEvent]] = field(default_factory=list)
    results: list[ExecutionResult] = field(default_factory=list)
    status: WorkflowStatus = WorkflowStatus.PENDING
    output: str | None = None
    failure: FailureDetails | None = None
    custom_status: str | None = None

    @property
    def ended(self) -> bool:
        return self.status in (WorkflowStatus.COMPLETED, WorkflowStatus.FAILED, WorkflowStatus.TERMINATED)

    @property
    def result(self) -> Any:
        """The decoded output."""
        return payload.decode(self.output)

    @property
    def events(self) -> list[Event]:
        """The payloads of the current execution's history."""
        return [e.event for e in self.history]

    def of_kind(self, kind: type) -> list[Any]:
        return [e.event for e in self.history if isinstance(e.event, kind)]


@dataclass
class _Work:
    kind: str  # "activity", "timer", "start", "deliver"
    instance_id: str
    execution_id: str
    body: Any
    fire_at: datetime | None = None


class Driver:
    """Drives workflow instances to their end through an Executor, all in memory.

    Args:
        registry: Workflows and activities.
        cache_size: The executor's live-instance cache size (0: replay every step).
        rng: Pick pending work at random with it; default oldest first, timers last.
        tick: How far the clock moves at each step.
    """

    def __init__(
        self,
        registry: Registry,
        *,
        cache_size: int = 10_000,
        rng: random.Random | None = None,
        tick: timedelta = timedelta(0),
    ) -> None:
        self.registry = registry
        self.executor = Executor(registry, cache_size=cache_size)
        self.rng = rng
        self.tick = tick
        self.clock = START
        self.instances: dict[str, Instance] = {}
        self.pool: list[_Work] = []
        self.activity_runs: Counter[str] = Counter()
        self._executions = 0

    # Commands ---------------------------------------------------------------------------

    def start(
        self,
        workflow: Callable[..., Any] | str,
        input: Any = None,
        *,
        instance_id: str = "wf-1",
        encoded_input: str | None = None,
    ) -> Instance:
        """Start an instance and run its first step (not the rest: call ``run``)."""
        data = encoded_input if encoded_input is not None else payload.encode(input)
        return self._start(instance_id, name_of(workflow), data, None, ())

    def raise_event(self, instance_id: str, name: str, data: Any = None) -> None:
        """Raise an event to the instance now."""
        self._command(instance_id, EventRaised(name, payload.encode(data)))

    def queue_event(self, instance_id: str, name: str, data: Any = None) -> None:
        """Put an event in the pool of pending work, to be raised when the driver picks it."""
        self.pool.append(_Work("deliver", instance_id, "", EventRaised(name, payload.encode(data))))

    def suspend(self, instance_id: str, reason: str | None = None) -> None:
        self._command(instance_id, ExecutionSuspended(reason))

    def resume(self, instance_id: str, reason: str | None = None) -> None:
        self._command(instance_id, ExecutionResumed(reason))

    def terminate(self, instance_id: str, output: Any = None) -> None:
        self._command(instance_id, ExecutionTerminated("terminated by test", payload.encode(output)))

    def instance(self, instance_id: str = "wf-1") -> Instance:
        return self.instances[instance_id]

    # Running ----------------------------------------------------------------------------

    def run(self, *, max_steps: int = 100_000, until: Callable[[], bool] | None = None) -> None:
        """Do pending work until none is left, ``until()`` holds, or ``max_steps`` is reached."""
        for _ in range(max_steps):
            if until is not None and until():
                return
            work = self._next_work()
            if work is None:
                return
            self._do(work)

    def run_one(self, kind: str) -> None:
        """Do the oldest pending work of one kind ("activity", "timer", "start" or "deliver")."""
        for index, work in enumerate(self.pool):
            if work.kind == kind:
                self._do(self.pool.pop(index))
                return
        raise AssertionError(f"no pending {kind} work")

    def pending(self, kind: str) -> list[_Work]:
        return [w for w in self.pool if w.kind == kind]

    def _next_work(self) -> _Work | None:
        if not self.pool:
            return None
        if self.rng is not None:
            return self.pool.pop(self.rng.randrange(len(self.pool)))
        for index, work in enumerate(self.pool):
            if work.kind != "timer":
                return self.pool.pop(index)
        due = min(range(len(self.pool)), key=lambda i: self.pool[i].fire_at or START)
        return self.pool.pop(due)

    def _do(self, work: _Work) -> None:
        if work.kind == "start":
            instance_id, name, data, parent, propagated = work.body
            self._start(instance_id, name, data, parent, (), propagated)
            return
        inst = self.instances.get(work.instance_id)
        if inst is None or inst.ended:
            return
        if work.execution_id and work.execution_id != inst.execution_id:
            return  # a late result for an execution that continued as new
        if work.kind == "activity":
            task: TaskScheduled = work.body
            self.activity_runs[task.name] += 1
            outcome = run_activity(
                self.registry, task.name, task.input, instance_id=inst.instance_id, task_id=task.task_id,
                propagated_history=task.propagated_history,
            )
            if outcome.failure is None:
                self._step(inst, [TaskCompleted(task.task_id, outcome.result)])
            else:
                self._step(inst, [TaskFailed(task.task_id, outcome.failure)])
        elif work.kind == "timer":
            timer: TimerCreated = work.body
            self.clock = max(self.clock, timer.fire_at)
            self._step(inst, [TimerFired(timer.timer_id, timer.fire_at)])
        else:
            self._step(inst, [work.body])

    # Steps --------------------------------------------------------------------------------

    def _command(self, instance_id: str, event: Event) -> None:
        inst = self.instances[instance_id]
        # Dropping it here would make a test pass on the driver's behaviour; the orchestrator
        # drops commands for ended instances (tests/unit/engine/test_orchestrator.py).
        assert not inst.ended, f"{instance_id} has ended: the driver does not stand in for the orchestrator here"
        self._step(inst, [event])

    def _start(
        self,
        instance_id: str,
        name: str,
        data: str | None,
        parent: ParentInstance | None,
        carried: tuple[EventRaised, ...],
        propagated_history: str | None = None,
    ) -> Instance:
        inst = self.instances.get(instance_id)
        if inst is None or inst.ended:
            inst = Instance(instance_id, name, parent)
            self.instances[instance_id] = inst
        self._executions += 1
        inst.execution_id = f"exec-{self._executions}"
        inst.history = []
        self._step(inst, [ExecutionStarted(name, data, parent, None, propagated_history), *carried])
        return inst

    def _step(self, inst: Instance, bodies: list[Event]) -> None:
        self.clock += self.tick
        new_events = [self._wrap(inst, len(inst.history) + i, body) for i, body in enumerate(bodies)]
        result = self.executor.execute(inst.instance_id, inst.history, new_events)
        inst.results.append(result)
        inst.history.extend(new_events)
        for body in result.actions:
            inst.history.append(self._wrap(inst, len(inst.history), body))
        inst.status = result.status
        inst.output = result.output
        inst.failure = result.failure
        inst.custom_status = result.custom_status
        for body in result.actions:
            self._schedule(inst, body, result)

    def _wrap(self, inst: Instance, sequence: int, body: Event) -> HistoryEvent:
        return HistoryEvent(inst.instance_id, inst.execution_id, sequence, self.clock, body)

    def _schedule(self, inst: Instance, body: Event, result: ExecutionResult) -> None:
        if isinstance(body, TaskScheduled):
            self.pool.append(_Work("activity", inst.instance_id, inst.execution_id, body))
        elif isinstance(body, TimerCreated):
            self.pool.append(_Work("timer", inst.instance_id, inst.execution_id, body, fire_at=body.fire_at))
        elif isinstance(body, ChildWorkflowScheduled):
            parent = ParentInstance(inst.instance_id, inst.execution_id, body.task_id, inst.name)
            self.pool.append(_Work("start", body.instance_id, "",
                                   (body.instance_id, body.name, body.input, parent, body.propagated_history)))
        elif isinstance(body, ExecutionCompleted):
            self._ended(inst, body, result)

    def _ended(self, inst: Instance, completed: ExecutionCompleted, result: ExecutionResult) -> None:
        if completed.status is WorkflowStatus.CONTINUED_AS_NEW:
            assert result.continued_as_new is not None
            inst.past_executions.append(inst.history)
            nxt = result.continued_as_new
            self._start(inst.instance_id, inst.name, nxt.input, inst.parent, nxt.carried_events)
            return
        parent = inst.parent
        if parent is None:
            return
        reply: Event
        if completed.status is WorkflowStatus.COMPLETED:
            reply = ChildWorkflowCompleted(parent.task_id, completed.output)
        else:
            failure = completed.failure or FailureDetails(completed.status.value, f"child {inst.instance_id} ended")
            reply = ChildWorkflowFailed(parent.task_id, failure)
        self.pool.append(_Work("deliver", parent.instance_id, parent.execution_id, reply))
