"""A step that lasts too long is reported with the call the watched thread is in."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from streams import stall_watch
from streams.stall_watch import StallWatch


def blocked_in_a_client_call(released: threading.Event) -> None:
    released.wait()


@pytest.mark.timeout(10)
def test_a_long_step_is_reported_with_where_the_thread_is_and_again_while_it_lasts(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(stall_watch, "CHECK_EVERY_S", 0.02)
    caplog.set_level(logging.WARNING, logger="streams.stall_watch")
    watch = StallWatch("proc-1", threshold_s=0.2)
    released = threading.Event()
    threading.Timer(0.7, released.set).start()
    watch.start()
    try:
        with watch.step("commit"):
            blocked_in_a_client_call(released)
    finally:
        watch.stop()
    reports = [r.getMessage() for r in caplog.records]
    assert len(reports) >= 2, reports  # once at 0.2 s, again at 0.4 s, ...
    assert reports[0].startswith("proc-1 has been in commit for ")
    assert "blocked_in_a_client_call (test_stall_watch.py:" in reports[0]


@pytest.mark.timeout(10)
def test_short_steps_are_not_reported(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(stall_watch, "CHECK_EVERY_S", 0.02)
    caplog.set_level(logging.WARNING, logger="streams.stall_watch")
    watch = StallWatch("proc-1", threshold_s=2.0)
    watch.start()
    try:
        for _ in range(10):
            with watch.step("consume"):
                time.sleep(0.01)
    finally:
        watch.stop()
    assert caplog.records == []
