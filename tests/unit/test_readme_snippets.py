"""The README's plain confluent-kafka producer writes records the runtime decodes."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import confluent_kafka

from engine.core.history import ExecutionStarted
from engine.state.codec import decode_event

REPO = Path(__file__).resolve().parents[2]


class CapturingProducer:
    sent: list[tuple[str, bytes, bytes]] = []

    def __init__(self, config: dict[str, Any]) -> None:
        assert config.get("partitioner") == "murmur2_random"

    def produce(self, topic: str, key: bytes, value: bytes) -> None:
        self.sent.append((topic, key, value))

    def flush(self, *_: Any) -> int:
        return 0


def test_readme_producer_snippet_is_decodable(monkeypatch: Any) -> None:
    [snippet] = [b for b in re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(), flags=re.S)
                 if "schemaless_writer" in b]
    monkeypatch.setattr(confluent_kafka, "Producer", CapturingProducer)
    monkeypatch.chdir(REPO)
    exec(compile(snippet, "README.md", "exec"), {})
    [(topic, key, value)] = CapturingProducer.sent
    event = decode_event(value)
    assert topic == "kwf.inbox" and key == b"order-7" and event.instance_id == "order-7"
    assert isinstance(event.event, ExecutionStarted) and event.event.name == "order_payment_workflow"
