"""Durable tasks a workflow yields, and the ``when_all`` / ``when_any`` combinators.

A task completes when the replay engine applies the history event that settles it; tasks
that wait on other tasks (``when_all``, ``when_any``) are told as each of those settles, so
a fan-out of N costs O(N) in total.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any


class Task:
    """Something a workflow can ``yield`` to wait for: an activity, child workflow, timer or event.

    Yielding a task suspends the workflow until the task completes; the ``yield`` then
    evaluates to ``get_result()`` or raises its exception.
    """

    __slots__ = ("_done", "_result", "_exception", "_parents")

    def __init__(self) -> None:
        self._done = False
        self._result: Any = None
        self._exception: BaseException | None = None
        self._parents: list[_CompositeTask] | None = None

    @property
    def is_complete(self) -> bool:
        """Whether the task has a result or has failed."""
        return self._done

    @property
    def is_failed(self) -> bool:
        """Whether the task has failed."""
        return self._exception is not None

    def get_result(self) -> Any:
        """The task's result.

        Raises:
            ValueError: The task has not completed yet.
            BaseException: The task failed; its exception (e.g. TaskFailedError) is raised.
        """
        if not self._done:
            raise ValueError("the task is not complete yet; yield it first")
        if self._exception is not None:
            raise self._exception
        return self._result

    def get_exception(self) -> BaseException | None:
        """The exception the task failed with, or None."""
        return self._exception

    def _settle(self, result: Any, exception: BaseException | None) -> None:
        if self._done:
            return
        self._done = True
        self._result = result
        self._exception = exception
        if self._parents is not None:
            for parent in self._parents:
                parent._child_settled(self)
            self._parents = None

    def _watch(self, parent: _CompositeTask) -> None:
        if self._parents is None:
            self._parents = []
        self._parents.append(parent)


class CompletableTask(Task):
    """A task the replay engine settles from a history event."""

    __slots__ = ()

    def complete(self, result: Any) -> None:
        """Settle the task with a result (a no-op if it already settled)."""
        self._settle(result, None)

    def fail(self, exception: BaseException) -> None:
        """Settle the task with an exception (a no-op if it already settled)."""
        self._settle(None, exception)


class ActivityTask(CompletableTask):
    """An activity call; its result is the activity's decoded return value."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name


class ChildWorkflowTask(CompletableTask):
    """A child workflow call; its result is the child's decoded output."""

    __slots__ = ("name", "instance_id")

    def __init__(self, name: str, instance_id: str | None) -> None:
        super().__init__()
        self.name = name
        self.instance_id = instance_id


class TimerTask(CompletableTask):
    """A durable timer; completes with None at ``fire_at``."""

    __slots__ = ("fire_at",)

    def __init__(self, fire_at: datetime) -> None:
        super().__init__()
        self.fire_at = fire_at


class ExternalEventTask(CompletableTask):
    """A wait for an external event; completes with the event's decoded data."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name


class _CompositeTask(Task):
    __slots__ = ("children",)

    def __init__(self, children: list[Task]) -> None:
        super().__init__()
        for child in children:
            if not isinstance(child, Task):
                raise TypeError(f"when_all and when_any take tasks, got {type(child).__name__}: {child!r}")
        self.children = children

    def _start(self) -> None:
        for child in self.children:
            if child._done:
                self._child_settled(child)
            else:
                child._watch(self)

    def _child_settled(self, child: Task) -> None:
        raise NotImplementedError


class WhenAllTask(_CompositeTask):
    """Completes with every child's result, in the order given.

    If some children fail, it waits for all of them all the same, then fails with the
    exception of the child that failed first (as Dapr's SDK does since 1.17), so no
    started work is left running unobserved when the workflow handles the failure.
    """

    __slots__ = ("_pending", "_first_failure")

    def __init__(self, children: list[Task]) -> None:
        super().__init__(children)
        self._pending = len(children)
        self._first_failure: BaseException | None = None
        if not children:
            self._settle([], None)
        self._start()

    def _child_settled(self, child: Task) -> None:
        if self._done:
            return
        if child._exception is not None and self._first_failure is None:
            self._first_failure = child._exception
        self._pending -= 1
        if self._pending > 0:
            return
        if self._first_failure is not None:
            self._settle(None, self._first_failure)
        else:
            self._settle([c._result for c in self.children], None)


class WhenAnyTask(_CompositeTask):
    """Completes with the first child to complete (succeeded or failed): the task object itself."""

    __slots__ = ()

    def __init__(self, children: list[Task]) -> None:
        if not children:
            raise ValueError("when_any needs at least one task")
        super().__init__(children)
        self._start()

    def _child_settled(self, child: Task) -> None:
        if not self._done:
            self._settle(child, None)


def when_all(tasks: Iterable[Task]) -> Task:
    """A task that completes when all ``tasks`` have; its result lists their results in order.

    If any of them fails, it still waits for the others, then fails with the exception of
    the first one that failed.
    """
    return WhenAllTask(list(tasks))


def when_any(tasks: Iterable[Task]) -> Task:
    """A task that completes when the first of ``tasks`` does; its result is that task.

    Compare the result with the tasks you passed (``if winner == timeout: ...``) and call
    ``get_result()`` on it for its value.
    """
    return WhenAnyTask(list(tasks))
