"""Running one activity: decode its input, call the user's function, capture result or failure."""

from __future__ import annotations

import asyncio
import inspect
from dataclasses import dataclass
from typing import Any

from engine.core import payload
from engine.core.errors import ActivityNotRegistered, failure_from_exception
from engine.core.history import FailureDetails
from engine.replay.propagation import PropagatedHistory
from engine.replay.registry import Registered, Registry


class WorkflowActivityContext:
    """What an activity sees of the workflow that called it.

    Args:
        instance_id: The calling workflow instance.
        task_id: The task ID of this call within that instance.
        propagated_history: The history the caller handed on (JSON text), if any.
    """

    __slots__ = ("_instance_id", "_task_id", "_propagated_history")

    def __init__(self, instance_id: str, task_id: int, propagated_history: str | None = None) -> None:
        self._instance_id = instance_id
        self._task_id = task_id
        self._propagated_history = propagated_history

    def get_propagated_history(self) -> PropagatedHistory | None:
        """The history the calling workflow handed on with ``propagation=``; None if it handed none."""
        return PropagatedHistory.from_json(self._propagated_history)

    @property
    def workflow_id(self) -> str:
        """The ID of the calling workflow instance."""
        return self._instance_id

    @property
    def instance_id(self) -> str:
        """The ID of the calling workflow instance (same as ``workflow_id``)."""
        return self._instance_id

    @property
    def orchestration_id(self) -> str:
        """The ID of the calling workflow instance (the Durable Task name for it)."""
        return self._instance_id

    @property
    def task_id(self) -> int:
        """The task ID of this call, unique within the instance's execution."""
        return self._task_id

    def get_inner_context(self) -> WorkflowActivityContext:
        """The underlying activity context.

        Dapr returns the Durable Task ``ActivityContext`` here; this runtime has no layer
        below, so the context itself answers, with the same ``orchestration_id`` and
        ``task_id``.
        """
        return self


@dataclass(frozen=True, slots=True)
class ActivityOutcome:
    """How an activity ended: a result (JSON text or None) or a failure.

    Attributes:
        result: The activity's return value as JSON text; None for None.
        failure: Why it failed; None when it succeeded.
    """

    result: str | None = None
    failure: FailureDetails | None = None

    @property
    def succeeded(self) -> bool:
        """Whether the activity returned without raising."""
        return self.failure is None


def run_activity(
    registry: Registry, name: str, input_json: str | None, *, instance_id: str, task_id: int,
    propagated_history: str | None = None,
) -> ActivityOutcome:
    """Run an activity from plain code, on an event loop of its own (see ``async_run_activity``).

    Never raises for a failing activity: the exception becomes the outcome's failure.
    """
    return asyncio.run(async_run_activity(registry, name, input_json, instance_id=instance_id, task_id=task_id,
                                          propagated_history=propagated_history))


async def async_run_activity(
    registry: Registry, name: str, input_json: str | None, *, instance_id: str, task_id: int,
    propagated_history: str | None = None,
) -> ActivityOutcome:
    """Run an activity from an event loop: ``async def`` ones are awaited, others run in a thread.

    Args:
        registry: Where the activity is looked up.
        name: The activity's registered name.
        input_json: Its input as JSON text.
        instance_id: The calling workflow instance.
        task_id: The task ID of the call.
        propagated_history: The history the caller handed on (JSON text), if any.
    """
    entry = registry.get_activity(name)
    if entry is None:
        return _not_registered(name, registry.app_id)
    ctx = WorkflowActivityContext(instance_id, task_id, propagated_history)
    try:
        if inspect.iscoroutinefunction(entry.fn):
            result = await _call(entry, input_json, ctx)
        else:
            # A blocking activity must not stall the loop's other activities.
            result = await asyncio.to_thread(_call, entry, input_json, ctx)
            if inspect.isawaitable(result):
                result = await result
        return ActivityOutcome(result=payload.encode(result))
    except Exception as err:
        return ActivityOutcome(failure=failure_from_exception(err))


def _call(entry: Registered, input_json: str | None, ctx: WorkflowActivityContext) -> Any:
    value = payload.coerce(payload.decode(input_json), entry.input_type)
    return entry.call(ctx, value)


def _not_registered(name: str, app_id: str) -> ActivityOutcome:
    where = f" in application {app_id!r}" if app_id else ""
    return ActivityOutcome(
        failure=failure_from_exception(
            ActivityNotRegistered(
                f"activity {name!r} is not registered{where}; register it (@runtime.activity or "
                "register_activity) in every process that runs activity workers"
            )
        )
    )
