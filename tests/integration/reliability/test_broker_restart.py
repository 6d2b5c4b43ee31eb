"""The broker stops and starts again mid-run: the runtime reconnects by itself and nothing is lost.

This test runs a broker of its own (the shared one must not go down under other tests).
"""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import pytest

from engine import WorkflowClient, WorkflowStatus
from engine.api.status_view import StatusView
from engine.runtime import RESTART_PAUSE_CAP_S
from engine.state.config import Settings
from engine.state.topics import ensure_workflow_topics
from engine.testing import READY_TIMEOUT_S
from streams.broker import LocalBroker, free_port_pair
from tests.integration.engine.runtime_process import runtime_processes, wait_until

REPO = Path(__file__).resolve().parents[3]
# The broker is down this long: long enough for every client to notice and retry, short
# enough to stay inside the runtime's transaction retry deadline (60 s).
DOWN_S = 5.0
TIMERS = 12
FAN_OUT = 30
# Every instance completes within this long after the broker is back (measured: 8-9 s).
# It covers the runtime's restart pauses (1 s, then 2 s, ... per restart in a row) and a
# restarted processor's group join and restore.
DONE_WITHIN_S = 90.0
STARTING = re.compile(r"processor (\S+) starting on ")
RESTARTING = re.compile(r"(\S+) stopped on a transient Kafka error .*; starting it again")
GAVE_UP = re.compile(r"engine\.runtime: kwf-\S+ stopped$", re.MULTILINE)


def processor_restarts(log: str) -> tuple[int, int]:
    """(restarts the runtime announced, processor starts beyond each processor's first), from its log."""
    started = STARTING.findall(log)
    return len(RESTARTING.findall(log)), len(started) - len(set(started))


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


@contextmanager
def closing_views(topic_prefix: str) -> Iterator[None]:
    """Closes the status and history views the client shared in this process (a client's
    close leaves them to other clients) before the test's broker stops: their consumers
    would go on trying to reach it, and logging, for the rest of the test session."""
    try:
        yield
    finally:
        StatusView.close_shared(topic_prefix)


# The whole test: a broker and a runtime start (READY_TIMEOUT_S each), the downtime, the
# deadline for the instances, the wait for announced restarts.
@pytest.mark.slow
@pytest.mark.timeout(2 * READY_TIMEOUT_S + DOWN_S + DONE_WITHIN_S + RESTART_PAUSE_CAP_S + 60)
def test_instances_complete_across_a_broker_restart_without_restarting_the_runtime(
        restart_broker: LocalBroker, tmp_path: Path) -> None:
    settings = Settings(bootstrap_servers=restart_broker.bootstrap, topic_prefix="restart", partitions=4,
                        state_dir=tmp_path / "client", process_id="restart-driver")
    ensure_workflow_topics(settings)
    runs_dir = tmp_path / "runs"
    runs_dir.mkdir()
    with runtime_processes(settings, tmp_path) as process, closing_views(settings.topic_prefix):
        runtime = process("p0", KWF_TEST_RUNS_DIR=str(runs_dir))
        # Closed before the broker stops, so its producer does not go on trying to reach it.
        with closing(WorkflowClient(settings=settings)) as client:
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
            # One deadline for all of them, not a timeout each in turn.
            deadline = back_at + DONE_WITHIN_S

            def left() -> float:
                return max(0.1, deadline - time.monotonic())

            try:
                states = {i: client.wait_for_workflow_completion(i, timeout_in_seconds=left())
                          for i in [*timers, "fan-out", "after-restart"]}
            except TimeoutError as err:
                log = runtime.current_log()
                raise AssertionError(f"{err}; restarts (announced, started again): {processor_restarts(log)}; "
                                     f"runtime log:\n{log[-6000:]}") from err
            done_at = time.monotonic()
            runtime.check_alive()  # the same process throughout (never exited): it reconnected by itself
            # A restart announced last starts its processor after its pause (at most the cap).
            wait_until(lambda: len(set(processor_restarts(runtime.current_log()))) == 1, RESTART_PAUSE_CAP_S + 30,
                       lambda: f"announced restarts did not happen: {processor_restarts(runtime.current_log())}")
            log = runtime.current_log()

    # Every processor the runtime said it would start again did start again, and it never gave up.
    announced, started_again = processor_restarts(log)
    assert started_again == announced, (announced, started_again, log[-4000:])
    assert not GAVE_UP.search(log), log[-4000:]

    not_done = {i: s.runtime_status.name if s else None for i, s in states.items()
                if s is None or s.runtime_status is not WorkflowStatus.COMPLETED}
    assert not not_done, not_done
    assert {i: json.loads(states[i].serialized_output) for i in timers} == {i: i for i in timers}
    assert json.loads(states["fan-out"].serialized_output) == sum(2 * i for i in range(1, FAN_OUT + 1))
    print(f"broker down {back_at - stopped_at:.1f} s (stop, {DOWN_S:.0f} s pause, start); every instance "
          f"completed {done_at - back_at:.1f} s after the broker was back; {announced} processor restart(s)")
