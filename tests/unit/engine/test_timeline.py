"""An instance's history as timeline rows: pairing, attempts, failures, executions, bars."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from rich.console import Console

import engine as wf
from engine import RetryPolicy
from engine.api.timeline import TimelineRow, bar_width_for, format_seconds, render_timeline, span_bar, timeline_rows
from engine.core.history import (
    ChildWorkflowCompleted,
    ChildWorkflowFailed,
    ChildWorkflowScheduled,
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
)
from engine.replay.executor import Registry
from tests.unit.engine.driver import Driver

T0 = datetime(2024, 5, 6, 7, 0, 0, tzinfo=UTC)
SECOND = timedelta(seconds=1)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def history(*steps: tuple[float, Event], execution_id: str = "exec-1", instance_id: str = "wf-1") -> list[HistoryEvent]:
    """HistoryEvents from ``(seconds after T0, event)`` pairs, numbered in order."""
    return [HistoryEvent(instance_id, execution_id, n, at(s), body) for n, (s, body) in enumerate(steps)]


def summary(rows: list[TimelineRow]) -> list[tuple[str, str, float, float | None, str, int]]:
    return [(r.kind, r.name, (r.start - T0).total_seconds(), r.seconds, r.outcome, r.attempt) for r in rows]


def test_fan_out_gives_one_overlapping_row_per_activity_in_scheduling_order() -> None:
    rows = timeline_rows(history(
        (0, ExecutionStarted("fan_out", "[1,2,3]")),
        (0, TaskScheduled(0, "square", "1")),
        (0, TaskScheduled(1, "square", "2")),
        (0, TaskScheduled(2, "square", "3")),
        (1.0, TaskCompleted(0, "1")),
        (1.5, TaskCompleted(2, "9")),  # results arrive in any order
        (2.5, TaskCompleted(1, "4")),
        (2.5, TaskScheduled(3, "total", "[1,4,9]")),
        (3.0, TaskCompleted(3, "14")),
        (3.0, ExecutionCompleted(WorkflowStatus.COMPLETED, "14")),
    ))
    assert summary(rows) == [
        ("workflow", "fan_out", 0, 3.0, "completed", 1),
        ("activity", "square", 0, 1.0, "completed", 1),
        ("activity", "square", 0, 2.5, "completed", 1),
        ("activity", "square", 0, 1.5, "completed", 1),
        ("activity", "total", 2.5, 0.5, "completed", 1),
    ]
    assert [r.task_id for r in rows[1:]] == [0, 1, 2, 3]
    # Parallel bars: the three squares start in the first column, the total after them all.
    bars = [span_bar(r, T0, at(3), width=6) for r in rows]
    assert bars == ["██████", "██    ", "█████ ", "███   ", "     █"]


def test_fan_out_run_by_the_executor_keeps_every_branch() -> None:
    def fan_out(ctx: wf.DaprWorkflowContext, n: int):
        squares = yield wf.when_all([ctx.call_activity("square", input=i) for i in range(n)])
        return sum(squares)

    reg = Registry()
    reg.register_workflow(fan_out, name="fan_out")
    reg.register_activity(lambda ctx, x: x * x, name="square")
    driver = Driver(reg, tick=SECOND)
    driver.start("fan_out", 5)
    driver.run()
    rows = timeline_rows(driver.instance().history)
    activities = [r for r in rows if r.kind == "activity"]
    assert len(activities) == 5 and {r.outcome for r in activities} == {"completed"}
    assert len({r.start for r in activities}) == 1  # all scheduled in one step
    assert rows[0].outcome == "completed" and rows[0].end == max(r.end for r in activities if r.end)


def flaky_workflow_history(failures: int, attempts: int) -> list[HistoryEvent]:
    calls = {"n": 0}

    def flaky(ctx: wf.WorkflowActivityContext, value: int) -> int:
        calls["n"] += 1
        if calls["n"] <= failures:
            raise ConnectionError(f"attempt {calls['n']} failed")
        return value

    def chain(ctx: wf.DaprWorkflowContext, value: int):
        policy = RetryPolicy(SECOND, attempts, backoff_coefficient=2)
        first = yield ctx.call_activity("flaky", input=value, retry_policy=policy)
        return (yield ctx.call_activity("echo", input=first))

    reg = Registry()
    reg.register_workflow(chain, name="chain")
    reg.register_activity(flaky, name="flaky")
    reg.register_activity(lambda ctx, x: x, name="echo")
    driver = Driver(reg)
    driver.start("chain", 7)
    driver.run()
    return driver.instance().history


def test_retries_count_attempts_and_name_their_pauses() -> None:
    rows = timeline_rows(flaky_workflow_history(failures=2, attempts=3))
    assert [(r.kind, r.name, r.attempt, r.outcome) for r in rows] == [
        ("workflow", "chain", 1, "completed"),
        ("activity", "flaky", 1, "failed"),
        ("timer", "retry pause: flaky", 1, "fired"),
        ("activity", "flaky", 2, "failed"),
        ("timer", "retry pause: flaky", 1, "fired"),
        ("activity", "flaky", 3, "completed"),
        ("activity", "echo", 1, "completed"),
    ]
    assert [r.detail for r in rows if r.outcome == "failed"] == [
        "ConnectionError: attempt 1 failed", "ConnectionError: attempt 2 failed"]
    assert [r.detail for r in rows if r.kind == "timer"] == ["before attempt 2", "before attempt 3"]
    assert [r.seconds for r in rows if r.kind == "timer"] == [1.0, 2.0]  # the backoff doubles


def test_retries_exhausted_fail_the_workflow_with_its_message() -> None:
    rows = timeline_rows(flaky_workflow_history(failures=5, attempts=2))
    assert [(r.kind, r.attempt, r.outcome) for r in rows] == [
        ("workflow", 1, "failed"), ("activity", 1, "failed"), ("timer", 1, "fired"), ("activity", 2, "failed")]
    assert rows[0].detail is not None
    assert rows[0].detail.startswith("TaskFailedError: activity 'flaky' failed after 2 attempts")


def test_the_same_call_again_without_a_failure_is_a_first_attempt() -> None:
    rows = timeline_rows(history(
        (0, ExecutionStarted("twice")),
        (0, TaskScheduled(0, "ping", '"x"')), (1, TaskCompleted(0)),
        (1, TaskScheduled(1, "ping", '"x"')), (2, TaskCompleted(1)),
        (2, TaskScheduled(2, "ping", '"y"')), (3, TaskFailed(2, FailureDetails("ValueError", "no"))),
        (3, TaskScheduled(3, "ping", '"x"')),  # a failure of another input is not a retry of this one
    ))
    assert [r.attempt for r in rows if r.kind == "activity"] == [1, 1, 1, 1]


def test_a_failed_activity_and_workflow_carry_their_messages() -> None:
    rows = timeline_rows(history(
        (0, ExecutionStarted("order")),
        (0, TaskScheduled(0, "charge", "25")),
        (0.2, TaskFailed(0, FailureDetails("ValueError", "card declined", "Traceback ..."))),
        (0.2, ExecutionCompleted(WorkflowStatus.FAILED, None, FailureDetails(
            "TaskFailedError", "activity 'charge' failed: ValueError: card declined"))),
    ))
    assert summary(rows) == [("workflow", "order", 0, 0.2, "failed", 1), ("activity", "charge", 0, 0.2, "failed", 1)]
    assert rows[1].detail == "ValueError: card declined"
    assert rows[0].detail == "TaskFailedError: activity 'charge' failed: ValueError: card declined"


def test_timers_fire_wait_or_are_abandoned_when_the_execution_ends() -> None:
    running = history(
        (0, ExecutionStarted("monitor")),
        (0, TimerCreated(0, at(5))), (5, TimerFired(0, at(5))),
        (5, TimerCreated(1, at(3600))),
        (5, CustomStatusSet('"waiting"')),  # no row: the status is not a span
    )
    rows = timeline_rows(running)
    assert summary(rows) == [
        ("workflow", "monitor", 0, None, "running", 1),
        ("timer", "until 2024-05-06 07:00:05Z", 0, 5.0, "fired", 1),
        ("timer", "until 2024-05-06 08:00:00Z", 5, None, "waiting", 1),
    ]
    ended = timeline_rows([*running, HistoryEvent("wf-1", "exec-1", 5, at(6),
                                                  ExecutionCompleted(WorkflowStatus.COMPLETED, "1"))])
    assert ended[2].outcome == "abandoned" and ended[2].seconds == 1.0
    assert ended[2].detail == "the execution ended before this did"


def test_events_and_management_are_instants_and_termination_abandons_open_work() -> None:
    rows = timeline_rows(history(
        (0, ExecutionStarted("approval")),
        (0, TaskScheduled(0, "send_request", None)),
        (1, ExecutionSuspended("maintenance")),
        (2, EventRaised("approval_received", '{"approver":"Jane"}')),
        (3, ExecutionResumed(None)),
        (4, ExecutionTerminated("by operator", '"stopped"')),
        (4, ExecutionCompleted(WorkflowStatus.TERMINATED, '"stopped"')),
    ))
    assert summary(rows) == [
        ("workflow", "approval", 0, 4.0, "terminated", 1),
        ("activity", "send_request", 0, 4.0, "abandoned", 1),
        ("workflow", "suspended", 1, 0.0, "received", 1),
        ("event", "approval_received", 2, 0.0, "received", 1),
        ("workflow", "resumed", 3, 0.0, "received", 1),
        ("workflow", "terminated", 4, 0.0, "received", 1),
    ]
    assert rows[2].detail == "maintenance" and rows[5].detail == "by operator"


def test_children_link_to_their_instances_and_report_failures() -> None:
    rows = timeline_rows(history(
        (0, ExecutionStarted("parent")),
        (0, ChildWorkflowScheduled(0, "kid", "wf-1:0", "1")),
        (0, ChildWorkflowScheduled(1, "kid", "wf-1:1", "2")),
        (2, ChildWorkflowCompleted(0, "10")),
        (3, ChildWorkflowFailed(1, FailureDetails("TaskFailedError", "child broke"))),
    ))
    assert summary(rows)[1:] == [("child", "kid", 0, 2.0, "completed", 1), ("child", "kid", 0, 3.0, "failed", 1)]
    assert [r.child_instance_id for r in rows[1:]] == ["wf-1:0", "wf-1:1"]
    assert rows[2].detail == "TaskFailedError: child broke"


def test_each_execution_of_continue_as_new_has_its_own_rows() -> None:
    first = history(
        (0, ExecutionStarted("counter", "0")),
        (0, TaskScheduled(0, "step", "0")),
        (1, TaskCompleted(0, "1")),
        (1, ExecutionCompleted(WorkflowStatus.CONTINUED_AS_NEW)),
        execution_id="exec-1",
    )
    second = history(
        (1, ExecutionStarted("counter", "1")),
        (1, EventRaised("carried", None)),
        (1, TaskScheduled(0, "step", "1")),  # task IDs start again in each execution
        (3, TaskCompleted(0, "2")),
        (3, ExecutionCompleted(WorkflowStatus.COMPLETED, "2")),
        execution_id="exec-2",
    )
    rows = timeline_rows([*first, *second])
    assert summary(rows) == [
        ("workflow", "counter", 0, 1.0, "continued_as_new", 1),
        ("activity", "step", 0, 1.0, "completed", 1),
        ("workflow", "counter", 1, 2.0, "completed", 1),
        ("event", "carried", 1, 0.0, "received", 1),
        ("activity", "step", 1, 2.0, "completed", 1),
    ]
    assert timeline_rows(second) == rows[2:]  # the latest execution alone, as the API reads it


def test_a_deferred_start_is_pending_until_its_start_timer_fires() -> None:
    events = history((0, ExecutionStarted("later", None, None, at(60))))
    assert timeline_rows(events)[0].outcome == "pending"
    events += history((60, TimerFired(-1, at(60))))
    assert timeline_rows(events)[0].outcome == "running"


def test_results_for_unknown_tasks_and_events_before_a_start_are_ignored() -> None:
    rows = timeline_rows(history(
        (0, TaskCompleted(9, "x")),
        (0, ExecutionStarted("wf")),
        (1, TaskCompleted(9, "x")), (1, TimerFired(4, at(1))), (1, TaskFailed(5, FailureDetails("E", "m"))),
    ))
    assert summary(rows) == [("workflow", "wf", 0, None, "running", 1)]
    assert timeline_rows([]) == []


def test_rows_as_json_name_every_field() -> None:
    row = timeline_rows(history((0, ExecutionStarted("wf")), (0, ChildWorkflowScheduled(3, "kid", "c-1", None))))[1]
    assert row.to_json() == {
        "kind": "child", "name": "kid", "start": "2024-05-06T07:00:00+00:00", "end": None, "seconds": None,
        "outcome": "running", "attempt": 1, "detail": None, "taskId": 3, "childInstanceId": "c-1"}


@pytest.mark.parametrize(("row", "bar"), [
    (TimelineRow("activity", "a", at(0), at(10), "completed"), "██████████"),
    (TimelineRow("activity", "a", at(2), at(2.1), "completed"), "  █       "),  # at least one block
    (TimelineRow("activity", "a", at(5), None, "running"), "     ▒▒▒▒▒"),  # open: up to the end
    (TimelineRow("event", "e", at(4), at(4), "received"), "    ◆     "),
    (TimelineRow("event", "e", at(10), at(10), "received"), "         ◆"),  # the last column still shows
])
def test_span_bar_places_rows_in_the_instance_lifetime(row: TimelineRow, bar: str) -> None:
    assert span_bar(row, T0, at(10), width=10) == bar


def test_span_bar_of_an_instant_lifetime_starts_at_the_first_column() -> None:
    assert span_bar(TimelineRow("activity", "a", T0, T0, "completed"), T0, T0, width=4) == "█   "


@pytest.mark.parametrize(("console_width", "bar_width"), [(80, 12), (110, 15), (150, 35), (240, 40)])
def test_bars_widen_with_the_terminal_up_to_a_limit(console_width: int, bar_width: int) -> None:
    assert bar_width_for(console_width) == bar_width


@pytest.mark.parametrize(("seconds", "text"), [
    (0.0854, "85 ms"), (2.349, "2.35 s"), (185, "3m 05s"), (7380, "2h 03m")])
def test_durations_read_as_a_person_would_say_them(seconds: float, text: str) -> None:
    assert format_seconds(seconds) == text


def test_render_shows_each_row_its_bar_and_failures_with_their_message() -> None:
    events = history(
        (0, ExecutionStarted("order")),
        (0, TaskScheduled(0, "reserve", None)), (0, TaskScheduled(1, "charge", None)),
        (1, TaskCompleted(0)),
        (2, TaskFailed(1, FailureDetails("ValueError", "card declined"))),
        (2, ExecutionCompleted(WorkflowStatus.FAILED, None, FailureDetails("TaskFailedError", "charge failed"))),
        instance_id="order-7",
    )
    console = Console(record=True, width=160, color_system="truecolor")
    console.print(render_timeline(events))
    text = console.export_text(clear=False)
    assert "order-7 · order · failed" in text
    assert "failed: ValueError: card declined" in text
    assert "+1.00 s" in text and "2.00 s" in text
    lines = {line.split("│")[2].strip(): line for line in text.splitlines() if line.count("│") > 8}
    assert set(lines) == {"order", "reserve", "charge"}
    assert "█" * 12 + " " * 12 in lines["reserve"]  # the first half of the instance's life
    assert "█" * 24 in lines["charge"]  # parallel with reserve, to the end
    styled = next(line for line in console.export_text(styles=True).splitlines() if "card declined" in line)
    assert "31mcharge" in styled and "31m: ValueError: card declined" in styled  # in red
