"""The step time limit: a looping step is stopped, a quick one is left alone."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from engine.orchestration.step_watchdog import StepTimeLimitExceeded, StepWatchdog


def spin(seconds: float) -> int:
    turns = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        turns += 1
    return turns


def step(watchdog: StepWatchdog, body: Callable[[], object]) -> str:
    """The way the orchestrator runs a step: 'done' or 'interrupted'."""
    try:
        watchdog.begin()
        body()
        watchdog.end()
        return "done"
    except StepTimeLimitExceeded:
        watchdog.end()
        return "interrupted"


def test_a_step_past_its_limit_is_interrupted() -> None:
    watchdog = StepWatchdog(0.2)
    began = time.monotonic()
    assert step(watchdog, lambda: spin(10)) == "interrupted"
    assert time.monotonic() - began < 2
    spin(0.5)  # and nothing more arrives after the step


def test_except_exception_in_workflow_code_does_not_swallow_it() -> None:
    def careless() -> None:
        end = time.monotonic() + 10
        while time.monotonic() < end:
            try:
                spin(0.01)
            except Exception:
                pass

    assert step(StepWatchdog(0.1), careless) == "interrupted"


def test_quick_steps_and_the_time_between_steps_are_never_interrupted() -> None:
    watchdog = StepWatchdog(0.1)
    assert all(step(watchdog, lambda: spin(0.001)) == "done" for _ in range(50))
    spin(0.5)  # outside any step: no limit


def test_a_blocking_call_is_interrupted_when_it_returns() -> None:
    # The exception waits for the next bytecode: after the sleep, not during it.
    began = time.monotonic()
    assert step(StepWatchdog(0.05), lambda: (time.sleep(0.3), spin(5))) == "interrupted"
    assert 0.3 <= time.monotonic() - began < 2


@pytest.mark.parametrize("limit", [None, 0])
def test_no_limit_means_no_watchdog(limit: float | None) -> None:
    assert step(StepWatchdog(limit), lambda: spin(0.2)) == "done"
