"""The asyncio client, as ``dapr.ext.workflow.aio`` offers it.

Use it as ``from engine.aio import DaprWorkflowClient``; every method of
``engine.DaprWorkflowClient`` is a coroutine here.
"""

from engine.api.aio_client import AsyncWorkflowClient, DaprWorkflowClient

WorkflowClient = AsyncWorkflowClient
"""The name ``engine.WorkflowClient`` has in the sync API."""

__all__ = ["DaprWorkflowClient", "WorkflowClient", "AsyncWorkflowClient"]
