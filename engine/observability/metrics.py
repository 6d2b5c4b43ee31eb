"""The runtime's workflow metrics (Prometheus), and the functions that record them.

Labels are workflow names, activity names, statuses, outcomes and event types: bounded by
the application's code, never by its traffic (no instance IDs). Processor-level metrics
(transactions, restores, consumer lag, dead letters) live in ``streams.metrics``.

The orchestrator calls ``history_emitted`` and ``status_emitted`` as it decides, so an
aborted transaction's decisions are counted again when its batch is replayed (rare: an
abort is a broker failure or a fenced process). ``KWF_METRICS=off`` turns every function
here and in ``streams.metrics`` into a no-op, for measuring what metrics cost.
"""

from __future__ import annotations

import functools
import os
import time
import weakref
from collections.abc import Callable, Coroutine, Iterable, Iterator
from datetime import datetime
from typing import Any, TypeVar

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from engine.core.clock import now_utc
from engine.core.history import (
    ChildWorkflowScheduled,
    EventRaised,
    ExecutionStalled,
    ExecutionStarted,
    HistoryEvent,
    TaskScheduled,
    TimerCreated,
    TimerFired,
)
from streams import metrics as streams_metrics

# Workflows run from milliseconds (a chain of quick activities) to days (timers, approvals).
WORKFLOW_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 14400, 86400)
# Activities run from microseconds to the activity timeout (minutes at most, usually).
ACTIVITY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
# A task waits milliseconds for a worker when the workers keep up, seconds to minutes when not.
DELAY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
# Timers fire within the punctuation interval (100 ms) when the orchestrator keeps up.
LATENESS_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)

STARTS = Counter("kwf_workflow_starts_total", "Workflow executions started, by workflow name.", ["workflow"])
COMPLETIONS = Counter(
    "kwf_workflow_completions_total", "Workflow instances ended, by workflow name and status "
    "(COMPLETED, FAILED, TERMINATED).", ["workflow", "status"])
EXECUTION_SECONDS = Histogram(
    "kwf_workflow_execution_seconds", "Time from an instance's creation to its end, by workflow name and status.",
    ["workflow", "status"], buckets=WORKFLOW_BUCKETS)
ACTIVITIES_SCHEDULED = Counter(
    "kwf_activity_scheduled_total", "Activity tasks scheduled by workflows, by activity name.", ["activity"])
ACTIVITY_EXECUTIONS = Counter(
    "kwf_activity_executions_total", "Activity attempts run by workers, by activity name and outcome "
    "(success, failure, timeout).", ["activity", "outcome"])
ACTIVITY_SECONDS = Histogram(
    "kwf_activity_execution_seconds", "Time an activity attempt ran, by activity name.",
    ["activity"], buckets=ACTIVITY_BUCKETS)
SCHEDULING_DELAY = Histogram(
    "kwf_activity_scheduling_delay_seconds", "Time from a task's scheduling by the orchestrator to its start "
    "on a worker, by activity name.", ["activity"], buckets=DELAY_BUCKETS)
ACTIVITIES_IN_FLIGHT = Gauge("kwf_activities_in_flight", "Activity attempts running now in this process.")
TIMERS_CREATED = Counter("kwf_timers_created_total", "Durable timers created by workflows.")
TIMERS_FIRED = Counter("kwf_timers_fired_total", "Durable timers fired into their instance's history.")
TIMERS_PENDING = Gauge(
    "kwf_timers_pending", "Timers created minus timers fired or dropped by this process since it started "
    "(summed over the orchestrators, the timers waiting).")
TIMER_LATENESS = Histogram(
    "kwf_timer_lateness_seconds", "How long after its due time a timer fired.", buckets=LATENESS_BUCKETS)
CHILDREN = Counter("kwf_child_workflows_scheduled_total", "Child workflows started, by child workflow name.",
                   ["workflow"])
EVENTS_RECEIVED = Counter("kwf_external_events_received_total", "External events accepted into history.")
STALLS = Counter(
    "kwf_workflow_stalls_total", "Instances that stalled because this runtime lacks the code their history "
    "recorded, by reason (VERSION_NOT_AVAILABLE, PATCH_MISMATCH).", ["reason"])
DROPPED = Counter(
    "kwf_orchestrator_dropped_total", "Proposed events the orchestrator refused (a stray or duplicate result, "
    "an event for an unknown or ended instance, a second start), by event type.", ["event"])

_enabled = os.environ.get("KWF_METRICS", "on").strip().lower() not in ("off", "0", "false", "no")
if not _enabled:
    streams_metrics.disable()


def enabled() -> bool:
    """Whether metrics are recorded (``KWF_METRICS`` is not ``off``)."""
    return _enabled


# -- the orchestrator -----------------------------------------------------------------


def history_emitted(events: Iterable[HistoryEvent]) -> None:
    """The orchestrator decided to append ``events`` to history."""
    if not _enabled:
        return
    for event in events:
        payload = event.event
        if isinstance(payload, TaskScheduled):
            ACTIVITIES_SCHEDULED.labels(payload.name).inc()
        elif isinstance(payload, ExecutionStarted):
            STARTS.labels(payload.name).inc()
        elif isinstance(payload, TimerCreated):
            TIMERS_CREATED.inc()
            TIMERS_PENDING.inc()
        elif isinstance(payload, TimerFired):
            TIMERS_FIRED.inc()
            TIMERS_PENDING.dec()
            TIMER_LATENESS.observe(max(0.0, (event.timestamp - payload.fire_at).total_seconds()))
        elif isinstance(payload, EventRaised):
            EVENTS_RECEIVED.inc()
        elif isinstance(payload, ChildWorkflowScheduled):
            CHILDREN.labels(payload.name).inc()
        elif isinstance(payload, ExecutionStalled):
            STALLS.labels(payload.reason).inc()


def status_emitted(state: Any) -> None:
    """The orchestrator wrote ``state`` (an ``InstanceState``) as the instance's new status."""
    if _enabled and state.ended:
        status = state.status.name
        COMPLETIONS.labels(state.name, status).inc()
        EXECUTION_SECONDS.labels(state.name, status).observe(max(0.0, (state.updated_ms - state.created_ms) / 1000))


def event_dropped(payload: Any) -> None:
    """The orchestrator refused a proposed event (its payload)."""
    if not _enabled:
        return
    DROPPED.labels(type(payload).__name__).inc()
    if isinstance(payload, TimerFired):
        TIMERS_PENDING.dec()


class _ExecutorCaches(Collector):
    """Reads the live-run cache counters of every executor in the process at scrape time."""

    def __init__(self) -> None:
        self.executors: weakref.WeakSet[Any] = weakref.WeakSet()

    def collect(self) -> Iterator[Any]:
        hits = CounterMetricFamily("kwf_live_run_cache_hits", "Workflow steps that advanced a cached live run.")
        misses = CounterMetricFamily(
            "kwf_live_run_cache_misses", "Workflow steps that replayed the history because no live run was cached.")
        size = GaugeMetricFamily("kwf_live_run_cache_size", "Live workflow runs held in memory.")
        executors = list(self.executors)
        hits.add_metric([], sum(e.cache_hits for e in executors))
        misses.add_metric([], sum(e.cache_misses for e in executors))
        size.add_metric([], sum(e.cached_instances for e in executors))
        yield from (hits, misses, size)


_caches = _ExecutorCaches()
REGISTRY.register(_caches)


def watch_executor(executor: Any) -> None:
    """Export the cache counters of ``executor`` (an ``engine.replay.executor.Executor``)."""
    _caches.executors.add(executor)


# -- activity workers -----------------------------------------------------------------

R = TypeVar("R")
# A worker's method that runs one attempt of a task: ``async (self, task) -> outcome``.
AttemptRunner = Callable[[Any, Any], Coroutine[Any, Any, R]]
# The same, decorated: ``async (self, task, headers=None) -> outcome``, with the task record's headers.
ObservedRunner = Callable[..., Coroutine[Any, Any, R]]


def observed_activity(run: AttemptRunner[R]) -> ObservedRunner[R]:
    """Decorates a worker's ``async (self, task) -> ActivityOutcome``: counts, times and
    measures the scheduling delay of each attempt, names it in log records, and runs it in a
    span under the trace context of the task record's ``headers`` (an extra argument)."""
    from engine.observability import logs, tracing

    @functools.wraps(run)
    async def observed(self: Any, task: Any, headers: Any = None) -> R:
        began = time.perf_counter()
        if _enabled:
            SCHEDULING_DELAY.labels(task.name).observe(_seconds_since(task.scheduled_at))
            ACTIVITIES_IN_FLIGHT.inc()
        with logs.bound(instance_id=task.instance_id, workflow=task.workflow_name, activity=task.name), \
                tracing.activity_span(task, headers) as span:
            try:
                outcome: Any = await run(self, task)
            finally:
                if _enabled:
                    ACTIVITIES_IN_FLIGHT.dec()
            tracing.record_outcome(span, outcome)
        if _enabled:
            ACTIVITY_SECONDS.labels(task.name).observe(time.perf_counter() - began)
            ACTIVITY_EXECUTIONS.labels(task.name, activity_outcome(outcome)).inc()
        return outcome

    return observed


def activity_outcome(outcome: Any) -> str:
    """``success``, ``timeout`` or ``failure``: the outcome label of an ``ActivityOutcome``."""
    failure = getattr(outcome, "failure", None)
    if failure is None:
        return "success"
    return "timeout" if failure.type == "ActivityTimeout" else "failure"


def _seconds_since(moment: datetime) -> float:
    return max(0.0, (now_utc() - moment).total_seconds())
