"""One runtime with every example registered: ``kwf run --app examples.app:runtime``."""

from __future__ import annotations

import os

import engine as wf
from engine.edges.bridge import BridgeRoute
from examples import fan_out, monitor, order_payment, order_processing, purchase_order, task_chain

runtime = wf.WorkflowRuntime()

# The seed's patterns, registered under their function names.
runtime.register_workflow(task_chain.task_chain_workflow)
for activity in (task_chain.step1, task_chain.step2, task_chain.step3, task_chain.error_handler):
    runtime.register_activity(activity)
runtime.register_workflow(fan_out.batch_processing_workflow)
for activity in (fan_out.get_work_batch, fan_out.process_work_item, fan_out.process_results):
    runtime.register_activity(activity)
runtime.register_workflow(monitor.status_monitor_workflow)
for activity in (monitor.check_status, monitor.send_alert):
    runtime.register_activity(activity)
runtime.register_workflow(purchase_order.purchase_order_workflow)
for activity in (purchase_order.send_approval_request, purchase_order.place_order):
    runtime.register_activity(activity)

order_processing.register(runtime)
order_payment.register(runtime)
# Payments published by the payment system wake the order waiting for them.
runtime.add_bridge(BridgeRoute(topic=os.environ.get("KWF_PAYMENTS_TOPIC", "payments"),
                               event_name="payment_received", instance_id_field="orderId"))
