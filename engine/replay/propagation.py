"""History propagation: a workflow hands its history (and its ancestors') to what it calls.

``call_activity(..., propagation=PropagationScope.OWN_HISTORY)`` (or ``LINEAGE``) gives the
activity or child workflow a read-only view of the caller's history at the moment of the
call: which activities and children it ran, with their inputs, outputs and failures.
``LINEAGE`` adds the chunks the caller itself received, so a grandchild sees its whole
ancestry, oldest first.

On the wire the view is JSON text carried by the step that asked for it
(``TaskScheduled``/``ChildWorkflowScheduled``, then ``ActivityTask``/``ExecutionStarted``):
``{"scope": ..., "chunks": [{"app_id", "instance_id", "workflow_name", "events": [...]}]}``,
each event ``{"kind": "TaskScheduled" | "TaskCompleted" | ..., fields...}``. It is decided by
the replay engine from history alone, so it is the same on every replay.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, TypeVar

from engine.core.history import (
    ChildWorkflowCompleted,
    ChildWorkflowFailed,
    ChildWorkflowScheduled,
    Event,
    TaskCompleted,
    TaskFailed,
    TaskScheduled,
)

R = TypeVar("R")

# The steps and results a propagated history keeps: what the query API can answer about.
PROPAGATED_KINDS = (TaskScheduled, TaskCompleted, TaskFailed, ChildWorkflowScheduled, ChildWorkflowCompleted,
                    ChildWorkflowFailed)


class PropagationScope(Enum):
    """How much history a call hands to the activity or child workflow it starts."""

    NONE = 0
    """Nothing (the default): ``get_propagated_history()`` answers None."""
    OWN_HISTORY = 1
    """The caller's own history so far."""
    LINEAGE = 2
    """The caller's history plus what the caller received (its ancestors'), oldest first."""


class PropagationNotFoundError(LookupError):
    """A query on propagated history found nothing of that name."""


@dataclass(frozen=True)
class ActivityResult:
    """One activity call found in propagated history.

    Attributes:
        name: The activity's name.
        input: Its input, JSON text (None for none).
        output: Its result, JSON text, once completed.
        completed: Whether it returned.
        failed: Whether it failed (every retry included).
        error: ``{"type", "message"}`` of the failure, if it failed.
    """

    name: str
    input: str | None
    output: str | None
    completed: bool
    failed: bool
    error: dict[str, str] | None = None
    started: bool = True


@dataclass(frozen=True)
class ChildWorkflowResult:
    """One child workflow call found in propagated history (fields as ``ActivityResult``)."""

    name: str
    instance_id: str
    input: str | None
    output: str | None
    completed: bool
    failed: bool
    error: dict[str, str] | None = None
    started: bool = True


@dataclass(frozen=True)
class WorkflowResult:
    """One workflow's part of a propagated history."""

    instance_id: str
    app_id: str
    name: str
    events: list[dict[str, Any]] = field(repr=False)

    def get_activities_by_name(self, name: str) -> list[ActivityResult]:
        """Every call of activity ``name``, in the order they were made."""
        return [self._activity(e) for e in self.events if e["kind"] == "TaskScheduled" and e["name"] == name]

    def get_last_activity_by_name(self, name: str) -> ActivityResult:
        """The latest call of activity ``name``.

        Raises:
            PropagationNotFoundError: The workflow called no activity of that name.
        """
        return self._last(self.get_activities_by_name(name), "activity", name)

    get_activity_by_name = get_last_activity_by_name

    def get_child_workflows_by_name(self, name: str) -> list[ChildWorkflowResult]:
        """Every call of child workflow ``name``, in the order they were made."""
        return [self._child(e) for e in self.events if e["kind"] == "ChildWorkflowScheduled" and e["name"] == name]

    def get_last_child_workflow_by_name(self, name: str) -> ChildWorkflowResult:
        """The latest call of child workflow ``name``.

        Raises:
            PropagationNotFoundError: The workflow started no child of that name.
        """
        return self._last(self.get_child_workflows_by_name(name), "child workflow", name)

    get_child_workflow_by_name = get_last_child_workflow_by_name

    def _last(self, found: list[R], what: str, name: str) -> R:
        if not found:
            raise PropagationNotFoundError(f"no {what} named {name!r} in the propagated history of "
                                           f"workflow {self.name!r} (instance {self.instance_id!r})")
        return found[-1]

    def _outcome(self, kinds: tuple[str, str], task_id: int) -> tuple[str | None, bool, bool, dict[str, str] | None]:
        output, completed, failed, error = None, False, False, None
        # Each attempt of a retried call has a task ID (and a TaskScheduled) of its own.
        for e in self.events:
            if e.get("task_id") != task_id:
                continue
            if e["kind"] == kinds[0]:
                output, completed = e.get("result"), True
            elif e["kind"] == kinds[1]:
                failed, error = True, e.get("failure")
        return output, completed, failed, error

    def _activity(self, scheduled: dict[str, Any]) -> ActivityResult:
        output, completed, failed, error = self._outcome(("TaskCompleted", "TaskFailed"), scheduled["task_id"])
        return ActivityResult(scheduled["name"], scheduled.get("input"), output, completed, failed, error)

    def _child(self, scheduled: dict[str, Any]) -> ChildWorkflowResult:
        output, completed, failed, error = self._outcome(("ChildWorkflowCompleted", "ChildWorkflowFailed"),
                                                         scheduled["task_id"])
        return ChildWorkflowResult(scheduled["name"], scheduled.get("instance_id", ""), scheduled.get("input"),
                                   output, completed, failed, error)


class PropagatedHistory:
    """The history a caller handed on: one ``WorkflowResult`` per workflow, oldest first."""

    def __init__(self, scope: PropagationScope, workflows: list[WorkflowResult]) -> None:
        self.scope = scope
        self._workflows = workflows

    def get_workflows(self) -> list[WorkflowResult]:
        """Every workflow in the chain: ancestors first, the immediate caller last."""
        return list(self._workflows)

    def get_workflows_by_name(self, name: str) -> list[WorkflowResult]:
        """The workflows of that name in the chain, oldest first."""
        return [w for w in self._workflows if w.name == name]

    def get_last_workflow_by_name(self, name: str) -> WorkflowResult:
        """The latest workflow of that name in the chain.

        Raises:
            PropagationNotFoundError: No workflow of that name is in the chain.
        """
        found = self.get_workflows_by_name(name)
        if not found:
            names = ", ".join(repr(w.name) for w in self._workflows) or "none"
            raise PropagationNotFoundError(f"no workflow named {name!r} in the propagated history (it has {names})")
        return found[-1]

    get_workflow_by_name = get_last_workflow_by_name

    def get_app_ids(self) -> list[str]:
        """The applications of the chain's workflows, each once, oldest first ("" is the default one)."""
        return list(dict.fromkeys(w.app_id for w in self._workflows))

    def to_json(self) -> str:
        """The wire form (see the module docstring)."""
        return json.dumps({
            "scope": self.scope.name,
            "chunks": [{"app_id": w.app_id, "instance_id": w.instance_id, "workflow_name": w.name,
                        "events": w.events} for w in self._workflows],
        }, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | None) -> PropagatedHistory | None:
        """Read the wire form; None for None.

        Raises:
            ValueError: The text is not a propagated history.
        """
        if text is None:
            return None
        try:
            data = json.loads(text)
            workflows = [WorkflowResult(c["instance_id"], c.get("app_id", ""), c["workflow_name"], list(c["events"]))
                         for c in data["chunks"]]
            return cls(PropagationScope[data["scope"]], workflows)
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"not a propagated history: {err}") from err


def propagate(scope: PropagationScope | None, received: str | None, instance_id: str, workflow_name: str,
              steps: Iterable[Event], app_id: str = "") -> str | None:
    """The propagated history a call hands on, as JSON text; None for no propagation.

    Args:
        scope: The call's ``propagation``.
        received: What the calling workflow itself received (kept with ``LINEAGE``).
        instance_id: The calling instance.
        workflow_name: The calling workflow's name.
        steps: The caller's history so far, in order (kinds other than ``PROPAGATED_KINDS``
            are left out).
        app_id: The calling workflow's application ("" is the default one).
    """
    if scope is None or scope is PropagationScope.NONE:
        return None
    if not isinstance(scope, PropagationScope):
        raise TypeError(f"propagation must be a PropagationScope, got {type(scope).__name__}")
    own = WorkflowResult(instance_id, app_id, workflow_name, [_event_json(e) for e in steps
                                                          if isinstance(e, PROPAGATED_KINDS)])
    chain: list[WorkflowResult] = []
    if scope is PropagationScope.LINEAGE:
        ancestors = PropagatedHistory.from_json(received)
        if ancestors is not None:
            chain = ancestors.get_workflows()
    return PropagatedHistory(scope, [*chain, own]).to_json()


def _event_json(event: Event) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": type(event).__name__}
    if isinstance(event, TaskScheduled | ChildWorkflowScheduled):
        out.update(task_id=event.task_id, name=event.name, input=event.input)
        if isinstance(event, ChildWorkflowScheduled):
            out["instance_id"] = event.instance_id
    elif isinstance(event, TaskCompleted | ChildWorkflowCompleted):
        out.update(task_id=event.task_id, result=event.result)
    elif isinstance(event, TaskFailed | ChildWorkflowFailed):
        out.update(task_id=event.task_id, failure={"type": event.failure.type, "message": event.failure.message})
    return out
