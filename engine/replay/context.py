"""The context object a workflow function receives: the only door from workflow code to the world."""

from __future__ import annotations

import random as _random
import string
import uuid
import weakref
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from engine.core import payload
from engine.core.history import utc, validate_app_id, validate_instance_id
from engine.replay.propagation import PropagatedHistory, PropagationScope
from engine.replay.registry import name_of
from engine.replay.retry import RetryPolicy
from engine.replay.tasks import Task

if TYPE_CHECKING:
    from engine.replay.workflow_run import WorkflowRun


class WorkflowContext:
    """What a workflow sees of its instance, and how it asks for durable work.

    Workflow code must be deterministic: it may only learn about the world through the
    tasks it yields and the properties here, which replay identically. Every call below
    records a step in the instance's history.
    """

    __slots__ = ("_run",)

    def __init__(self, run: WorkflowRun) -> None:
        # Weak: the run holds this context and its generator does too, so a strong reference
        # back would make every finished run a cycle only the collector frees (RSS grew with
        # each instance ever run between full collections).
        self._run = weakref.proxy(run)

    @property
    def instance_id(self) -> str:
        """The ID of the workflow instance."""
        return self._run.instance_id

    @property
    def workflow_name(self) -> str:
        """The registered name of the running workflow."""
        return self._run.workflow_name

    @property
    def is_replaying(self) -> bool:
        """True while the code re-runs steps already in history (e.g. skip logging then)."""
        return self._run.is_replaying

    @property
    def current_utc_datetime(self) -> datetime:
        """The timestamp of the history event being processed: the same on every replay.

        Use it instead of ``datetime.now()``, which would differ on replay.
        """
        return self._run.current_time

    def call_activity(
        self,
        activity: Callable[..., Any] | str,
        *,
        input: Any = None,
        retry_policy: RetryPolicy | None = None,
        app_id: str | None = None,
        propagation: PropagationScope | None = None,
    ) -> Task:
        """Schedule an activity; yield the returned task to wait for its result.

        Args:
            activity: The activity function or its registered name.
            input: A JSON-encodable value (dataclasses and pydantic models too).
            retry_policy: How to retry the activity if it fails.
            app_id: Run it in the workers of this application (``KWF_APP_ID`` of their
                processes; "" is the default application); None: this workflow's own.
            propagation: Hand this workflow's history (``OWN_HISTORY``), and what it
                received (``LINEAGE``), to the activity's ``get_propagated_history()``.

        Returns:
            A task whose result is the activity's return value; it fails with TaskFailedError.

        Raises:
            ValueError: ``app_id`` is not 1-64 letters, digits, ``-`` and ``_``.
        """
        return self._run.schedule_activity(name_of(activity), payload.encode(input), retry_policy, propagation,
                                           _target_app(app_id))

    def call_child_workflow(
        self,
        workflow: Callable[..., Any] | str,
        *,
        input: Any = None,
        instance_id: str | None = None,
        retry_policy: RetryPolicy | None = None,
        app_id: str | None = None,
        propagation: PropagationScope | None = None,
    ) -> Task:
        """Start a child workflow; yield the returned task to wait for its output.

        Args:
            workflow: The workflow function or its registered name.
            input: A JSON-encodable value.
            instance_id: The child's instance ID; default ``"{this instance}:{task ID}"``.
            retry_policy: How to retry the child if it fails.
            app_id: Run the child in the runtime of this application (``KWF_APP_ID`` of its
                processes; "" is the default application); None: this workflow's own.
            propagation: Hand this workflow's history (``OWN_HISTORY``), and what it
                received (``LINEAGE``), to the child's ``ctx.get_propagated_history()``.

        Returns:
            A task whose result is the child's output; it fails with TaskFailedError.

        Raises:
            ValueError: ``instance_id`` is not 1-128 letters, digits, ``-``, ``_``, ``.``, ``:``,
                or ``app_id`` not 1-64 letters, digits, ``-`` and ``_``.
        """
        if instance_id is not None:
            validate_instance_id(instance_id)
        return self._run.schedule_child(name_of(workflow), payload.encode(input), instance_id, retry_policy,
                                        propagation, _target_app(app_id))

    def get_propagated_history(self) -> PropagatedHistory | None:
        """The history the caller handed on with ``propagation=``; None if it handed none."""
        return PropagatedHistory.from_json(self._run.propagated_history)

    def create_timer(self, fire_at: datetime | timedelta) -> Task:
        """A durable timer, due at a moment or after a delay from ``current_utc_datetime``.

        Args:
            fire_at: An absolute time (naive means UTC) or a delay.
        """
        if isinstance(fire_at, timedelta):
            due = self._run.current_time + fire_at
        elif isinstance(fire_at, datetime):
            due = utc(fire_at)
        else:
            raise TypeError(f"create_timer takes a datetime or a timedelta, got {type(fire_at).__name__}")
        return self._run.schedule_timer(due)

    def wait_for_external_event(self, name: str, *, timeout: datetime | timedelta | None = None) -> Task:
        """Wait for an event raised to this instance; names compare case-insensitively.

        Events raised before the wait are kept in order and handed to waits in order.

        Args:
            name: The event name.
            timeout: Give up after this long (a delay from ``current_utc_datetime``) or at this
                moment (naive means UTC); the task then fails with TimeoutError.

        Returns:
            A task whose result is the event's data.
        """
        timeout_at: datetime | None
        if timeout is None:
            timeout_at = None
        elif isinstance(timeout, timedelta):
            timeout_at = self._run.current_time + timeout
        elif isinstance(timeout, datetime):
            timeout_at = utc(timeout)
        else:
            raise TypeError(f"timeout must be a timedelta or a datetime, got {type(timeout).__name__}")
        return self._run.wait_for_event(name, timeout_at)

    def continue_as_new(self, new_input: Any, *, save_events: bool = False) -> None:
        """Restart this workflow from the beginning with new input and a fresh history.

        Call it without ``yield``, then return. The current execution ends as
        CONTINUED_AS_NEW once the function returns or yields again.

        Args:
            new_input: The input of the next execution.
            save_events: Carry events raised but not yet waited for into the next execution.
        """
        self._run.request_continue_as_new(payload.encode(new_input), save_events)

    def set_custom_status(self, status: Any) -> None:
        """Publish a JSON-encodable value as the instance's custom status."""
        self._run.set_custom_status(payload.encode(status))

    def is_patched(self, patch_name: str) -> bool:
        """Whether to take the patched code path here; the same answer on every replay.

        True on a first run through this point (the patch is recorded in history) and on
        a replay of history that recorded it; False on a replay of history written before
        the patch existed, so running instances keep the path they took. Keep the check
        while instances that recorded it may still run: removing it stalls them
        (STALLED, PATCH_MISMATCH) until the check is back.

        Args:
            patch_name: A name for this change, unique within the workflow.
        """
        return self._run.is_patched(patch_name)

    # Deterministic helpers: the same values on every replay ------------------------------

    def now(self) -> datetime:
        """The workflow's current time: ``current_utc_datetime``, the same on every replay."""
        return self._run.current_time

    def random(self) -> _random.Random:
        """A ``random.Random`` whose numbers are the same on every replay.

        Each call returns a generator with a seed of its own, derived from the instance ID,
        the execution ID and how many times the code called a helper before: two calls in
        one step give different numbers, a replay gives the same ones in the same order.
        """
        return _random.Random(self._run.next_seed())

    def uuid4(self) -> uuid.UUID:
        """A version-4 UUID that is the same on every replay (each call a new one)."""
        bits = self.random().getrandbits(128)
        return uuid.UUID(int=bits, version=4)

    def new_guid(self) -> uuid.UUID:
        """The same as ``uuid4()``: a replay-stable UUID (the name other Durable Task SDKs use)."""
        return self.uuid4()

    def random_string(self, length: int, alphabet: str | None = None) -> str:
        """A string of ``length`` characters from ``alphabet``, the same on every replay.

        Args:
            length: How many characters (0 or more).
            alphabet: The characters to draw from; default ASCII letters and digits.

        Raises:
            ValueError: ``length`` is negative or ``alphabet`` is empty.
        """
        if length < 0:
            raise ValueError(f"length must be 0 or more, got {length}")
        chars = alphabet if alphabet is not None else string.ascii_letters + string.digits
        if not chars:
            raise ValueError("alphabet must not be empty")
        rng = self.random()
        return "".join(rng.choice(chars) for _ in range(length))


def _target_app(app_id: str | None) -> str | None:
    # "" names the default application (whose processes set no KWF_APP_ID).
    return app_id if app_id is None or app_id == "" else validate_app_id(app_id)


DaprWorkflowContext = WorkflowContext
"""The ``dapr.ext.workflow`` name of WorkflowContext."""
