"""``KWF_LOG_FORMAT``: human lines by default, one JSON object a line with the bound context."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from engine.core.history import ExecutionStarted, HistoryEvent
from engine.observability import logs
from engine.observability.metrics import observed_activity
from engine.state.codec import ActivityTask


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    out = io.StringIO()
    monkeypatch.setenv("KWF_LOG_FORMAT", "json")
    logs.configure_logging(logging.INFO, stream=out)
    yield out
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])


def lines(out: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_json_lines_carry_the_bound_instance_workflow_and_activity(captured: io.StringIO) -> None:
    log = logging.getLogger("kwf.test")
    log.info("outside")
    with logs.bound(instance_id="order-1", workflow="approve"):
        log.warning("step %d", 2)
        with logs.bound(activity="send"):
            log.info("in the activity")
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed")
    outside, step, activity, failed = lines(captured)
    assert outside["message"] == "outside" and "instance_id" not in outside
    assert step["level"] == "WARNING" and step["logger"] == "kwf.test" and step["message"] == "step 2"
    assert (step["instance_id"], step["workflow"]) == ("order-1", "approve") and "activity" not in step
    assert (activity["instance_id"], activity["activity"]) == ("order-1", "send")
    assert "ValueError: boom" in failed["exception"]
    assert step["time"].endswith("Z")


def test_the_orchestrator_step_and_an_activity_attempt_bind_their_context(captured: io.StringIO) -> None:
    class Stepper:
        @logs.for_instance_step
        def step(self, batch: object, store: object, instance_id: str, proposed: list, now: object) -> None:
            logging.getLogger("kwf.step").info("stepping")

        @observed_activity
        async def run_task(self, task: ActivityTask) -> object:
            # Plain activities run in a thread: asyncio.to_thread carries the context there.
            await asyncio.to_thread(logging.getLogger("kwf.activity").info, "working")
            return None

    start = HistoryEvent("i-9", "", -1, datetime.now(UTC), ExecutionStarted("chain", None))
    Stepper().step(None, None, "i-9", [start], None)
    task = ActivityTask("i-9", "e", 0, "charge", None, "chain", datetime.now(UTC))
    asyncio.run(Stepper().run_task(task))
    stepping, working = lines(captured)
    assert (stepping["instance_id"], stepping["workflow"]) == ("i-9", "chain")
    assert (working["instance_id"], working["workflow"], working["activity"]) == ("i-9", "chain", "charge")


def test_human_format_is_the_default_and_an_unknown_format_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KWF_LOG_FORMAT", raising=False)
    assert logs.log_format() == "human"
    monkeypatch.setenv("KWF_LOG_FORMAT", "xml")
    with pytest.raises(ValueError, match="KWF_LOG_FORMAT"):
        logs.log_format()
