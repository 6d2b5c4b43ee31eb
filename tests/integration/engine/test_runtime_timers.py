"""Durable timers across a runtime restart: the timer is history, not a sleeping thread."""

from __future__ import annotations

import json
import time
from pathlib import Path

from engine import TimerCreated, TimerFired, WorkflowClient, WorkflowStatus
from engine.config import Settings
from engine.history_reader import read_history
from tests.integration.engine.runtime_process import READY_TIMEOUT_S, runtime_processes

# Long enough that the clean stop (a transaction, the group leave) lands before it is due.
TIMER_S = 5.0
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
        assert not [e for e in read_history(settings, instance_id) if isinstance(e.event, TimerFired)], (
            "the timer fired before the stop: nothing was tested across the restart")
        runtime.start()
        restarted = time.time()
        state = client.wait_for_workflow_completion(instance_id, timeout_in_seconds=TIMER_S + READY_TIMEOUT_S)

    assert state is not None and state.runtime_status is WorkflowStatus.COMPLETED, state
    assert json.loads(state.serialized_output) == "woke"
    history = read_history(settings, instance_id)
    created = next(e for e in history if isinstance(e.event, TimerCreated))
    fired = next(e for e in history if isinstance(e.event, TimerFired))
    fire_at = created.event.fire_at.timestamp()
    # At its time, or, when the restart took longer (a loaded machine), as soon as the
    # runtime was back: never early, never later than punctuation allows after either.
    due = max(fire_at, restarted)
    late = fired.timestamp.timestamp() - due
    print(f"restart ready {fire_at - restarted:+.2f} s before the timer's time; fired {late:+.3f} s after it was due")
    assert fired.timestamp.timestamp() >= fire_at, "the timer fired early"
    assert late <= LATENESS_S, f"the timer fired {late:+.3f} s after it was due"
    completed = state.last_updated_at.timestamp() - due
    assert completed <= LATENESS_S, f"the instance completed {completed:+.3f} s after the timer was due"
