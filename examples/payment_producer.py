"""The payment system: publishes one payment to the ``payments`` topic.

    python -m examples.payment_producer ORDER_ID AMOUNT

Plain confluent-kafka and JSON: no part of this project is needed to publish.
"""

from __future__ import annotations

import json
import os
import sys

from confluent_kafka import Producer


def publish_payment(order_id: str, amount: float, topic: str | None = None, bootstrap: str | None = None) -> None:
    producer = Producer({"bootstrap.servers": bootstrap or os.environ.get("KWF_BOOTSTRAP_SERVERS", "127.0.0.1:9092")})
    producer.produce(topic or os.environ.get("KWF_PAYMENTS_TOPIC", "payments"), key=order_id.encode(),
                     value=json.dumps({"orderId": order_id, "amount": amount}).encode())
    if producer.flush(30) != 0:
        raise SystemExit("the payment was not delivered: is the broker running?")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit("usage: python -m examples.payment_producer ORDER_ID AMOUNT")
    publish_payment(sys.argv[1], float(sys.argv[2]))
    print(f"published payment of {sys.argv[2]} for order {sys.argv[1]}")
