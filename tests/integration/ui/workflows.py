"""Workflows whose pages the UI tests look at: a fan-out, a failure with retries, a tour of every kind."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import engine as wf

# Activities take a visible moment, so their bars have a length on the page.
WORK_SECONDS = 0.15


def fan_out(ctx: wf.DaprWorkflowContext, count: int) -> Any:
    ctx.set_custom_status({"stage": "squaring", "items": count})
    squares = yield wf.when_all([ctx.call_activity(square, input=n) for n in range(count)])
    total = yield ctx.call_activity(add_up, input=squares)
    ctx.set_custom_status({"stage": "done"})
    return {"total": total}


def square(ctx: wf.WorkflowActivityContext, n: int) -> int:
    time.sleep(WORK_SECONDS * (1 + n % 3))
    return n * n


def add_up(ctx: wf.WorkflowActivityContext, numbers: list[int]) -> int:
    time.sleep(WORK_SECONDS)
    return sum(numbers)


def charge_order(ctx: wf.DaprWorkflowContext, order: dict[str, Any]) -> Any:
    yield ctx.call_activity(reserve, input=order)
    policy = wf.RetryPolicy(first_retry_interval=timedelta(milliseconds=300), max_number_of_attempts=2)
    return (yield ctx.call_activity(charge, input=order, retry_policy=policy))


def reserve(ctx: wf.WorkflowActivityContext, order: dict[str, Any]) -> bool:
    time.sleep(WORK_SECONDS)
    return True


def charge(ctx: wf.WorkflowActivityContext, order: dict[str, Any]) -> None:
    time.sleep(WORK_SECONDS)
    raise ValueError(f"card declined for {order['amount']} EUR")


def tour(ctx: wf.DaprWorkflowContext, _: Any) -> Any:
    """An activity, a timer, a child workflow and an external event, in that order."""
    yield ctx.call_activity(reserve, input={"amount": 1})
    yield ctx.create_timer(timedelta(milliseconds=400))
    child = yield ctx.call_child_workflow(fan_out, input=3, instance_id=f"{ctx.instance_id}-child")
    approval = yield ctx.wait_for_external_event("approval")
    return {"child": child, "approved_by": approval["by"]}


def register(runtime: wf.WorkflowRuntime) -> None:
    for workflow in (fan_out, charge_order, tour):
        runtime.register_workflow(workflow)
    for activity in (square, add_up, reserve, charge):
        runtime.register_activity(activity)
