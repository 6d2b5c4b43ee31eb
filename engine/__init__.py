"""kafka-workflows: durable workflows in plain Python, the Dapr Workflow programming model.

Use it as ``import engine as wf``; everything public is re-exported here.
"""

from engine.activities import ActivityOutcome, WorkflowActivityContext, async_run_activity, run_activity
from engine.client import (  # noqa: E402  (after the authoring API: it imports the engine)
    DaprWorkflowClient,
    InstanceExists,
    PayloadTooLarge,
    WorkflowClient,
    WorkflowFailureDetails,
    WorkflowState,
)
from engine.context import DaprWorkflowContext, WorkflowContext
from engine.dapr_client import DaprClient
from engine.errors import ActivityNotRegistered, NonDeterminismError, TaskFailedError, WorkflowNotRegistered
from engine.executor import ContinueAsNew, ExecutionResult, Executor
from engine.history import (
    ChildWorkflowCompleted,
    ChildWorkflowFailed,
    ChildWorkflowScheduled,
    ContinuedAsNew,
    CustomStatusSet,
    Event,
    EventRaised,
    ExecutionCompleted,
    ExecutionResumed,
    ExecutionStarted,
    ExecutionSuspended,
    ExecutionTerminated,
    FailureDetails,
    HistoryEvent,
    ParentInstance,
    PurgeRequested,
    RuntimeStatus,
    TaskCompleted,
    TaskFailed,
    TaskScheduled,
    TimerCreated,
    TimerFired,
    WorkflowStatus,
    failure_details_from_record,
    failure_details_to_record,
    history_event_from_record,
    history_event_to_record,
    validate_instance_id,
)
from engine.registry import Registry, name_of
from engine.retry import RetryPolicy
from engine.runtime import WorkflowRuntime
from engine.tasks import Task, when_all, when_any

__all__ = [
    # Running and managing workflows
    "WorkflowRuntime",
    "WorkflowClient",
    "DaprWorkflowClient",
    "WorkflowState",
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
    "TaskFailedError",
    "NonDeterminismError",
    "WorkflowNotRegistered",
    "ActivityNotRegistered",
    "Registry",
    "name_of",
    "WorkflowStatus",
    "RuntimeStatus",
    # Execution
    "Executor",
    "ExecutionResult",
    "ContinueAsNew",
    "ActivityOutcome",
    "run_activity",
    "async_run_activity",
    # History
    "HistoryEvent",
    "Event",
    "FailureDetails",
    "ParentInstance",
    "ExecutionStarted",
    "TaskScheduled",
    "TaskCompleted",
    "TaskFailed",
    "TimerCreated",
    "TimerFired",
    "EventRaised",
    "ChildWorkflowScheduled",
    "ChildWorkflowCompleted",
    "ChildWorkflowFailed",
    "CustomStatusSet",
    "ExecutionSuspended",
    "ExecutionResumed",
    "ExecutionTerminated",
    "ContinuedAsNew",
    "ExecutionCompleted",
    "PurgeRequested",
    "history_event_to_record",
    "history_event_from_record",
    "failure_details_to_record",
    "failure_details_from_record",
    "validate_instance_id",
]
