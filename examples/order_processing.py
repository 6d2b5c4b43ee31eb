"""The order workflow behind the seed's async HTTP API example.

    curl -X POST http://localhost:3500/v1.0-beta1/workflows/dapr/OrderProcessingWorkflow/start?instanceID=12345678 \\
         -d '{"Name":"Paperclips","Quantity":1,"TotalCost":9.95}'

It checks the inventory, charges the payment, ships the items and completes with
``{"Processed": true}``; an order the inventory cannot fill completes with
``{"Processed": false}`` after notifying the customer.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import engine as wf

# A tiny in-process stock: real activities would call an inventory service.
STOCK = {"Paperclips": 1000, "Stapler": 3}


@dataclass
class OrderPayload:
    Name: str
    Quantity: int
    TotalCost: float


def order_processing_workflow(ctx: wf.DaprWorkflowContext, order: OrderPayload) -> Any:
    yield ctx.call_activity(notify, input=f"Received order for {order.Quantity} {order.Name} (${order.TotalCost})")
    in_stock = yield ctx.call_activity(reserve_inventory, input=order)
    if not in_stock:
        yield ctx.call_activity(notify, input=f"Insufficient inventory for {order.Name}")
        return {"Processed": False}
    ctx.set_custom_status("payment")
    # A payment service may hiccup: retry twice, one then two seconds apart.
    retry = wf.RetryPolicy(first_retry_interval=timedelta(seconds=1), max_number_of_attempts=3, backoff_coefficient=2)
    yield ctx.call_activity(process_payment, input=order, retry_policy=retry)
    ctx.set_custom_status("shipping")
    yield ctx.call_activity(ship_order, input=order)
    yield ctx.call_activity(notify, input=f"Order for {order.Name} processed")
    return {"Processed": True}


def notify(ctx: wf.WorkflowActivityContext, message: str) -> None:
    print(f"[{ctx.workflow_id}] {message}", flush=True)


def reserve_inventory(ctx: wf.WorkflowActivityContext, order: OrderPayload) -> bool:
    return STOCK.get(order.Name, 0) >= order.Quantity


def process_payment(ctx: wf.WorkflowActivityContext, order: OrderPayload) -> str:
    return f"charged {order.TotalCost:.2f}"


def ship_order(ctx: wf.WorkflowActivityContext, order: OrderPayload) -> str:
    return f"shipped {order.Quantity} {order.Name}"


def register(runtime: wf.WorkflowRuntime) -> None:
    runtime.register_workflow(order_processing_workflow, name="OrderProcessingWorkflow")
    for activity in (notify, reserve_inventory, process_payment, ship_order):
        runtime.register_activity(activity)
