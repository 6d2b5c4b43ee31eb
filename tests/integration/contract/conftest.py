"""The runtime under test for the contract tests: the approval workflow, and the commands door.

Only this file touches ``engine``: it starts what a producer in another language talks to.
The tests themselves speak to Kafka with confluent-kafka and fastavro (``wire.py``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from engine import WorkflowRuntime
from engine.commands import CommandsDoor
from engine.config import Settings
from streams.processor import Processor
from tests.integration.engine.conftest import settings, start_runtime  # noqa: F401  (shared fixtures)

# Joining the consumer group and the first assignment take a few seconds on a busy broker.
READY_TIMEOUT_S = 120.0


def approval(ctx: Any, order: dict[str, Any]) -> Any:
    """Waits for an approval event, then ships the order."""
    decision = yield ctx.wait_for_external_event("approval")
    shipped = yield ctx.call_activity(ship, input={"order": order, "decision": decision})
    return shipped


def ship(ctx: Any, request: dict[str, Any]) -> dict[str, Any]:
    order, decision = request["order"], request["decision"]
    return {"shipped": order["item"], "qty": order["qty"], "approved_by": decision["by"]}


@pytest.fixture
def approval_runtime(start_runtime) -> WorkflowRuntime:  # noqa: F811
    def register(runtime: WorkflowRuntime) -> None:
        runtime.register_workflow(approval)
        runtime.register_activity(ship)

    return start_runtime(register)


@pytest.fixture
def commands_door(settings: Settings) -> Iterator[Processor]:  # noqa: F811
    """The JSON commands processor on a thread, ready when yielded."""
    processor = CommandsDoor(settings).processor()
    failure: list[BaseException] = []

    def run() -> None:
        try:
            processor.run()
        except BaseException as err:
            failure.append(err)

    thread = threading.Thread(target=run, name="kwf-commands", daemon=True)
    thread.start()
    if not processor.ready.wait(READY_TIMEOUT_S):
        processor.stop()
        raise TimeoutError(f"the commands door was not ready within {READY_TIMEOUT_S:.0f} s: {failure}")
    yield processor
    processor.stop()
    thread.join(30)
    assert not failure, f"the commands door stopped with {failure[0]!r}"
