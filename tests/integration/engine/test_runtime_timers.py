"""Durable timers across a runtime restart: the timer is history, not a sleeping thread."""

from __future__ import annotations

import json
import time
from pathlib import Path

from engine import WorkflowClient, WorkflowStatus
from engine.api.history_reader import read_history
from engine.core.history import TimerCreated, TimerFired
from engine.state.config import Settings
from tests.integration.engine.runtime_process import runtime_processes

TIMER_S = 3.0
# Punctuation runs every 100 ms; a second covers it and a busy machine.
LATENESS_S = 1.0


def test_a_timer_created_before_a_restart_fires_on_time_after_it(
        settings: Settings, client: WorkflowClient, tmp_path: Path) -> None:
    with runtime_processes(settings, tmp_path) as process:
        runtime = process("p0")
        instance_id = client.schedule_new_workflow("sleeper", input=TIMER_S, instance_id="sleeper")
        # The TimerCreated event is committed with the start, in the same transaction.
        client.wait_for_workflow_start(instance_id, timeout_in_seconds=30)
        runtime.stop()
        assert runtime.proc is not None and runtime.proc.returncode == 0, runtime.current_log()[-2000:]
        runtime.start()
        restarted = time.time()
        state = client.wait_for_workflow_completion(instance_id, timeout_in_seconds=30)

    assert state is not None and state.runtime_status is WorkflowStatus.COMPLETED, state
    assert json.loads(state.serialized_output) == "woke"
    history = read_history(settings, instance_id)
    created = next(e for e in history if isinstance(e.event, TimerCreated))
    fired = next(e for e in history if isinstance(e.event, TimerFired))
    fire_at = created.event.fire_at.timestamp()
    assert restarted < fire_at, f"the restart took too long: ready {restarted - fire_at:.2f} s after the timer was due"
    late = fired.timestamp.timestamp() - fire_at
    print(f"restart ready {fire_at - restarted:.2f} s before the timer's time; fired {late:+.3f} s from it")
    assert 0 <= late <= LATENESS_S, f"the timer fired {late:+.3f} s from its time"
    completed = state.last_updated_at.timestamp() - fire_at
    assert 0 <= completed <= LATENESS_S, f"the instance completed {completed:+.3f} s from the timer's time"
