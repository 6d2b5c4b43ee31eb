"""The pub/sub bridge: a payment published to a topic wakes the order waiting for it."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable

from confluent_kafka import Consumer, Producer

from engine import WorkflowClient, WorkflowRuntime, WorkflowStatus
from engine.edges.bridge import BridgeRoute
from engine.state.config import Settings
from examples import order_payment
from examples.payment_producer import publish_payment


def dead_letters(settings: Settings, expected: int, timeout: float = 30) -> list:
    consumer = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": uuid.uuid4().hex,
                         "auto.offset.reset": "earliest", "isolation.level": "read_committed"})
    consumer.subscribe([settings.topic("dlq")])
    found: list = []
    deadline = time.monotonic() + timeout
    while len(found) < expected and time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is not None and message.error() is None:
            found.append(message)
    consumer.close()
    return found


def test_payment_wakes_the_waiting_order_and_strays_go_to_the_dlq(
        settings: Settings, start_runtime: Callable[..., WorkflowRuntime], client: WorkflowClient) -> None:
    payments = settings.topic("payments")

    def register(runtime: WorkflowRuntime) -> None:
        order_payment.register(runtime)
        runtime.add_bridge(BridgeRoute(topic=payments, event_name="payment_received", instance_id_field="orderId"))

    start_runtime(register)
    order_id = "order-" + uuid.uuid4().hex[:8]
    client.schedule_new_workflow(order_payment.order_payment_workflow,
                                 input=order_payment.PurchaseOrder("lamp", 25.0), instance_id=order_id)
    client.view.wait_for(order_id, lambda s: s is not None and s.custom_status == '"awaiting payment"', 30)

    publish_payment(order_id, 25.0, topic=payments, bootstrap=settings.bootstrap_servers)
    state = client.wait_for_workflow_completion(order_id, timeout_in_seconds=60)
    assert state is not None and state.runtime_status is WorkflowStatus.COMPLETED, state
    assert json.loads(state.serialized_output) == {"status": "paid", "amount": 25.0}

    # A record naming no order, and one naming an order that does not exist.
    producer = Producer({"bootstrap.servers": settings.bootstrap_servers})
    producer.produce(payments, value=json.dumps({"amount": 5}).encode())
    producer.produce(payments, value=json.dumps({"orderId": "nobody", "amount": 5}).encode())
    producer.flush(10)
    reasons = [dict(m.headers())["streams.error"].decode() for m in dead_letters(settings, 2)]
    assert len(reasons) == 2, reasons
    assert any("no field 'orderId'" in r for r in reasons), reasons
    assert any("no workflow instance 'nobody'" in r for r in reasons), reasons


def test_a_payment_published_right_after_its_order_starts_reaches_the_order(
        settings: Settings, start_runtime: Callable[..., WorkflowRuntime], client: WorkflowClient) -> None:
    payments = settings.topic("payments")

    def register(runtime: WorkflowRuntime) -> None:
        order_payment.register(runtime)
        runtime.add_bridge(BridgeRoute(topic=payments, event_name="payment_received", instance_id_field="orderId"))

    start_runtime(register)
    orders = [f"order-{uuid.uuid4().hex[:8]}" for _ in range(5)]
    for order_id in orders:
        # The start is on the inbox, no status shows it yet, and the payment follows at once.
        client.schedule_new_workflows(order_payment.order_payment_workflow,
                                      [(order_id, order_payment.PurchaseOrder("lamp", 25.0))])
        publish_payment(order_id, 25.0, topic=payments, bootstrap=settings.bootstrap_servers)
    for order_id in orders:
        state = client.wait_for_workflow_completion(order_id, timeout_in_seconds=60)
        assert state is not None and state.runtime_status is WorkflowStatus.COMPLETED, state
        assert json.loads(state.serialized_output) == {"status": "paid", "amount": 25.0}
    assert dead_letters(settings, 1, timeout=3) == []
