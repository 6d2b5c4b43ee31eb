"""Running activities: input decoding, context, async functions, failures as FailureDetails."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from engine import WorkflowActivityContext
from engine.core import payload
from engine.edges.activities import async_run_activity, run_activity
from engine.replay.executor import Registry


@dataclass
class Order:
    product: str
    quantity: int


def registry() -> Registry:
    reg = Registry()

    @reg.activity
    def describe(ctx: WorkflowActivityContext, order: Order) -> dict:
        assert isinstance(order, Order)
        return {"text": f"{order.quantity} x {order.product}", "wf": ctx.workflow_id, "task": ctx.task_id}

    @reg.activity
    def no_input(ctx) -> str:
        return ctx.instance_id

    @reg.activity
    async def slow_double(ctx, n: int) -> int:
        await asyncio.sleep(0)
        return n * 2

    @reg.activity
    def explode(ctx, n: int) -> None:
        raise ZeroDivisionError(f"cannot divide {n} by zero")

    @reg.activity
    def returns_nothing(ctx, n: int) -> None:
        return None

    @reg.activity
    def unencodable(ctx, n: int) -> object:
        return object()

    return reg


def run(name: str, value: object = None):
    return run_activity(registry(), name, payload.encode(value), instance_id="wf-9", task_id=4)


def test_input_is_coerced_and_the_context_names_the_caller() -> None:
    outcome = run("describe", Order("pen", 3))
    assert outcome.succeeded
    assert payload.decode(outcome.result) == {"text": "3 x pen", "wf": "wf-9", "task": 4}


def test_a_dict_input_coerces_to_the_annotated_dataclass_too() -> None:
    assert payload.decode(run("describe", {"product": "ink", "quantity": 1}).result)["text"] == "1 x ink"


def test_an_activity_without_an_input_parameter() -> None:
    assert payload.decode(run("no_input").result) == "wf-9"


def test_async_activities_are_awaited() -> None:
    assert run("slow_double", 21).result == "42"


def test_async_run_activity_runs_sync_and_async_activities_from_a_loop() -> None:
    async def both():
        reg = registry()
        first = await async_run_activity(reg, "slow_double", "5", instance_id="i", task_id=0)
        second = await async_run_activity(reg, "describe", '{"product":"a","quantity":2}', instance_id="i", task_id=1)
        missing = await async_run_activity(reg, "missing", None, instance_id="i", task_id=2)
        return first, second, missing

    first, second, missing = asyncio.run(both())
    assert first.result == "10"
    assert payload.decode(second.result)["text"] == "2 x a"
    assert missing.failure is not None and missing.failure.type == "ActivityNotRegistered"


def test_an_exception_becomes_failure_details_with_type_message_and_stack() -> None:
    outcome = run("explode", 7)
    assert not outcome.succeeded
    failure = outcome.failure
    assert failure is not None
    assert failure.type == "ZeroDivisionError"
    assert failure.message == "cannot divide 7 by zero"
    assert 'raise ZeroDivisionError(f"cannot divide {n} by zero")' in (failure.stack_trace or "")


def test_none_result_is_null_payload() -> None:
    outcome = run("returns_nothing", 1)
    assert outcome.succeeded and outcome.result is None


def test_a_result_without_json_form_fails_the_task() -> None:
    failure = run("unencodable", 1).failure
    assert failure is not None and failure.type == "TypeError"


def test_an_unknown_activity_fails_naming_it() -> None:
    failure = run("not_there").failure
    assert failure is not None
    assert failure.type == "ActivityNotRegistered"
    assert "'not_there'" in failure.message
