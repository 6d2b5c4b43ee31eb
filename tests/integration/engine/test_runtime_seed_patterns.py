"""More of the seed's examples end to end on Kafka: error handling, monitor, external events.

The examples are the seed's code (tests/unit/engine/seed_*.py); only clocks and dice are
patched, and activities are wrapped to count their calls.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import timedelta
from types import SimpleNamespace

import pytest

from engine import WorkflowClient, WorkflowRuntime, WorkflowStatus
from engine.api.history_reader import read_history
from engine.core.history import ExecutionCompleted, ExecutionStarted
from engine.state.config import Settings
from examples import monitor, purchase_order, task_chain
from tests.integration.engine.runtime_process import wait_until


class Calls:
    """Thread-safe record of activity calls (activities run on worker threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.items: list[tuple[str, object]] = []

    def add(self, name: str, value: object) -> None:
        with self._lock:
            self.items.append((name, value))

    def of(self, name: str) -> list[object]:
        with self._lock:
            return [v for n, v in self.items if n == name]

    def wrap(self, fn: Callable, name: str | None = None) -> Callable:
        label = name or fn.__name__

        def activity(ctx, value):
            self.add(label, value)
            return fn(ctx, value)

        activity.__name__ = label
        return activity


# -- task chain: the error handler ----------------------------------------------------


def test_task_chain_runs_its_error_handler_when_a_step_raises(
        start_runtime: Callable[..., WorkflowRuntime], client: WorkflowClient) -> None:
    calls = Calls()

    def step2(ctx, value):
        raise ValueError(f"step2 cannot take {value}")

    def register(runtime: WorkflowRuntime) -> None:
        runtime.register_workflow(task_chain.task_chain_workflow)
        for fn in (task_chain.step1, step2, task_chain.step3, task_chain.error_handler):
            runtime.register_activity(calls.wrap(fn), name=fn.__name__)

    start_runtime(register)
    instance_id = client.schedule_new_workflow(task_chain.task_chain_workflow, input=10)
    state = client.wait_for_workflow_completion(instance_id, timeout_in_seconds=60)

    assert state is not None and state.runtime_status is WorkflowStatus.FAILED, state
    assert "step2 cannot take 11" in state.failure_details.message, state.failure_details
    assert calls.of("step1") == [10] and calls.of("step2") == [11]
    assert calls.of("step3") == [], "the chain went on after the failing step"
    handled = calls.of("error_handler")
    assert len(handled) == 1 and "step2 cannot take 11" in handled[0], handled


# -- monitor: continue-as-new -----------------------------------------------------------

# The monitor's timers run this much faster than the seed's; it checks every 60 s when healthy.
SPEEDUP = 300
HEALTHY_CHECK_S = 60


def test_monitor_continues_as_new_until_terminated(
        start_runtime: Callable[..., WorkflowRuntime], client: WorkflowClient, settings: Settings,
        monkeypatch: pytest.MonkeyPatch) -> None:
    real_timedelta = timedelta
    # 60 s -> 0.2 s when healthy, 5 s -> ~17 ms when not.
    monkeypatch.setattr(monitor, "timedelta", lambda seconds: real_timedelta(seconds=seconds / SPEEDUP))
    dice = itertools.cycle(["healthy", "unhealthy", "unhealthy", "healthy"])
    dice_lock = threading.Lock()

    def choice(_options):
        with dice_lock:
            return next(dice)

    monkeypatch.setattr(monitor, "random", SimpleNamespace(choice=choice))
    calls = Calls()

    def register(runtime: WorkflowRuntime) -> None:
        runtime.register_workflow(monitor.status_monitor_workflow)
        runtime.register_activity(calls.wrap(monitor.check_status))
        runtime.register_activity(calls.wrap(monitor.send_alert))

    start_runtime(register)
    instance_id = client.schedule_new_workflow(monitor.status_monitor_workflow,
                                               input=monitor.JobStatus("job-1", True))
    wait_until(lambda: len(calls.of("check_status")) >= 5 and calls.of("send_alert"), 30,
               lambda: f"the monitor did not loop: {calls.items}")
    # The history of an instance that never stops writing can be read too.
    live = read_history(settings, instance_id, timeout=20)
    assert live and isinstance(live[0].event, ExecutionStarted), live[:1]
    client.terminate_workflow(instance_id)
    stopped_at = len(calls.of("check_status"))

    state = client.get_workflow_state(instance_id)
    assert state is not None and state.runtime_status is WorkflowStatus.TERMINATED, state
    time.sleep(5 * HEALTHY_CHECK_S / SPEEDUP)  # five healthy loops' worth: a loop would show
    # One check may have been on its way to a worker when the terminate arrived.
    assert len(calls.of("check_status")) <= stopped_at + 1, "the monitor kept running after terminate"
    assert calls.of("send_alert")[0] == "Job 'job-1' is unhealthy!"

    history = read_history(settings, instance_id, all_executions=True)
    executions = [e for e in history if isinstance(e.event, ExecutionStarted)]
    continued = [e for e in history if isinstance(e.event, ExecutionCompleted)
                 and e.event.status is WorkflowStatus.CONTINUED_AS_NEW]
    assert len(continued) >= 3 and len(executions) == len(continued) + 1, (len(executions), len(continued))
    assert len({e.execution_id for e in executions}) == len(executions), "executions share an ID"
    # The job state is carried into each new execution: healthy after the first check.
    jobs = [json.loads(e.event.input) for e in executions[:3]]
    assert [(j["job_id"], j["is_healthy"]) for j in jobs] == [("job-1", True), ("job-1", True), ("job-1", False)], jobs


# -- purchase order: external event or timeout ---------------------------------------------


def register_purchase_order(calls: Calls) -> Callable[[WorkflowRuntime], None]:
    def register(runtime: WorkflowRuntime) -> None:
        runtime.register_workflow(purchase_order.purchase_order_workflow)
        runtime.register_activity(calls.wrap(purchase_order.send_approval_request))
        runtime.register_activity(calls.wrap(purchase_order.place_order))

    return register


def test_purchase_order_is_approved_through_a_raised_event_or_auto_approved(
        start_runtime: Callable[..., WorkflowRuntime], client: WorkflowClient, settings: Settings,
        monkeypatch: pytest.MonkeyPatch) -> None:
    calls = Calls()
    start_runtime(register_purchase_order(calls))
    Order, Approval = purchase_order.Order, purchase_order.Approval
    big = client.schedule_new_workflow(purchase_order.purchase_order_workflow, input=Order(2500, "laptop", 2))
    small = client.schedule_new_workflow(purchase_order.purchase_order_workflow, input=Order(99, "mouse", 1))
    wait_until(lambda: calls.of("send_approval_request"), 30, "no approval request was sent")
    assert client.get_workflow_state(big).runtime_status is WorkflowStatus.RUNNING

    # The seed's snippet, import changed; DaprClient() reads KWF_* like the runtime.
    monkeypatch.setenv("KWF_BOOTSTRAP_SERVERS", settings.bootstrap_servers)
    monkeypatch.setenv("KWF_TOPIC_PREFIX", settings.topic_prefix)
    from engine import DaprClient

    instance_id = big
    with DaprClient() as d:
        d.raise_workflow_event(
            instance_id=instance_id,
            workflow_component="dapr",
            event_name="approval_received",
            event_data=asdict(Approval("Jane Doe")))

    approved = client.wait_for_workflow_completion(big, timeout_in_seconds=30)
    assert approved.runtime_status is WorkflowStatus.COMPLETED, approved
    assert json.loads(approved.serialized_output) == "Approved by 'Jane Doe'"
    assert [vars(order) for order in calls.of("place_order")] == [{"cost": 2500, "product": "laptop", "quantity": 2}]
    auto = client.wait_for_workflow_completion(small, timeout_in_seconds=30)
    assert auto.runtime_status is WorkflowStatus.COMPLETED, auto
    assert json.loads(auto.serialized_output) == "Auto-approved"
    assert len(calls.of("send_approval_request")) == 1, "the small order asked for approval"


def test_purchase_order_is_cancelled_when_no_approval_comes_in_time(
        start_runtime: Callable[..., WorkflowRuntime], client: WorkflowClient,
        monkeypatch: pytest.MonkeyPatch) -> None:
    real_timedelta = timedelta
    # 24 hours -> 0.5 s.
    monkeypatch.setattr(purchase_order, "timedelta", lambda hours: real_timedelta(seconds=hours / 48))
    calls = Calls()
    start_runtime(register_purchase_order(calls))
    started = time.monotonic()
    instance_id = client.schedule_new_workflow(purchase_order.purchase_order_workflow,
                                               input=purchase_order.Order(1000, "desk", 1))
    state = client.wait_for_workflow_completion(instance_id, timeout_in_seconds=30)
    assert state.runtime_status is WorkflowStatus.COMPLETED, state
    assert json.loads(state.serialized_output) == "Cancelled"
    assert time.monotonic() - started >= 0.5, "cancelled before the timer was due"
    assert len(calls.of("send_approval_request")) == 1 and calls.of("place_order") == []
