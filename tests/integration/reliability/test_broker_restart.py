"""The broker stops and starts again mid-run: the runtime reconnects by itself and nothing is lost.

This test runs a broker of its own (the shared one must not go down under other tests).
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine import WorkflowClient, WorkflowStatus
from engine.state.config import Settings
from engine.state.topics import ensure_workflow_topics
from streams.broker import LocalBroker, free_port_pair
from tests.integration.engine.runtime_process import runtime_processes

REPO = Path(__file__).resolve().parents[3]
# The broker is down this long: long enough for every client to notice and retry, short
# enough to stay inside the runtime's transaction retry deadline (60 s).
DOWN_S = 5.0
TIMERS = 12
FAN_OUT = 30


@pytest.fixture
def restart_broker() -> Iterator[LocalBroker]:
    broker = LocalBroker(home=(REPO / ".kwf").resolve(), port=free_port_pair(), folder_name="restart-broker")
    broker.stop()
    shutil.rmtree(broker.folder, ignore_errors=True)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()
        shutil.rmtree(broker.folder, ignore_errors=True)


def test_instances_complete_across_a_broker_restart_without_restarting_the_runtime(
        restart_broker: LocalBroker, tmp_path: Path) -> None:
    settings = Settings(bootstrap_servers=restart_broker.bootstrap, topic_prefix="restart", partitions=4,
                        state_dir=tmp_path / "client", process_id="restart-driver")
    ensure_workflow_topics(settings)
    runs_dir = tmp_path / "runs"
    runs_dir.mkdir()
    with runtime_processes(settings, tmp_path) as process:
        runtime = process("p0", KWF_TEST_RUNS_DIR=str(runs_dir))
        client = WorkflowClient(settings=settings)
        # Timers from 1 to 12 s: some fire before the stop, some while the broker is down,
        # some after it is back.
        timers = [f"timer-{i}" for i in range(TIMERS)]
        for i, instance_id in enumerate(timers):
            client.schedule_new_workflow("timer_then_activity", input=1.0 + i, instance_id=instance_id)
        client.schedule_new_workflow("fan_out_recorded", input=FAN_OUT, instance_id="fan-out")
        time.sleep(1.5)

        stopped_at = time.monotonic()
        restart_broker.stop()
        time.sleep(DOWN_S)
        restart_broker.start()
        back_at = time.monotonic()
        # New work after the restart flows too.
        client.schedule_new_workflows("timer_then_activity", [("after-restart", 0.5)])
        states = {i: client.wait_for_workflow_completion(i, timeout_in_seconds=120)
                  for i in [*timers, "fan-out", "after-restart"]}
        done_at = time.monotonic()
        runtime.check_alive()  # the same process throughout: it reconnected by itself
        assert runtime.starts == 1

    not_done = {i: s.runtime_status.name if s else None for i, s in states.items()
                if s is None or s.runtime_status is not WorkflowStatus.COMPLETED}
    assert not not_done, not_done
    assert {i: json.loads(states[i].serialized_output) for i in timers} == {i: i for i in timers}
    assert json.loads(states["fan-out"].serialized_output) == sum(2 * i for i in range(1, FAN_OUT + 1))
    print(f"broker down {back_at - stopped_at:.1f} s (stop, {DOWN_S:.0f} s pause, start); every instance "
          f"completed {done_at - back_at:.1f} s after the broker was back")
