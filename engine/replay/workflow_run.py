"""Replay of one workflow execution: history events in, new history events (actions) out.

A ``WorkflowRun`` holds a live workflow generator and applies history events to it one at
a time. Events already in history are applied with ``replaying=True``: the steps the code
asks for are then checked against the steps history recorded, by task ID. Events of the
current step are applied with ``replaying=False``: the steps the code asks for become new
actions. Applying a step's events to a run kept from the previous step therefore gives the
same actions as replaying the whole history into a fresh run.

Task IDs come from one counter shared by activities, child workflows and timers (including
retry timers and event-wait timeouts), in the order the code (or a retry) asks for them.

Versions and patches are kept by a ``Versioning`` (``engine/replay/versioning.py``): a run
whose code this runtime lacks stalls instead of failing, ignores everything but a
termination, and carries on when a later replay has the right code.
"""

from __future__ import annotations

import hashlib
import inspect
from collections import deque
from collections.abc import Generator, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from engine.core import payload
from engine.core.errors import NonDeterminismError, TaskFailedError, WorkflowNotRegistered, failure_from_exception
from engine.core.history import (
    ChildWorkflowCompleted,
    ChildWorkflowFailed,
    ChildWorkflowScheduled,
    ContinuedAsNew,
    CustomStatusSet,
    Event,
    EventRaised,
    ExecutionCompleted,
    ExecutionResumed,
    ExecutionStarted,
    ExecutionSuspended,
    ExecutionTerminated,
    FailureDetails,
    HistoryEvent,
    TaskCompleted,
    TaskFailed,
    TaskScheduled,
    TimerCreated,
    TimerFired,
    WorkflowStatus,
    validate_instance_id,
)
from engine.replay.context import WorkflowContext
from engine.replay.propagation import PROPAGATED_KINDS, PropagationScope, propagate
from engine.replay.registry import Registry
from engine.replay.retry import RetryPolicy
from engine.replay.tasks import ActivityTask, ChildWorkflowTask, CompletableTask, ExternalEventTask, Task, TimerTask
from engine.replay.versioning import Versioning

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# Events that settle something the workflow waits for; held back while suspended.
_INPUT_KINDS = (TaskCompleted, TaskFailed, TimerFired, EventRaised, ChildWorkflowCompleted, ChildWorkflowFailed)
# Events that record what the workflow asked for; replay checks them against the code.
_STEP_KINDS = (TaskScheduled, TimerCreated, ChildWorkflowScheduled)

# What an open task ID is waiting for.
_CALL = "call"  # an activity or child-workflow attempt
_TIMER = "timer"  # a timer the workflow created
_RETRY_TIMER = "retry-timer"  # the pause before the next attempt of a call
_EVENT_TIMEOUT = "event-timeout"  # the deadline of an external-event wait


@dataclass(frozen=True, slots=True)
class ContinueAsNew:
    """How the next execution of a continued-as-new instance starts.

    Attributes:
        input: The new execution's input (JSON text).
        carried_events: Events raised but not consumed, in arrival order, to append after
            its ExecutionStarted (only with ``save_events=True``).
    """

    input: str | None
    carried_events: tuple[EventRaised, ...] = ()


@dataclass(slots=True, eq=False)
class _Call:
    """One activity or child-workflow call, across all its attempts."""

    task: ActivityTask | ChildWorkflowTask
    is_child: bool
    name: str
    input: str | None
    instance_id: str | None
    policy: RetryPolicy | None
    first_scheduled_at: datetime
    attempts: int = 0
    propagated_history: str | None = None
    app_id: str | None = None


@dataclass(slots=True, eq=False)
class _Open:
    """What a task ID still waits for."""

    role: str
    call: _Call | None = None
    task: CompletableTask | None = None


class WorkflowRun:
    """The state of one execution of a workflow instance while its history is applied.

    Args:
        registry: Where the workflow function is looked up by the name in ExecutionStarted.
        instance_id: The instance this run belongs to.
    """

    def __init__(self, registry: Registry, instance_id: str) -> None:
        self.registry = registry
        self.instance_id = instance_id
        self.workflow_name = ""
        self.execution_id = ""
        self.is_replaying = False
        self.current_time = _EPOCH
        self.custom_status: str | None = None
        self.started = False
        self.outcome: ExecutionCompleted | None = None
        self.continued_as_new: ContinueAsNew | None = None
        self._outcome_recorded = False
        self._broken = False  # non-determinism found: nothing further is applied
        self._ctx = WorkflowContext(self)
        self._gen: Generator[Any, Any, Any] | None = None
        self._waiting: Task | None = None
        self._continue_request: tuple[str | None, bool] | None = None
        self._next_id = 0
        self._open: dict[int, _Open] = {}
        self._unconfirmed: dict[int, Event] = {}
        self._emitted: list[Event] = []
        self._buffered: dict[str, deque[tuple[int, EventRaised]]] = {}
        self._arrivals = 0
        self._waiters: dict[str, deque[ExternalEventTask]] = {}
        self._suspended = False
        self._held: list[Event] = []
        self._seeds_taken = 0
        # History propagation: what this execution received, and its own steps so far.
        self.propagated_history: str | None = None
        self._steps: list[Event] = []
        self._versioning = Versioning()

    @property
    def status(self) -> WorkflowStatus:
        """RUNNING, SUSPENDED, PENDING before ExecutionStarted, or how the execution ended."""
        if self.outcome is not None:
            return self.outcome.status
        if not self.started:
            return WorkflowStatus.PENDING
        if self._versioning.stall is not None:
            return WorkflowStatus.STALLED
        return WorkflowStatus.SUSPENDED if self._suspended else WorkflowStatus.RUNNING

    @property
    def stall(self) -> FailureDetails | None:
        """Why the execution is STALLED (type: a ``StallReason`` value), or None."""
        return self._versioning.stall_failure

    def preload(self, history: Iterable[HistoryEvent]) -> None:
        """Read the version and patches history recorded; call before replaying that history."""
        self._versioning.preload(history)

    def end_replay(self) -> None:
        """Called once the recorded history is replayed: a recorded patch the code never
        checked is a PATCH_MISMATCH."""
        if self.outcome is not None or self._versioning.stall is not None or not self.started:
            return
        unchecked = self._versioning.unchecked_patches()
        if unchecked:
            self._stall_on_patches(unchecked)

    # Applying history ---------------------------------------------------------------

    def apply(self, event: HistoryEvent, *, replaying: bool) -> None:
        """Apply one history event; the workflow code runs as far as the event lets it.

        Never raises: a failure anywhere becomes a FAILED outcome.

        Args:
            event: The event.
            replaying: True for events already in history, False for the current step's.
        """
        if self._broken or self._outcome_recorded:
            return
        self.is_replaying = replaying
        self.current_time = event.timestamp
        body = event.event
        try:
            if self._versioning.note(body):
                return
            if self._versioning.stall is not None:
                # Stalled: events stay in history for the code that can run them; only a
                # termination ends the instance.
                if isinstance(body, ExecutionTerminated) and self.outcome is None:
                    self._versioning.end_stall_for_termination()
                    self._terminate(body)
                return
            if isinstance(body, PROPAGATED_KINDS):
                self._steps.append(body)
            if isinstance(body, _STEP_KINDS):
                self._confirm(body)
            elif isinstance(body, ExecutionCompleted):
                self._record_outcome(body)
            elif isinstance(body, ContinuedAsNew):
                self._record_outcome(ExecutionCompleted(WorkflowStatus.CONTINUED_AS_NEW))
            elif self.outcome is not None:
                return  # the execution has ended; later inputs change nothing
            elif isinstance(body, ExecutionStarted):
                if not self.started:
                    self._start(event.execution_id, body)
            elif not self.started:
                return
            elif isinstance(body, ExecutionTerminated):
                self._terminate(body)
            elif isinstance(body, ExecutionSuspended):
                self._suspended = True
            elif isinstance(body, ExecutionResumed):
                self._resume_execution()
            elif isinstance(body, _INPUT_KINDS):
                if self._suspended:
                    self._held.append(body)
                else:
                    self._deliver(body)
        except NonDeterminismError as err:
            # A different step after a patch the code no longer checks is that patch's
            # removal, not a bug in the code: stall until the code is back.
            unchecked = self._versioning.unchecked_patches(before=event.sequence)
            if replaying and unchecked:
                self._stall_on_patches(unchecked)
            else:
                self._fail_nondeterministic(err)
        except Exception as err:
            self._finish_failed(err)

    def take_actions(self) -> list[Event]:
        """The new history events the workflow produced since the last call, in order.

        The outcome (ExecutionCompleted) comes last, once. A stalled run gives its
        ExecutionStalled (once) and a re-check timer; a run that replays past a recorded
        stall begins with ExecutionResumed.
        """
        if self._versioning.stall is not None and self.outcome is None:
            # Whatever the code asked for was asked by the wrong code.
            self._unconfirmed.clear()
            self._emitted.clear()
            return self._versioning.stalled_actions(self.current_time)
        actions: list[Event] = []
        resumed = self._versioning.resumed_action()
        if resumed is not None:
            actions.append(resumed)
        actions += [*self._unconfirmed.values(), *self._emitted]
        self._unconfirmed = {}
        self._emitted = []
        # A run kept for the next step never sees its actions applied: they join its steps here.
        self._steps += [a for a in actions if isinstance(a, PROPAGATED_KINDS)]
        if self.outcome is not None and not self._outcome_recorded:
            actions.append(self.outcome)
            self._outcome_recorded = True
        return actions

    # Called by WorkflowContext --------------------------------------------------------

    def schedule_activity(self, name: str, input_json: str | None, policy: RetryPolicy | None,
                          propagation: PropagationScope | None = None, app_id: str | None = None) -> Task:
        """Record an activity call (in application ``app_id``; None: this one) and return its task."""
        task = ActivityTask(name)
        if self.outcome is None:
            self._start_attempt(_Call(task, False, name, input_json, None, policy, self.current_time,
                                      propagated_history=self._propagate(propagation), app_id=app_id))
        return task

    def schedule_child(
        self, name: str, input_json: str | None, instance_id: str | None, policy: RetryPolicy | None,
        propagation: PropagationScope | None = None, app_id: str | None = None,
    ) -> Task:
        """Record a child-workflow call (in application ``app_id``; None: this one) and return its task."""
        task = ChildWorkflowTask(name, instance_id)
        if self.outcome is None:
            self._start_attempt(_Call(task, True, name, input_json, instance_id, policy, self.current_time,
                                      propagated_history=self._propagate(propagation), app_id=app_id))
        return task

    def _propagate(self, scope: PropagationScope | None) -> str | None:
        # The steps so far: those applied from history, then those asked for in this step
        # (awaiting confirmation while replaying, new otherwise): the same list either way.
        steps = [*self._steps, *self._unconfirmed.values(), *self._emitted]
        return propagate(scope, self.propagated_history, self.instance_id, self.workflow_name, steps,
                         self.registry.app_id)

    def schedule_timer(self, fire_at: datetime) -> Task:
        """Record a durable timer and return its task."""
        task = TimerTask(fire_at)
        if self.outcome is None:
            timer_id = self._take_id()
            self._open[timer_id] = _Open(_TIMER, task=task)
            self._record(timer_id, TimerCreated(timer_id, fire_at))
        return task

    def next_seed(self) -> int:
        """A seed for a deterministic random generator: the same sequence on every replay.

        It hashes the instance ID, the execution ID (both recorded in history) and how many
        seeds this run has taken before, so every call gets a fresh one, and a replay, which
        makes the same calls in the same order, gets the same ones.
        """
        self._seeds_taken += 1
        material = f"{self.instance_id}\x00{self.execution_id}\x00{self._seeds_taken}".encode()
        return int.from_bytes(hashlib.sha256(material).digest()[:16], "big")

    def wait_for_event(self, name: str, timeout_at: datetime | None) -> Task:
        """Return a task for the next event of that name: a buffered one, or a future one.

        ``timeout_at`` is when the wait gives up (the task then fails with TimeoutError).
        """
        task = ExternalEventTask(name)
        if self.outcome is not None:
            return task
        key = name.casefold()
        buffered = self._buffered.get(key)
        if buffered:
            _, raised = buffered.popleft()
            if not buffered:
                del self._buffered[key]
            task.complete(payload.decode(raised.data))
            return task
        self._waiters.setdefault(key, deque()).append(task)
        if timeout_at is not None:
            timer_id = self._take_id()
            self._open[timer_id] = _Open(_EVENT_TIMEOUT, task=task)
            self._record(timer_id, TimerCreated(timer_id, timeout_at))
        return task

    def request_continue_as_new(self, input_json: str | None, save_events: bool) -> None:
        """Note that the execution ends as CONTINUED_AS_NEW when the code next returns or yields."""
        if self.outcome is None:
            self._continue_request = (input_json, save_events)

    def is_patched(self, name: str) -> bool:
        """Whether the code takes patch ``name`` here; the same answer for the whole run.

        True when history recorded the patch, or on a first run through this point (which
        records it); False when replaying history written before the patch existed.
        """
        answer, marker = self._versioning.is_patched(name, replaying=self.is_replaying)
        if marker is not None and self.outcome is None:
            self._emitted.append(marker)
        return answer

    def set_custom_status(self, status_json: str | None) -> None:
        """Set the custom status; a change made outside replay becomes a CustomStatusSet action."""
        if self.outcome is not None or status_json == self.custom_status:
            return
        self.custom_status = status_json
        if not self.is_replaying:
            self._emitted.append(CustomStatusSet(status_json))

    # Steps the code asks for ------------------------------------------------------------

    def _take_id(self) -> int:
        task_id = self._next_id
        self._next_id += 1
        return task_id

    def _record(self, task_id: int, step: Event) -> None:
        # While replaying, the step must already be in history: it is checked when its
        # recorded event is applied. Otherwise it is new, and becomes an action.
        if self.is_replaying:
            self._unconfirmed[task_id] = step
        else:
            self._emitted.append(step)

    def _start_attempt(self, call: _Call) -> None:
        call.attempts += 1
        task_id = self._take_id()
        step: Event
        if call.is_child:
            child_id = call.instance_id or validate_instance_id(f"{self.instance_id}:{task_id}")
            if isinstance(call.task, ChildWorkflowTask):
                call.task.instance_id = child_id
            step = ChildWorkflowScheduled(task_id, call.name, child_id, call.input, call.propagated_history,
                                          call.app_id)
        else:
            step = TaskScheduled(task_id, call.name, call.input, call.propagated_history, call.app_id)
        self._open[task_id] = _Open(_CALL, call=call)
        self._record(task_id, step)

    def _confirm(self, recorded: TaskScheduled | TimerCreated | ChildWorkflowScheduled) -> None:
        task_id = recorded.timer_id if isinstance(recorded, TimerCreated) else recorded.task_id
        asked = self._unconfirmed.pop(task_id, None)
        if asked is None or _describe(asked) != _describe(recorded):
            now = "the code no longer schedules it" if asked is None else f"the code now asks for {_describe(asked)}"
            raise NonDeterminismError(
                f"workflow {self.workflow_name!r} (instance {self.instance_id!r}) is not deterministic at "
                f"task ID {task_id}: history recorded {_describe(recorded)}, but {now}. Workflow code must make "
                "the same calls in the same order on every replay; ship changed logic under a new workflow name "
                "instead of editing a workflow with running instances."
            )

    # Events that settle tasks ------------------------------------------------------------

    def _deliver(self, body: Event) -> None:
        if isinstance(body, TaskCompleted):
            self._call_succeeded(body.task_id, body.result, is_child=False)
        elif isinstance(body, ChildWorkflowCompleted):
            self._call_succeeded(body.task_id, body.result, is_child=True)
        elif isinstance(body, TaskFailed):
            self._call_failed(body.task_id, body.failure, is_child=False)
        elif isinstance(body, ChildWorkflowFailed):
            self._call_failed(body.task_id, body.failure, is_child=True)
        elif isinstance(body, TimerFired):
            self._timer_fired(body.timer_id)
        elif isinstance(body, EventRaised):
            self._event_raised(body)
        self._resume_code()

    def _open_call(self, task_id: int, is_child: bool) -> _Call | None:
        # A result for an unknown, settled or differently-kinded task is a duplicate or a
        # stray delivery: it changes nothing.
        slot = self._open.get(task_id)
        if slot is None or slot.role != _CALL or slot.call is None or slot.call.is_child != is_child:
            return None
        del self._open[task_id]
        return slot.call

    def _call_succeeded(self, task_id: int, result: str | None, *, is_child: bool) -> None:
        call = self._open_call(task_id, is_child)
        if call is not None:
            call.task.complete(payload.decode(result))

    def _call_failed(self, task_id: int, failure: FailureDetails, *, is_child: bool) -> None:
        call = self._open_call(task_id, is_child)
        if call is None:
            return
        delay = None
        if call.policy is not None:
            delay = call.policy.next_retry_delay(failure, call.attempts, call.first_scheduled_at, self.current_time)
        if delay is None:
            kind = "child workflow" if is_child else "activity"
            tries = f" after {call.attempts} attempts" if call.attempts > 1 else ""
            message = f"{kind} {call.name!r} failed{tries}: {failure.type}: {failure.message}"
            call.task.fail(TaskFailedError(message, failure))
            return
        timer_id = self._take_id()
        self._open[timer_id] = _Open(_RETRY_TIMER, call=call)
        self._record(timer_id, TimerCreated(timer_id, self.current_time + delay))

    def _timer_fired(self, timer_id: int) -> None:
        slot = self._open.get(timer_id)
        if slot is None or slot.role == _CALL:
            return
        del self._open[timer_id]
        if slot.role == _RETRY_TIMER and slot.call is not None:
            self._start_attempt(slot.call)
        elif slot.role == _TIMER and slot.task is not None:
            slot.task.complete(None)
        elif slot.role == _EVENT_TIMEOUT and isinstance(slot.task, ExternalEventTask) and not slot.task.is_complete:
            waiters = self._waiters.get(slot.task.name.casefold())
            if waiters is not None and slot.task in waiters:
                waiters.remove(slot.task)
            slot.task.fail(TimeoutError(f"timed out waiting for external event {slot.task.name!r}"))

    def _event_raised(self, raised: EventRaised) -> None:
        key = raised.name.casefold()
        waiters = self._waiters.get(key)
        if waiters:
            task = waiters.popleft()
            if not waiters:
                del self._waiters[key]
            task.complete(payload.decode(raised.data))
            return
        self._buffered.setdefault(key, deque()).append((self._arrivals, raised))
        self._arrivals += 1

    def _resume_execution(self) -> None:
        if not self._suspended:
            return
        self._suspended = False
        held, self._held = self._held, []
        for body in held:
            if self.outcome is not None:
                break
            self._deliver(body)

    # Running the workflow code -------------------------------------------------------------

    def _start(self, execution_id: str, started: ExecutionStarted) -> None:
        self.started = True
        self.workflow_name = started.name
        self.execution_id = execution_id
        self.propagated_history = started.propagated_history
        entry, marker = self._versioning.workflow_entry(self.registry, started.name, self.instance_id,
                                                        replaying=self.is_replaying)
        if self._versioning.stall is not None:
            self._stall_release()
            return
        if marker is not None:
            self._emitted.append(marker)
        if entry is None:
            self._finish_failed(
                WorkflowNotRegistered(
                    f"workflow {started.name!r} is not registered{_in_app(self.registry.app_id)}; register it "
                    "(@runtime.workflow or register_workflow) in every process that runs the orchestrator"
                )
            )
            return
        try:
            result = entry.call(self._ctx, payload.coerce(payload.decode(started.input), entry.input_type))
        except Exception as err:
            self._finish_failed(err)
            return
        if inspect.isgenerator(result):
            self._gen = result
            self._advance(None, None)
            self._resume_code()  # the first task yielded may be settled already
        elif inspect.iscoroutine(result):
            result.close()
            self._finish_failed(
                TypeError(
                    f"workflow {started.name!r} is an async def; write workflows as generator functions "
                    "that yield tasks"
                )
            )
        else:
            self._finish_returned(result)

    def _stall_on_patches(self, unchecked: list[str]) -> None:
        self._versioning.stall_on_patches(unchecked, self.workflow_name, self.instance_id)
        self._stall_release()

    def _stall_release(self) -> None:
        # The code is dropped, not finished: the execution goes on when the right code replays it.
        self._unconfirmed.clear()
        self._emitted.clear()
        self._gen = None
        self._waiting = None

    def _resume_code(self) -> None:
        while self.outcome is None and self._waiting is not None and self._waiting.is_complete:
            task, self._waiting = self._waiting, None
            self._advance(task._result, task._exception)

    def _advance(self, value: Any, exception: BaseException | None) -> None:
        gen = self._gen
        if gen is None:
            return
        try:
            yielded = gen.send(value) if exception is None else gen.throw(exception)
        except StopIteration as stop:
            self._finish_returned(stop.value)
            return
        except Exception as err:
            self._finish_failed(err)
            return
        if self._continue_request is not None:
            self._finish_continued()
        elif not isinstance(yielded, Task):
            self._finish_failed(
                TypeError(
                    f"workflow {self.workflow_name!r} yielded {type(yielded).__name__} {yielded!r}; yield only tasks: "
                    "ctx.call_activity, ctx.call_child_workflow, ctx.create_timer, ctx.wait_for_external_event, "
                    "when_all or when_any"
                )
            )
        else:
            self._waiting = yielded

    # Ending the execution ---------------------------------------------------------------------

    def _finish_returned(self, value: Any) -> None:
        if self._continue_request is not None:
            self._finish_continued()
            return
        try:
            output = payload.encode(value)
        except Exception as err:
            self._finish_failed(err)
            return
        self._finish(ExecutionCompleted(WorkflowStatus.COMPLETED, output))

    def _finish_failed(self, err: BaseException) -> None:
        self._finish(ExecutionCompleted(WorkflowStatus.FAILED, None, failure_from_exception(err)))

    def _finish_continued(self) -> None:
        assert self._continue_request is not None
        input_json, save_events = self._continue_request
        carried: tuple[EventRaised, ...] = ()
        if save_events:
            pending = sorted((item for queue in self._buffered.values() for item in queue), key=lambda item: item[0])
            carried = tuple(raised for _, raised in pending)
        self.continued_as_new = ContinueAsNew(input_json, carried)
        self._finish(ExecutionCompleted(WorkflowStatus.CONTINUED_AS_NEW))

    def _terminate(self, terminated: ExecutionTerminated) -> None:
        # Steps asked for in the same batch as the termination would only start work
        # nobody waits for.
        self._unconfirmed.clear()
        self._emitted.clear()
        self._finish(ExecutionCompleted(WorkflowStatus.TERMINATED, terminated.output))

    def _fail_nondeterministic(self, err: NonDeterminismError) -> None:
        self._broken = True
        self._unconfirmed.clear()
        self._emitted.clear()
        self.continued_as_new = None
        self._finish(ExecutionCompleted(WorkflowStatus.FAILED, None, failure_from_exception(err)))

    def _record_outcome(self, recorded: ExecutionCompleted) -> None:
        self.outcome = recorded
        self._outcome_recorded = True
        self._release()

    def _finish(self, outcome: ExecutionCompleted) -> None:
        self.outcome = outcome
        self._release()

    def _release(self) -> None:
        # Dropping the generator lets it close; its finally blocks see an ended run and
        # their calls are ignored.
        self._gen = None
        self._waiting = None
        self._open.clear()
        self._waiters.clear()
        self._held.clear()


def _in_app(app_id: str) -> str:
    return f" in application {app_id!r}" if app_id else ""


def _describe(step: Event) -> str:
    if isinstance(step, TaskScheduled | ChildWorkflowScheduled):
        kind = "activity" if isinstance(step, TaskScheduled) else "child workflow"
        # The application is part of a call: the same name in another application is another step.
        where = "" if step.app_id is None else f" of application {step.app_id!r}"
        return f"{kind} {step.name!r}{where}"
    if isinstance(step, TimerCreated):
        return "a timer"
    return type(step).__name__
