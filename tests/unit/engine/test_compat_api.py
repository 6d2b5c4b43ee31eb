"""Programs written for dapr.ext.workflow run with ``import engine as wf``: registration, signatures, types.

Everything here goes through ``wf.WorkflowRuntime()`` the way a Dapr program does, and runs
on the in-memory driver (no broker).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pydantic
import pytest

import engine as wf
from engine.core.history import ChildWorkflowScheduled, TaskScheduled
from engine.replay.registry import name_of
from tests.unit.engine.driver import Driver


@dataclass
class Order:
    item: str
    quantity: int


class Quote(pydantic.BaseModel):
    item: str
    total: float


def driver_of(wfr: wf.WorkflowRuntime) -> Driver:
    return Driver(wfr.registry)


# 1. Registration ------------------------------------------------------------------------


def test_decorators_and_register_calls_on_the_runtime_resolve_function_objects_to_names() -> None:
    wfr = wf.WorkflowRuntime()

    @wfr.activity
    def plain_act(ctx, x):
        return f"plain:{x}"

    @wfr.activity(name="renamed_act")
    def named_act(ctx, x):
        return f"renamed:{x}"

    def registered_act(ctx, x):
        return f"registered:{x}"

    wfr.register_activity(registered_act, name="act_v2")

    @wfr.workflow(name="renamed_child")
    def child(ctx, x):
        return f"child:{x}"

    def registered_child(ctx, x):
        return f"child2:{x}"

    wfr.register_workflow(registered_child, name="child_v2")

    @wfr.workflow
    def parent(ctx, x):
        results = []
        for act in (plain_act, named_act, registered_act, "act_v2", "renamed_act"):
            results.append((yield ctx.call_activity(act, input=x)))
        for kid in (child, registered_child, "child_v2"):
            results.append((yield ctx.call_child_workflow(kid, input=x)))
        return results

    # The decorators return the function itself, carrying the name it was registered under.
    assert callable(named_act) and named_act(None, 1) == "renamed:1"
    assert [name_of(f) for f in (plain_act, named_act, registered_act, child, registered_child, parent)] == [
        "plain_act", "renamed_act", "act_v2", "renamed_child", "child_v2", "parent",
    ]  # fmt: skip
    assert wfr.registry.workflow_names == ["renamed_child", "child_v2", "parent"]
    assert wfr.registry.activity_names == ["plain_act", "renamed_act", "act_v2"]

    driver = driver_of(wfr)
    driver.start(parent, 7, instance_id="p")  # a function object, resolved like schedule_new_workflow does
    driver.run()
    inst = driver.instance("p")
    assert inst.status is wf.WorkflowStatus.COMPLETED, inst.failure
    assert inst.name == "parent"
    assert inst.result == [
        "plain:7", "renamed:7", "registered:7", "registered:7", "renamed:7", "child:7", "child2:7", "child2:7",
    ]  # fmt: skip
    assert [t.name for t in inst.of_kind(TaskScheduled)] == [
        "plain_act", "renamed_act", "act_v2", "act_v2", "renamed_act",
    ]  # fmt: skip
    assert [c.name for c in inst.of_kind(ChildWorkflowScheduled)] == ["renamed_child", "child_v2", "child_v2"]


@pytest.mark.parametrize("kind", ["workflow", "activity"])
def test_registering_the_same_function_twice_on_a_runtime_raises_value_error(kind: str) -> None:
    wfr = wf.WorkflowRuntime()

    def fn(ctx):
        return None

    decorate = getattr(wfr, kind)
    register = getattr(wfr, f"register_{kind}")
    decorate(fn)
    with pytest.raises(ValueError, match="already registered"):
        register(fn)
    with pytest.raises(ValueError, match="already registered"):
        decorate(name="other")(fn)


# 2. Signatures --------------------------------------------------------------------------


def test_workflows_and_activities_with_or_without_input_plain_and_async() -> None:
    wfr = wf.WorkflowRuntime()

    @wfr.activity
    def no_input(ctx):
        return f"no input for {ctx.workflow_id}"

    @wfr.activity
    def with_input(ctx, value):
        return value * 2

    @wfr.activity
    async def async_act(ctx, value):
        await asyncio.sleep(0)
        return value + 1

    @wfr.activity
    async def async_no_input(ctx):
        return "async done"

    @wfr.workflow
    def plain_returns(ctx, value):
        return {"got": value, "id": ctx.instance_id}

    @wfr.workflow
    def plain_ctx_only(ctx):
        return "ctx only"

    @wfr.workflow
    def generator_ctx_only(ctx):
        a = yield ctx.call_activity(no_input)
        b = yield ctx.call_activity(with_input, input=21)
        c = yield ctx.call_activity(async_act, input=b)
        d = yield ctx.call_activity(async_no_input)
        e = yield ctx.call_child_workflow(plain_returns, input="x", instance_id="kid")
        f = yield ctx.call_child_workflow(plain_ctx_only)
        return [a, b, c, d, e, f]

    driver = driver_of(wfr)
    driver.start(generator_ctx_only, instance_id="main")
    driver.run()
    inst = driver.instance("main")
    assert inst.status is wf.WorkflowStatus.COMPLETED, inst.failure
    assert inst.result == ["no input for main", 42, 43, "async done", {"got": "x", "id": "kid"}, "ctx only"]
    # A plain function workflow completes in its first step, without any task.
    kid = driver.instance("kid")
    assert len(kid.results) == 1 and kid.status is wf.WorkflowStatus.COMPLETED


# 3. Types -------------------------------------------------------------------------------


def test_inputs_coerce_to_annotated_dataclasses_and_pydantic_models_under_string_annotations() -> None:
    # This module has `from __future__ import annotations`: every annotation below is a string.
    wfr = wf.WorkflowRuntime()
    seen: list[str] = []

    @wfr.activity
    def price(ctx, order: Order) -> Quote:
        seen.append(type(order).__name__)
        return Quote(item=order.item, total=order.quantity * 2.5)

    @wfr.activity
    def confirm(ctx, quote: Quote) -> str:
        seen.append(type(quote).__name__)
        return f"{quote.item}: {quote.total:.2f}"

    @wfr.workflow
    def checkout(ctx, order: Order):
        seen.append(type(order).__name__)
        quote = yield ctx.call_activity(price, input=order)
        # A pydantic result crosses the wire as its model_dump: a plain dict.
        assert quote == {"item": "pen", "total": 7.5}
        text = yield ctx.call_activity(confirm, input=quote)
        return [text, Quote(item="receipt", total=quote["total"])]

    assert checkout.__annotations__["order"] == "Order"
    driver = driver_of(wfr)
    driver.start(checkout, {"item": "pen", "quantity": 3})  # a plain dict, as a JSON client would send it
    driver.run()
    inst = driver.instance()
    assert inst.status is wf.WorkflowStatus.COMPLETED, inst.failure
    assert seen == ["Order", "Order", "Quote"]
    assert inst.output == '["pen: 7.50",{"item":"receipt","total":7.5}]'


def test_dataclass_inputs_without_annotations_arrive_with_attribute_access() -> None:
    wfr = wf.WorkflowRuntime()

    @wfr.activity
    def restock(ctx, order):
        order.quantity += 10  # attribute access and assignment, as on the dataclass
        return order

    @wfr.workflow
    def flow(ctx, order):
        assert not isinstance(order, dict)
        label = f"{order.item} x {order.quantity}"
        order = yield ctx.call_activity(restock, input=order)
        return [label, order.item, order.quantity]

    driver = driver_of(wfr)
    driver.start(flow, Order("ink", 2))
    driver.run()
    assert driver.instance().result == ["ink x 2", "ink", 12]


# 5. Status and payload forms -------------------------------------------------------------


def test_custom_status_and_output_are_json_text() -> None:
    wfr = wf.WorkflowRuntime()

    @wfr.workflow
    def flow(ctx):
        ctx.set_custom_status("x")
        return "done"

    driver = driver_of(wfr)
    driver.start(flow)
    inst = driver.instance()
    assert (inst.custom_status, inst.output) == ('"x"', '"done"')
    assert str(inst.status) == "WorkflowStatus.COMPLETED"
