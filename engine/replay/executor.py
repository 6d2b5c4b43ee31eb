"""The pure workflow executor: an execution's history and new events in, decisions out.

It does no I/O, reads no clock and never raises: every error becomes a FAILED execution.
Live workflow runs are kept in a bounded LRU cache, so the next step of a cached instance
applies only its new events (a fan-out of N costs O(N) in total); a cache miss replays the
whole history into a fresh run, which gives identical results.

How decisions are expressed (``ExecutionResult.actions``, payloads of new history events,
for the caller to wrap in HistoryEvent after the step's ``new_events``):

* ``TaskScheduled``: send an ActivityTask. ``ChildWorkflowScheduled``: start the child with
  ``ExecutionStarted(parent=...)``; report its end back as ChildWorkflowCompleted/Failed.
* ``TimerCreated(timer_id, fire_at)``: append ``TimerFired(timer_id, fire_at)`` once due.
  Retry pauses and event-wait timeouts are timers too.
* ``CustomStatusSet``: the custom status changed.
* ``VersionMarker``: history only: the version a versioned execution runs, or a patch taken.
* ``ExecutionStalled(reason, message)``: the instance is STALLED (this runtime lacks the code
  its history recorded); it comes with a re-check ``TimerCreated(STALL_CHECK_TIMER_ID, ...)``.
  ``ExecutionResumed`` as an action ends a recorded stall.
* ``ExecutionCompleted(status, output, failure)``: always last; the execution has ended.
  Continue-as-new is ``ExecutionCompleted(CONTINUED_AS_NEW)`` (no ContinuedAsNew event is
  produced); ``ExecutionResult.continued_as_new`` then says how the next execution starts:
  a new execution ID, history ``[]`` and new events ``[ExecutionStarted(same name,
  continued_as_new.input, same parent), *continued_as_new.carried_events]``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

from engine.core.errors import failure_from_exception
from engine.core.history import (
    ContinuedAsNew,
    CustomStatusSet,
    Event,
    ExecutionCompleted,
    FailureDetails,
    HistoryEvent,
    WorkflowStatus,
)
from engine.replay.registry import Registry
from engine.replay.workflow_run import ContinueAsNew, WorkflowRun

__all__ = ["ContinueAsNew", "ExecutionResult", "Executor"]


@dataclass
class ExecutionResult:
    """What one step of an execution decided.

    Attributes:
        actions: New history event payloads, in order (see the module docstring).
        status: The execution's status after the step.
        output: The output (JSON text) once COMPLETED or TERMINATED.
        failure: Why the execution FAILED, or why it is STALLED (type: a ``StallReason`` value).
        custom_status: The custom status (JSON text) the workflow last set.
        continued_as_new: How the next execution starts, when status is CONTINUED_AS_NEW.
    """

    actions: list[Event]
    status: WorkflowStatus
    output: str | None = None
    failure: FailureDetails | None = None
    custom_status: str | None = None
    continued_as_new: ContinueAsNew | None = None


@dataclass(slots=True)
class _CachedRun:
    run: WorkflowRun
    history_length: int  # the length the caller's history has once it took our last actions
    last_event: tuple[type, object] | None = field(default=None)


class Executor:
    """Runs workflow code against history to decide an execution's next steps.

    Args:
        registry: The workflows (by name) this executor can run.
        cache_size: How many live instances to keep between steps; bounds memory by
            count, not by the number of instances in state. 0 replays every step in full.
    """

    def __init__(self, registry: Registry, *, cache_size: int = 10_000) -> None:
        if cache_size < 0:
            raise ValueError(f"cache_size must be 0 or more, got {cache_size}")
        self._registry = registry
        self._cache_size = cache_size
        self._cache: OrderedDict[str, _CachedRun] = OrderedDict()
        # Steps that advanced a cached run, and later steps that replayed: plain counts, read by
        # the metrics layer (this layer records nothing itself).
        self.cache_hits = 0
        self.cache_misses = 0

    @property
    def cached_instances(self) -> int:
        """How many live instances the cache holds now."""
        return len(self._cache)

    def execute(
        self, instance_id: str, history: Sequence[HistoryEvent], new_events: Sequence[HistoryEvent]
    ) -> ExecutionResult:
        """Apply one step's accepted events to an execution and return its decisions.

        Args:
            instance_id: The workflow instance.
            history: The accepted history of the current execution, beginning with
                ExecutionStarted (empty on the first step).
            new_events: This step's accepted events (``[ExecutionStarted, ...]`` on the first).

        Returns:
            The actions to append after ``new_events``, and the execution's status. Never
            raises: an error becomes status FAILED with an ``ExecutionCompleted`` action.
        """
        try:
            return self._execute(instance_id, history, new_events)
        except Exception as err:  # a bug here must fail one instance, not the processor
            self._cache.pop(instance_id, None)
            failure = failure_from_exception(err)
            return ExecutionResult(
                actions=[ExecutionCompleted(WorkflowStatus.FAILED, None, failure)],
                status=WorkflowStatus.FAILED,
                failure=failure,
            )

    def evict(self, instance_id: str) -> None:
        """Forget the live run of an instance (e.g. on purge or partition revoke)."""
        self._cache.pop(instance_id, None)

    def _execute(
        self, instance_id: str, history: Sequence[HistoryEvent], new_events: Sequence[HistoryEvent]
    ) -> ExecutionResult:
        if history and isinstance(history[-1].event, ExecutionCompleted | ContinuedAsNew):
            self._cache.pop(instance_id, None)
            return _ended(history)
        run = self._cached_run(instance_id, history)
        if run is None:
            self.cache_misses += bool(history)  # a first step has nothing to replay
            run = WorkflowRun(self._registry, instance_id)
            run.preload(history)
            for event in history:
                run.apply(event, replaying=True)
            run.end_replay()
        else:
            self.cache_hits += 1
        for event in new_events:
            run.apply(event, replaying=False)
        actions = run.take_actions()
        if run.outcome is None and self._cache_size > 0:
            last = actions[-1] if actions else new_events[-1].event if new_events else None
            if last is None and history:
                last = history[-1].event
            self._cache[instance_id] = _CachedRun(
                run, len(history) + len(new_events) + len(actions), None if last is None else _identity(last)
            )
            self._cache.move_to_end(instance_id)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        else:
            self._cache.pop(instance_id, None)
        outcome = run.outcome
        return ExecutionResult(
            actions=actions,
            status=run.status,
            output=None if outcome is None else outcome.output,
            failure=run.stall if outcome is None else outcome.failure,
            custom_status=run.custom_status,
            continued_as_new=run.continued_as_new,
        )

    def _cached_run(self, instance_id: str, history: Sequence[HistoryEvent]) -> WorkflowRun | None:
        entry = self._cache.pop(instance_id, None)
        if entry is None or not history:
            return None
        # The run is only valid if the caller's history is exactly what it has seen: the
        # same execution, every event it was given plus every action it returned.
        if (
            entry.history_length != len(history)
            or entry.run.execution_id != history[0].execution_id
            or entry.last_event != _identity(history[-1].event)
        ):
            return None
        return entry.run


def _identity(event: Event) -> tuple[type, object]:
    # Enough to tell events apart without comparing payloads or timestamps, which a trip
    # through Avro may round.
    key = getattr(event, "task_id", None)
    if key is None:
        key = getattr(event, "timer_id", None)
    if key is None:
        key = getattr(event, "name", None)
    return (type(event), key)


def _ended(history: Sequence[HistoryEvent]) -> ExecutionResult:
    last = history[-1].event
    completed = last if isinstance(last, ExecutionCompleted) else ExecutionCompleted(WorkflowStatus.CONTINUED_AS_NEW)
    custom_status = None
    for event in reversed(history):
        if isinstance(event.event, CustomStatusSet):
            custom_status = event.event.status
            break
    return ExecutionResult(
        actions=[],
        status=completed.status,
        output=completed.output,
        failure=completed.failure,
        custom_status=custom_status,
    )
