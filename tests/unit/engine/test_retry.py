"""Retry policies: validation, delays, and durable retry timers for activities and child workflows."""

from __future__ import annotations

from datetime import timedelta

import pytest

import engine as wf
from engine import RetryPolicy
from engine.core.history import HistoryEvent, TaskFailed, TaskScheduled, TimerCreated, TimerFired, WorkflowStatus
from engine.replay.executor import Registry
from tests.unit.engine.driver import Driver

CACHE_MODES = pytest.mark.parametrize("cache_size", [10_000, 0], ids=["cached", "replayed"])
SECOND = timedelta(seconds=1)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"first_retry_interval": timedelta(0), "max_number_of_attempts": 3}, "first_retry_interval"),
        ({"first_retry_interval": -SECOND, "max_number_of_attempts": 3}, "first_retry_interval"),
        ({"first_retry_interval": SECOND, "max_number_of_attempts": 0}, "max_number_of_attempts"),
        ({"first_retry_interval": SECOND, "max_number_of_attempts": 3, "backoff_coefficient": 0.5}, "backoff"),
        (
            {"first_retry_interval": 2 * SECOND, "max_number_of_attempts": 3, "max_retry_interval": SECOND},
            "max_retry_interval",
        ),
        ({"first_retry_interval": SECOND, "max_number_of_attempts": 3, "retry_timeout": timedelta(0)}, "retry_timeout"),
    ],
)
def test_policies_out_of_range_are_refused_with_the_field_named(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RetryPolicy(**kwargs)


def test_delays_double_and_are_capped_by_max_retry_interval() -> None:
    policy = RetryPolicy(SECOND, 6, backoff_coefficient=2, max_retry_interval=6 * SECOND)
    assert [policy.delay_after(n).total_seconds() for n in range(1, 6)] == [1, 2, 4, 6, 6]


class Flaky:
    """An activity that fails its first ``failures`` calls, then returns how many calls it took."""

    def __init__(self, failures: int, error: type[Exception] = ConnectionError) -> None:
        self.failures = failures
        self.error = error
        self.calls = 0

    def __call__(self, ctx: wf.WorkflowActivityContext, value: int) -> int:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error(f"attempt {self.calls} failed")
        return self.calls


def run_with_policy(policy: RetryPolicy, activity: Flaky, cache_size: int = 10_000) -> Driver:
    def workflow(ctx: wf.DaprWorkflowContext, value: int):
        try:
            return (yield ctx.call_activity("flaky", input=value, retry_policy=policy))
        except wf.TaskFailedError as err:
            return {"failed": err.details.type, "message": str(err)}

    reg = Registry()
    reg.register_workflow(workflow, name="wf")
    reg.register_activity(activity, name="flaky")
    driver = Driver(reg, cache_size=cache_size)
    driver.start("wf", 1)
    driver.run()
    return driver


def retry_delays(history: list[HistoryEvent]) -> list[float]:
    """Seconds between each TaskFailed and the retry timer it led to."""
    delays = []
    failed_at = None
    for event in history:
        if isinstance(event.event, TaskFailed):
            failed_at = event.timestamp
        elif isinstance(event.event, TimerCreated) and failed_at is not None:
            delays.append((event.event.fire_at - failed_at).total_seconds())
    return delays


@CACHE_MODES
def test_failing_twice_then_succeeding_under_three_attempts_completes(cache_size: int) -> None:
    driver = run_with_policy(RetryPolicy(SECOND, 3, backoff_coefficient=2), Flaky(2), cache_size)
    inst = driver.instance()
    assert inst.status is WorkflowStatus.COMPLETED
    assert inst.result == 3
    assert retry_delays(inst.history) == [1, 2]
    kinds = [type(e).__name__ for e in inst.events[1:-1]]
    assert kinds == [
        "TaskScheduled", "TaskFailed", "TimerCreated", "TimerFired",
        "TaskScheduled", "TaskFailed", "TimerCreated", "TimerFired",
        "TaskScheduled", "TaskCompleted",
    ]  # fmt: skip
    # One counter for tasks and timers: attempts are tasks 0, 2, 4; the pauses timers 1 and 3.
    assert [e.task_id for e in inst.of_kind(TaskScheduled)] == [0, 2, 4]
    assert [e.timer_id for e in inst.of_kind(TimerFired)] == [1, 3]


@CACHE_MODES
def test_failing_every_attempt_raises_task_failed_error_after_the_last(cache_size: int) -> None:
    flaky = Flaky(10)
    driver = run_with_policy(RetryPolicy(SECOND, 3), flaky, cache_size)
    assert flaky.calls == 3
    result = driver.instance().result
    assert result["failed"] == "ConnectionError"
    assert "after 3 attempts" in result["message"]
    assert "attempt 3 failed" in result["message"]


def test_non_retryable_error_types_fail_at_once() -> None:
    flaky = Flaky(10, error=ValueError)
    policy = RetryPolicy(SECOND, 5, non_retryable_error_types=[ValueError])
    driver = run_with_policy(policy, flaky)
    assert flaky.calls == 1
    assert driver.instance().result["failed"] == "ValueError"
    assert driver.instance().of_kind(TimerCreated) == []


def test_non_retryable_types_by_name_leave_other_types_retried() -> None:
    flaky = Flaky(1, error=ConnectionError)
    driver = run_with_policy(RetryPolicy(SECOND, 5, non_retryable_error_types=["ValueError"]), flaky)
    assert flaky.calls == 2
    assert driver.instance().result == 2


def test_delays_1_2_4_8_are_capped_by_max_retry_interval() -> None:
    uncapped = run_with_policy(RetryPolicy(SECOND, 5, backoff_coefficient=2), Flaky(10))
    assert retry_delays(uncapped.instance().history) == [1, 2, 4, 8]
    capped = run_with_policy(RetryPolicy(SECOND, 5, backoff_coefficient=2, max_retry_interval=5 * SECOND), Flaky(10))
    assert retry_delays(capped.instance().history) == [1, 2, 4, 5]


def test_retry_timeout_stops_retrying_before_the_attempts_run_out() -> None:
    # Attempts start at t=0, 1 and 3 s; the next would start at 7 s, past the 5 s timeout.
    flaky = Flaky(10)
    policy = RetryPolicy(SECOND, 10, backoff_coefficient=2, retry_timeout=5 * SECOND)
    driver = run_with_policy(policy, flaky)
    assert flaky.calls == 3
    assert retry_delays(driver.instance().history) == [1, 2]
    assert driver.instance().result["failed"] == "ConnectionError"


@CACHE_MODES
def test_retries_inside_when_all_and_when_any(cache_size: int) -> None:
    policy = RetryPolicy(SECOND, 3)
    first, second, third = Flaky(1), Flaky(2), Flaky(1)

    def workflow(ctx: wf.DaprWorkflowContext, _):
        both = yield wf.when_all(
            [ctx.call_activity("first", retry_policy=policy), ctx.call_activity("second", retry_policy=policy)]
        )
        work = ctx.call_activity("third", retry_policy=policy)
        winner = yield wf.when_any([work, ctx.create_timer(timedelta(hours=1))])
        return [both, winner == work, work.get_result()]

    reg = Registry()
    reg.register_workflow(workflow, name="wf")
    for name, fn in (("first", first), ("second", second), ("third", third)):
        reg.register_activity(fn, name=name)
    driver = Driver(reg, cache_size=cache_size)
    driver.start("wf")
    driver.run()
    # The hour-long timer is still pending when the retried activity wins the race.
    assert driver.instance().result == [[2, 3], True, 2]


def test_parent_retrying_a_child_retrying_a_failing_activity_runs_it_nine_times() -> None:
    policy = RetryPolicy(SECOND, 3)

    def parent(ctx: wf.DaprWorkflowContext, _):
        try:
            yield ctx.call_child_workflow(child, retry_policy=policy)
        except wf.TaskFailedError as err:
            return [err.details.type, err.details.inner.type if err.details.inner else None]

    def child(ctx: wf.DaprWorkflowContext, _):
        yield ctx.call_activity(always_fails, retry_policy=policy)

    def always_fails(ctx, _):
        raise RuntimeError("down")

    reg = Registry()
    reg.register_workflow(parent)
    reg.register_workflow(child)
    reg.register_activity(always_fails)
    driver = Driver(reg)
    driver.start(parent, instance_id="p")
    driver.run()

    assert driver.activity_runs["always_fails"] == 9
    # Each child attempt is its own instance, named after the parent's task ID for it.
    assert sorted(i for i in driver.instances if i != "p") == ["p:0", "p:2", "p:4"]
    assert driver.instance("p").result == ["TaskFailedError", "RuntimeError"]
