"""A purchase order that waits for its payment, which arrives through pub/sub.

The payment system publishes ``{"orderId": ..., "amount": ...}`` to the ``payments``
topic (see ``examples/payment_producer.py``); the runtime's bridge turns each record
into a ``payment_received`` event of the instance named by ``orderId``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import engine as wf

# How long an order waits for its payment before it is cancelled.
PAYMENT_WINDOW = timedelta(hours=24)


@dataclass
class PurchaseOrder:
    item: str
    amount: float


def order_payment_workflow(ctx: wf.DaprWorkflowContext, order: PurchaseOrder) -> Any:
    yield ctx.call_activity(reserve_item, input=order)
    ctx.set_custom_status("awaiting payment")
    payment = ctx.wait_for_external_event("payment_received")
    deadline = ctx.create_timer(PAYMENT_WINDOW)
    winner = yield wf.when_any([payment, deadline])
    if winner == deadline:
        yield ctx.call_activity(release_item, input=order)
        return {"status": "cancelled", "reason": "no payment within the window"}
    paid = payment.get_result()
    if paid["amount"] < order.amount:
        yield ctx.call_activity(release_item, input=order)
        return {"status": "rejected", "reason": f"paid {paid['amount']}, owed {order.amount}"}
    yield ctx.call_activity(ship_item, input=order)
    return {"status": "paid", "amount": paid["amount"]}


def reserve_item(ctx: wf.WorkflowActivityContext, order: PurchaseOrder) -> None:
    print(f"[{ctx.workflow_id}] reserved {order.item}", flush=True)


def release_item(ctx: wf.WorkflowActivityContext, order: PurchaseOrder) -> None:
    print(f"[{ctx.workflow_id}] released {order.item}", flush=True)


def ship_item(ctx: wf.WorkflowActivityContext, order: PurchaseOrder) -> None:
    print(f"[{ctx.workflow_id}] shipped {order.item}", flush=True)


def register(runtime: wf.WorkflowRuntime) -> None:
    runtime.register_workflow(order_payment_workflow)
    for activity in (reserve_item, release_item, ship_item):
        runtime.register_activity(activity)
