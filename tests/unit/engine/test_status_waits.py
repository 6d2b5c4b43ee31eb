"""The status view's waits: a write wakes the readers of the instances it changed, not every reader."""

from __future__ import annotations

import threading
import time

from engine.api.status_view import _InstanceWaits


def waiting_reader(waits: _InstanceWaits, instance_id: str) -> tuple[threading.Thread, threading.Event]:
    """A thread that waits (up to 10 s) once for ``instance_id``; the event is set when it woke."""
    woke = threading.Event()
    entered = threading.Event()

    def read() -> None:
        with waits:
            entered.set()
            waits.wait_on(instance_id, 10.0)
        woke.set()

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    assert entered.wait(5)
    with waits:  # the reader holds the lock until it waits: once we have it, it is waiting
        pass
    return thread, woke


def test_a_write_wakes_only_the_readers_of_the_instances_it_changed() -> None:
    waits = _InstanceWaits()
    _, woke_a = waiting_reader(waits, "a")
    _, woke_b = waiting_reader(waits, "b")
    with waits:
        waits.touched.add("b")
        waits.notify_all()
    assert woke_b.wait(5)
    time.sleep(0.2)
    assert not woke_a.is_set(), "a change of b woke the reader of a"
    with waits:
        waits.touched.add("a")
        waits.notify_all()
    assert woke_a.wait(5)


def test_a_start_made_here_wakes_its_readers_and_the_waits_are_forgotten() -> None:
    waits = _InstanceWaits()
    first, woke_first = waiting_reader(waits, "a")
    second, woke_second = waiting_reader(waits, "a")
    with waits:
        waits.notify_instance("a")
    assert woke_first.wait(5) and woke_second.wait(5)
    first.join(5)
    second.join(5)
    assert waits._instances == {}
