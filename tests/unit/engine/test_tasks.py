"""Tasks and the when_all / when_any combinators, settled by hand."""

from __future__ import annotations

import pytest

from engine import TaskFailedError, when_all, when_any
from engine.core.history import FailureDetails
from engine.replay.tasks import CompletableTask


def failed(message: str) -> TaskFailedError:
    return TaskFailedError(message, FailureDetails("ValueError", message))


def test_a_task_reports_its_state_and_result() -> None:
    task = CompletableTask()
    assert not task.is_complete and not task.is_failed
    with pytest.raises(ValueError, match="not complete"):
        task.get_result()
    task.complete(5)
    task.complete(6)  # a second settlement is ignored
    assert task.is_complete and not task.is_failed and task.get_result() == 5


def test_a_failed_task_raises_its_exception_from_get_result() -> None:
    task = CompletableTask()
    error = failed("nope")
    task.fail(error)
    assert task.is_failed and task.get_exception() is error
    with pytest.raises(TaskFailedError, match="nope"):
        task.get_result()


def test_when_all_lists_results_in_the_order_given_not_the_order_completed() -> None:
    a, b, c = CompletableTask(), CompletableTask(), CompletableTask()
    both = when_all([a, b, c])
    c.complete("c")
    a.complete("a")
    assert not both.is_complete
    b.complete("b")
    assert both.get_result() == ["a", "b", "c"]


def test_when_all_waits_for_every_task_then_fails_with_the_first_failure() -> None:
    a, b, c = CompletableTask(), CompletableTask(), CompletableTask()
    every = when_all([a, b, c])
    b.fail(failed("b broke"))
    assert not every.is_complete  # a and c are still running
    c.fail(failed("c broke"))
    assert not every.is_complete
    a.complete("a")
    assert every.is_failed
    with pytest.raises(TaskFailedError, match="b broke"):
        every.get_result()


def test_when_all_of_already_failed_tasks_fails_at_once_with_the_first_in_order() -> None:
    a, b = CompletableTask(), CompletableTask()
    a.fail(failed("a broke"))
    b.fail(failed("b broke"))
    with pytest.raises(TaskFailedError, match="a broke"):
        when_all([a, b]).get_result()


def test_when_all_of_nothing_and_of_settled_tasks_completes_at_once() -> None:
    assert when_all([]).get_result() == []
    done = CompletableTask()
    done.complete(1)
    assert when_all([done]).get_result() == [1]


def test_when_any_returns_the_first_task_to_settle_even_a_failed_one() -> None:
    slow, quick = CompletableTask(), CompletableTask()
    first = when_any([slow, quick])
    quick.fail(failed("quick broke"))
    slow.complete("slow")
    assert first.get_result() is quick
    assert first.get_result() != slow


def test_combinators_nest() -> None:
    a, b, c = CompletableTask(), CompletableTask(), CompletableTask()
    outer = when_any([when_all([a, b]), c])
    a.complete(1)
    assert not outer.is_complete
    b.complete(2)
    assert outer.get_result().get_result() == [1, 2]


def test_combinators_refuse_non_tasks_and_when_any_of_nothing() -> None:
    with pytest.raises(TypeError, match="take tasks"):
        when_all([CompletableTask(), 3])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="at least one"):
        when_any([])
