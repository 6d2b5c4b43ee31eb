"""The workflow client for asyncio programs (``dapr.ext.workflow.aio.DaprWorkflowClient``).

Every method of the sync ``WorkflowClient`` as a coroutine, built on the same doors: a
command is a record produced to the inbox, a read is a look-up in the status view. Nothing
may block the event loop: the calls that touch the broker (a start or a management command
with its bounded wait for the effect, the view's first catch-up) run the sync client's
method on a thread pool of the client's own, and the open-ended waits
(``wait_for_workflow_start``, ``wait_for_workflow_completion``) are native: the coroutine
looks at the view's local copy and sleeps on the event loop between looks, holding no
thread however long it waits.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from functools import partial
from typing import Any, TypeVar

from engine.api.client import WorkflowClient, WorkflowPage, WorkflowState
from engine.api.status_view import StatusView, not_reached
from engine.core.history import WorkflowStatus
from engine.state.codec import StatusRecord
from engine.state.config import Settings
from engine.state.instance_state import ENDED

T = TypeVar("T")

# A command holds a thread for a broker round trip plus the wait for its effect (well under a
# second on a healthy runtime), so a few threads serve many concurrent callers.
COMMAND_THREADS = 8
# A waiting coroutine looks at the status view this often at first, backing off to the cap:
# fresh changes are seen within milliseconds, long waits cost a few looks a second.
FIRST_LOOK_S = 0.005
LOOK_CAP_S = 0.25


class AsyncWorkflowClient:
    """Starts and manages workflow instances from asyncio code (alias ``DaprWorkflowClient``).

    Takes the arguments of the sync client: ``settings`` (default ``KWF_*``); Dapr's
    ``host``, ``port`` and ``logger_options`` are accepted and ignored.
    """

    def __init__(self, host: str | None = None, port: str | None = None, logger_options: Any = None, *,
                 settings: Settings | None = None, **_: Any) -> None:
        self._sync = WorkflowClient(settings=settings)
        self._pool = ThreadPoolExecutor(COMMAND_THREADS, thread_name_prefix="kwf-aio-client")

    @property
    def settings(self) -> Settings:
        return self._sync.settings

    # -- starting ------------------------------------------------------------------------

    async def schedule_new_workflow(self, workflow: Callable[..., Any] | str, *, input: Any = None,
                                    instance_id: str | None = None, start_at: datetime | None = None,
                                    reuse_id_policy: Any = None) -> str:
        """Start an instance and return its ID once the runtime has accepted it.

        Raises:
            InstanceExists: ``instance_id`` names an instance that has not ended.
            PayloadTooLarge: the input is over ``KWF_MAX_PAYLOAD_BYTES``.
            TimeoutError: no runtime accepted the start in time.
        """
        return await self._in_thread(self._sync.schedule_new_workflow, workflow, input=input,
                                     instance_id=instance_id, start_at=start_at, reuse_id_policy=reuse_id_policy)

    # -- reading -------------------------------------------------------------------------

    async def get_workflow_state(self, instance_id: str, *, fetch_payloads: bool = True) -> WorkflowState | None:
        """The instance's latest state, or None if no such instance exists."""
        status = (await self._view()).get(instance_id)
        return None if status is None else WorkflowState.of(status, fetch_payloads)

    async def wait_for_workflow_start(self, instance_id: str, *, fetch_payloads: bool = False,
                                      timeout_in_seconds: float = 0) -> WorkflowState | None:
        """Wait until the instance runs (or has ended); 0 waits forever.

        Raises:
            TimeoutError: the time ran out first.
        """
        status = await self._wait_for(instance_id,
                                      lambda s: s is not None and s.runtime_status is not WorkflowStatus.PENDING,
                                      timeout_in_seconds or None)
        return None if status is None else WorkflowState.of(status, fetch_payloads)

    async def wait_for_workflow_completion(self, instance_id: str, *, fetch_payloads: bool = True,
                                           timeout_in_seconds: float = 0) -> WorkflowState | None:
        """Wait until the instance has ended (COMPLETED, FAILED or TERMINATED); 0 waits forever.

        Raises:
            TimeoutError: the time ran out first.
        """
        status = await self._wait_for(instance_id, lambda s: s is not None and s.runtime_status in ENDED,
                                      timeout_in_seconds or None)
        return None if status is None else WorkflowState.of(status, fetch_payloads)

    async def list_workflows(self, *, status: WorkflowStatus | None = None,
                             name: str | None = None) -> list[WorkflowState]:
        """Every known instance, optionally filtered by status and workflow name."""
        await self._view()
        return await self._in_thread(self._sync.list_workflows, status=status, name=name)

    async def list_workflows_page(self, **query: Any) -> WorkflowPage:
        """One page of instances; the arguments of ``WorkflowClient.list_workflows_page``."""
        await self._view()
        return await self._in_thread(self._sync.list_workflows_page, **query)

    # -- managing ------------------------------------------------------------------------
    # These return once their effect is visible, within seconds: each holds a pool thread
    # for that long, and keeps exactly the sync client's semantics.

    async def raise_workflow_event(self, instance_id: str, event_name: str, *, data: Any = None) -> None:
        """Send an external event; names compare case-insensitively. Unknown instances drop it."""
        await self._in_thread(self._sync.raise_workflow_event, instance_id, event_name, data=data)

    async def terminate_workflow(self, instance_id: str, *, output: Any = None, recursive: bool = True) -> None:
        """Terminate the instance (and its children unless ``recursive=False``) and wait for it."""
        await self._in_thread(self._sync.terminate_workflow, instance_id, output=output, recursive=recursive)

    async def pause_workflow(self, instance_id: str) -> None:
        """Suspend the instance; events that arrive meanwhile are kept for its resume."""
        await self._in_thread(self._sync.pause_workflow, instance_id)

    async def resume_workflow(self, instance_id: str) -> None:
        """Resume a suspended instance."""
        await self._in_thread(self._sync.resume_workflow, instance_id)

    async def purge_workflow(self, instance_id: str, recursive: bool = True) -> None:
        """Remove an ended instance and its history; its ID can then be started again.

        Raises:
            ValueError: the instance has not ended.
        """
        await self._in_thread(self._sync.purge_workflow, instance_id, recursive=recursive)

    async def close(self) -> None:
        """Deliver what is still queued and release the client's threads."""
        await self._in_thread(self._sync.close)
        self._pool.shutdown(wait=False)

    async def __aenter__(self) -> AsyncWorkflowClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- plumbing ------------------------------------------------------------------------

    async def _in_thread(self, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, partial(call, *args, **kwargs))

    async def _view(self) -> StatusView:
        # The first use starts the shared view, which reads the status topic to its end.
        return await self._in_thread(lambda: self._sync.view)

    async def _wait_for(self, instance_id: str, accept: Callable[[StatusRecord | None], bool],
                        timeout: float | None) -> StatusRecord | None:
        view = await self._view()
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = FIRST_LOOK_S
        while True:
            status = view.get(instance_id)
            if accept(status):
                return status
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise not_reached(instance_id, timeout, status)
            await asyncio.sleep(pause if remaining is None else min(pause, remaining))
            pause = min(pause * 2, LOOK_CAP_S)


DaprWorkflowClient = AsyncWorkflowClient
"""The ``dapr.ext.workflow.aio`` name of AsyncWorkflowClient."""
