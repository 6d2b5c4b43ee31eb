"""Durable timers across a runtime restart: the timer is history, not a sleeping thread."""

from __future__ import annotations

import json
import time
from pathlib import Path

from engine import WorkflowClient, WorkflowStatus
from engine.api.history_reader import read_history
from engine.core.history import TimerCreated, TimerFired
from engine.state.config import Settings
from engine.testing import READY_TIMEOUT_S
from tests.integration.engine.runtime_process import runtime_processes

# The timer must be due after the restart, or "on time after it" cannot be seen. A stop
# and a restart take about as long as the first start (measured, not guessed: the machine
# may be loaded); the timer gets three times that, and at least this.
MIN_TIMER_S = 3.0
# Punctuation runs every 100 ms; a second covers it and a busy machine.
LATENESS_S = 1.0


def test_a_timer_created_before_a_restart_fires_on_time_after_it(
        settings: Settings, client: WorkflowClient, tmp_path: Path) -> None:
    with runtime_processes(settings, tmp_path) as process:
        began = time.monotonic()
        runtime = process("p0")
        timer_s = max(MIN_TIMER_S, 3 * (time.monotonic() - began))
        instance_id = client.schedule_new_workflow("sleeper", input=timer_s, instance_id="sleeper")
        # The TimerCreated event is committed with the start, in the same transaction.
        client.wait_for_workflow_start(instance_id, timeout_in_seconds=30)
        runtime.stop()
        assert runtime.proc is not None and runtime.proc.returncode == 0, runtime.current_log()[-2000:]
        assert not [e for e in read_history(settings, instance_id) if isinstance(e.event, TimerFired)], (
            "the timer fired before the stop: nothing was tested across the restart")
        runtime.start()
        restarted = time.time()
        state = client.wait_for_workflow_completion(instance_id, timeout_in_seconds=timer_s + READY_TIMEOUT_S)

    assert state is not None and state.runtime_status is WorkflowStatus.COMPLETED, state
    assert json.loads(state.serialized_output) == "woke"
    history = read_history(settings, instance_id)
    created = next(e for e in history if isinstance(e.event, TimerCreated))
    fired = next(e for e in history if isinstance(e.event, TimerFired))
    fire_at = created.event.fire_at.timestamp()
    assert restarted < fire_at, (f"the restart took {restarted - fire_at:.2f} s longer than the {timer_s:.1f} s "
                                 "timer: nothing was timed")
    late = fired.timestamp.timestamp() - fire_at
    print(f"{timer_s:.1f} s timer; restart ready {fire_at - restarted:.2f} s before its time; "
          f"fired {late:+.3f} s from it")
    assert 0 <= late <= LATENESS_S, f"the timer fired {late:+.3f} s from its time"
    completed = state.last_updated_at.timestamp() - fire_at
    assert 0 <= completed <= LATENESS_S, f"the instance completed {completed:+.3f} s from the timer's time"
