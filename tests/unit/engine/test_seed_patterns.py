"""The seed's Python workflows, unchanged but for their import line, give the results the seed describes."""

from __future__ import annotations

import random
import time
from datetime import timedelta
from types import SimpleNamespace

import pytest

from engine.core import payload
from engine.core.history import ExecutionCompleted, TaskScheduled, TimerCreated, WorkflowStatus
from engine.replay.executor import Registry
from examples import fan_out, monitor, purchase_order, task_chain
from tests.unit.engine.driver import Driver

CACHE_MODES = pytest.mark.parametrize("cache_size", [10_000, 0], ids=["cached", "replayed"])


def chain_registry(step2=task_chain.step2) -> Registry:
    reg = Registry()
    reg.register_workflow(task_chain.task_chain_workflow)
    reg.register_activity(task_chain.step1)
    reg.register_activity(step2, name="step2")
    reg.register_activity(task_chain.step3)
    reg.register_activity(task_chain.error_handler)
    return reg


@CACHE_MODES
def test_task_chain_passes_each_result_to_the_next_step(cache_size: int, capsys: pytest.CaptureFixture[str]) -> None:
    driver = Driver(chain_registry(), cache_size=cache_size)
    driver.start(task_chain.task_chain_workflow, 1)
    driver.run()

    inst = driver.instance()
    assert inst.status is WorkflowStatus.COMPLETED
    # step1: 1 + 1 = 2, step2: 2 * 2 = 4, step3: 4 ^ 2 = 6
    assert inst.result == [2, 4, 6]
    assert [t.name for t in inst.of_kind(TaskScheduled)] == ["step1", "step2", "step3"]
    out = capsys.readouterr().out
    assert "Step 3: Received input: 4." in out
    assert "error handler" not in out


@CACHE_MODES
def test_task_chain_runs_the_error_handler_when_a_step_raises(
    cache_size: int, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken_step2(ctx, activity_input):
        raise RuntimeError(f"cannot double {activity_input}")

    driver = Driver(chain_registry(step2=broken_step2), cache_size=cache_size)
    driver.start(task_chain.task_chain_workflow, 1)
    driver.run()

    inst = driver.instance()
    assert [t.name for t in inst.of_kind(TaskScheduled)] == ["step1", "step2", "error_handler"]
    assert driver.activity_runs["step3"] == 0
    assert driver.activity_runs["error_handler"] == 1
    assert "Executing error handler: activity 'step2' failed: RuntimeError: cannot double 2." in capsys.readouterr().out
    # The workflow re-raises after compensating, so the instance fails with the task's error.
    assert inst.status is WorkflowStatus.FAILED
    assert inst.failure is not None
    assert inst.failure.type == "TaskFailedError"
    assert inst.failure.inner is not None and inst.failure.inner.type == "RuntimeError"


@CACHE_MODES
def test_fan_out_processes_every_item_in_parallel_and_sums_them(
    cache_size: int, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(time, "sleep", lambda _: None)  # process_work_item sleeps 5 s per item
    reg = Registry()
    reg.register_workflow(fan_out.batch_processing_workflow)
    for fn in (fan_out.get_work_batch, fan_out.process_work_item, fan_out.process_results):
        reg.register_activity(fn)
    driver = Driver(reg, cache_size=cache_size)
    driver.start(fan_out.batch_processing_workflow, 10)

    driver.run_one("activity")  # get_work_batch
    # All ten items are scheduled in one step, before any of them completes.
    assert len(driver.pending("activity")) == 10
    driver.run()

    inst = driver.instance()
    assert inst.status is WorkflowStatus.COMPLETED
    assert inst.output is None  # the seed's workflow returns nothing
    assert driver.activity_runs["process_work_item"] == 10
    assert "Final result: 110." in capsys.readouterr().out  # 2 * (1 + ... + 10)


def monitor_driver(monkeypatch: pytest.MonkeyPatch, statuses: list[str], cache_size: int) -> Driver:
    answers = iter(statuses)
    monkeypatch.setattr(random, "choice", lambda _: next(answers))
    reg = Registry()
    reg.register_workflow(monitor.status_monitor_workflow)
    reg.register_activity(monitor.check_status)
    reg.register_activity(monitor.send_alert)
    return Driver(reg, cache_size=cache_size)


@CACHE_MODES
def test_monitor_sleeps_a_minute_while_healthy_and_continues_as_new(
    cache_size: int, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    driver = monitor_driver(monkeypatch, ["healthy"] * 3, cache_size)
    inst = driver.start(monitor.status_monitor_workflow, monitor.JobStatus("job-1", False))
    driver.run(until=lambda: len(inst.past_executions) == 3)

    for past in inst.past_executions:
        events = [e.event for e in past]
        timer = next(e for e in past if isinstance(e.event, TimerCreated))
        assert timer.event.fire_at - timer.timestamp == timedelta(seconds=60)
        assert events[-1] == ExecutionCompleted(WorkflowStatus.CONTINUED_AS_NEW)
    # Each execution starts from the job the previous one passed on, healthy from then on;
    # it crossed the wire as a JobStatus object.
    started = inst.past_executions[1][0].event
    assert payload.decode(started.input) == SimpleNamespace(job_id="job-1", is_healthy=True)
    assert '"__kwf_object__":"JobStatus"' in (started.input or "")
    assert driver.activity_runs["send_alert"] == 0
    assert capsys.readouterr().out.count("Job 'job-1' is healthy.") == 3


@CACHE_MODES
def test_monitor_alerts_once_when_the_job_turns_unhealthy_and_polls_every_five_seconds(
    cache_size: int, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    driver = monitor_driver(monkeypatch, ["healthy", "unhealthy", "unhealthy"], cache_size)
    inst = driver.start(monitor.status_monitor_workflow, monitor.JobStatus("job-1", False))
    driver.run(until=lambda: len(inst.past_executions) == 3)

    delays = []
    for past in inst.past_executions:
        timer = next(e for e in past if isinstance(e.event, TimerCreated))
        delays.append(timer.event.fire_at - timer.timestamp)
    assert delays == [timedelta(seconds=60), timedelta(seconds=5), timedelta(seconds=5)]
    # The alert is fire-and-forget (never yielded) yet still scheduled, and only on the change.
    assert driver.activity_runs["send_alert"] == 1
    assert capsys.readouterr().out.count("*** Alert: Job 'job-1' is unhealthy!") == 1


def purchase_driver(cache_size: int) -> Driver:
    reg = Registry()
    reg.register_workflow(purchase_order.purchase_order_workflow)
    reg.register_activity(purchase_order.send_approval_request)
    reg.register_activity(purchase_order.place_order)
    return Driver(reg, cache_size=cache_size)


@CACHE_MODES
def test_purchase_order_under_1000_is_auto_approved(cache_size: int) -> None:
    driver = purchase_driver(cache_size)
    driver.start(purchase_order.purchase_order_workflow, purchase_order.Order(999.0, "pen", 3))
    driver.run()
    assert driver.instance().result == "Auto-approved"
    assert driver.activity_runs.total() == 0


@CACHE_MODES
def test_purchase_order_approved_by_event_within_24_hours(
    cache_size: int, capsys: pytest.CaptureFixture[str]
) -> None:
    driver = purchase_driver(cache_size)
    driver.start(purchase_order.purchase_order_workflow, purchase_order.Order(1500.0, "laptop", 2))
    driver.run_one("activity")  # send_approval_request
    assert len(driver.pending("timer")) == 1
    # As the seed raises it: event_data=asdict(Approval("Jane Doe")).
    driver.raise_event("wf-1", "approval_received", {"approver": "Jane Doe"})
    driver.run()

    inst = driver.instance()
    assert inst.result == "Approved by 'Jane Doe'"
    assert driver.activity_runs["place_order"] == 1
    out = capsys.readouterr().out
    assert "*** Sending approval request for order: laptop (2)" in out  # Order.__str__: input became an Order
    assert "*** Placing order: laptop (2)" in out


@CACHE_MODES
def test_purchase_order_is_cancelled_when_nobody_approves_in_24_hours(cache_size: int) -> None:
    driver = purchase_driver(cache_size)
    driver.start(purchase_order.purchase_order_workflow, purchase_order.Order(1500.0, "laptop", 2))
    driver.run()

    inst = driver.instance()
    assert inst.result == "Cancelled"
    timer = next(e for e in inst.history if isinstance(e.event, TimerCreated))
    assert timer.event.fire_at - timer.timestamp == timedelta(hours=24)
    assert driver.activity_runs["place_order"] == 0
