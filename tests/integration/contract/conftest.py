"""The runtime under test for the contract tests: the approval workflow and its commands door.

Only this file touches ``engine``: it starts what a producer in another language talks to.
The tests themselves speak to Kafka with confluent-kafka and fastavro (``wire.py``).
"""

from __future__ import annotations

from typing import Any

import pytest

from engine import WorkflowRuntime
from tests.integration.engine.conftest import settings, start_runtime  # noqa: F401  (shared fixtures)


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
def commands_door(approval_runtime: WorkflowRuntime) -> WorkflowRuntime:
    """The JSON commands door: the runtime runs it beside the orchestrator."""
    return approval_runtime
