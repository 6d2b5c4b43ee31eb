"""kafka-workflows: durable workflows in plain Python, the Dapr Workflow programming model.

Use it as ``import engine as wf``; everything public is re-exported here. The layers
below (``engine.core``, ``engine.replay``, ``engine.state``, ``engine.orchestration``,
``engine.edges``, ``engine.api``) are internal; ARCHITECTURE.md maps them.
"""

from engine.api.client import (
    DaprWorkflowClient,
    InstanceExists,
    PayloadTooLarge,
    WorkflowClient,
    WorkflowFailureDetails,
    WorkflowPage,
    WorkflowState,
)
from engine.api.dapr_client import DaprClient
from engine.core.errors import ActivityNotRegistered, NonDeterminismError, TaskFailedError, WorkflowNotRegistered
from engine.core.history import WorkflowStatus
from engine.edges.activities import WorkflowActivityContext
from engine.replay.context import DaprWorkflowContext, WorkflowContext
from engine.replay.propagation import (
    ActivityResult,
    ChildWorkflowResult,
    PropagatedHistory,
    PropagationNotFoundError,
    PropagationScope,
    WorkflowResult,
)
from engine.replay.registry import alternate_name
from engine.replay.retry import RetryPolicy
from engine.replay.tasks import Task, when_all, when_any
from engine.runtime import WorkflowRuntime

__all__ = [
    # Running and managing workflows
    "WorkflowRuntime",
    "WorkflowClient",
    "DaprWorkflowClient",
    "WorkflowState",
    "WorkflowPage",
    "WorkflowStatus",
    "WorkflowFailureDetails",
    "InstanceExists",
    "PayloadTooLarge",
    "DaprClient",
    # Workflow authoring
    "WorkflowContext",
    "DaprWorkflowContext",
    "WorkflowActivityContext",
    "Task",
    "when_all",
    "when_any",
    "RetryPolicy",
    "alternate_name",
    # History propagation
    "PropagationScope",
    "PropagatedHistory",
    "PropagationNotFoundError",
    "WorkflowResult",
    "ActivityResult",
    "ChildWorkflowResult",
    "TaskFailedError",
    "NonDeterminismError",
    "WorkflowNotRegistered",
    "ActivityNotRegistered",
]
