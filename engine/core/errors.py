"""Exceptions a workflow author or a runtime can act on, and their wire form."""

from __future__ import annotations

import traceback

from engine.core.history import FailureDetails


class TaskFailedError(Exception):
    """An activity or child workflow the workflow waited for has failed.

    Raised inside the workflow generator at the ``yield`` of the failed task (after any
    retries), so ``try``/``except`` around it can compensate. Left uncaught, it fails the
    workflow too, with the task's failure as the inner failure.

    Attributes:
        details: What went wrong in the task: error type name, message and stack trace.
    """

    def __init__(self, message: str, details: FailureDetails) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class NonDeterminismError(Exception):
    """The workflow code asked for a different step than its history recorded.

    Replaying a workflow re-runs its code against the recorded history; the code must make
    the same calls in the same order every time. This error names the step (task ID), what
    history recorded and what the code asked for. Ship changed workflow logic under a new
    workflow name rather than editing a workflow with instances in flight.
    """


class WorkflowNotRegistered(Exception):
    """An instance names a workflow this runtime does not know.

    Register the workflow function (``@runtime.workflow`` or ``register_workflow``) in every
    process that runs the orchestrator before instances of it arrive.
    """


class ActivityNotRegistered(Exception):
    """A task names an activity this worker does not know.

    Register the activity function (``@runtime.activity`` or ``register_activity``) in every
    process that runs activity workers.
    """


def failure_from_exception(exc: BaseException) -> FailureDetails:
    """Describe an exception as FailureDetails: its class name, message and stack trace.

    A TaskFailedError keeps the failed task's own details as the inner failure, so the
    root cause survives as the failure travels up through parent workflows.
    """
    inner = exc.details if isinstance(exc, TaskFailedError) else None
    stack = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return FailureDetails(type=type(exc).__name__, message=str(exc), stack_trace=stack, inner=inner)
