"""``DaprClient``: the workflow calls of ``dapr.clients.DaprClient`` over ``WorkflowClient``.

So the seed's snippet ``with DaprClient() as d: d.raise_workflow_event(instance_id=...,
workflow_component="dapr", event_name=..., event_data=...)`` runs with only its import
changed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from engine.api.client import WorkflowClient
from engine.state.config import Settings

COMPONENT = "dapr"


@dataclass(frozen=True)
class StartWorkflowResponse:
    instance_id: str


@dataclass(frozen=True)
class GetWorkflowResponse:
    instance_id: str
    workflow_name: str
    created_at: Any
    last_updated_at: Any
    runtime_status: str
    properties: dict[str, Any]


class DaprClient:
    """The workflow part of Dapr's client; ``workflow_component`` must be ``"dapr"``."""

    def __init__(self, address: str | None = None, *, settings: Settings | None = None, **_: Any) -> None:
        self._client = WorkflowClient(settings=settings)

    def __enter__(self) -> DaprClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def start_workflow(self, workflow_component: str, workflow_name: str, input: Any = None,
                       instance_id: str | None = None, workflow_options: dict[str, str] | None = None,
                       send_raw_event: bool = False) -> StartWorkflowResponse:
        _check(workflow_component)
        value = _raw(input, send_raw_event)
        return StartWorkflowResponse(self._client.schedule_new_workflow(workflow_name, input=value,
                                                                        instance_id=instance_id))

    def get_workflow(self, instance_id: str, workflow_component: str) -> GetWorkflowResponse:
        _check(workflow_component)
        state = self._client.get_workflow_state(instance_id)
        if state is None:
            raise ValueError(f"no workflow instance with ID {instance_id!r}")
        properties = {"dapr.workflow.input": state.serialized_input,
                      "dapr.workflow.output": state.serialized_output,
                      "dapr.workflow.custom_status": state.serialized_custom_status or ""}
        return GetWorkflowResponse(state.instance_id, state.name, state.created_at, state.last_updated_at,
                                   state.runtime_status.name, properties)

    def raise_workflow_event(self, instance_id: str, workflow_component: str, event_name: str,
                             event_data: Any = None, send_raw_event: bool = False) -> None:
        _check(workflow_component)
        self._client.raise_workflow_event(instance_id, event_name, data=_raw(event_data, send_raw_event))

    def terminate_workflow(self, instance_id: str, workflow_component: str) -> None:
        _check(workflow_component)
        self._client.terminate_workflow(instance_id)

    def pause_workflow(self, instance_id: str, workflow_component: str) -> None:
        _check(workflow_component)
        self._client.pause_workflow(instance_id)

    def resume_workflow(self, instance_id: str, workflow_component: str) -> None:
        _check(workflow_component)
        self._client.resume_workflow(instance_id)

    def purge_workflow(self, instance_id: str, workflow_component: str) -> None:
        _check(workflow_component)
        self._client.purge_workflow(instance_id)


def _check(component: str) -> None:
    if component != COMPONENT:
        raise ValueError(f"unknown workflow component {component!r}; this runtime is {COMPONENT!r}")


def _raw(value: Any, send_raw: bool) -> Any:
    # Dapr sends bytes/str as JSON unless told they are raw; raw bytes are JSON here too.
    if send_raw and isinstance(value, bytes | str):
        return json.loads(value)
    return value
