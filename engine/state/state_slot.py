"""A state folder and identity of its own for every runtime process started from one folder.

The transactional IDs of a runtime's processors are built from its process ID, and its
stores live in its state folder. Two processes started from one folder with the same
environment would share both, and the second would fence the first. So unless
``KWF_STATE_DIR`` names a folder, a runtime takes a *slot*: an exclusive lock on
``{state_dir}/slot-N/lock`` for the lowest N that no running process holds, and uses
``slot-N`` as its state folder and (unless ``KWF_PROCESS_ID`` names one) the source of its
process ID. The lock dies with its process, so a restarted process takes the lowest free
slot again: with the others still running, its own, with its stores and its transactional
IDs, which abort whatever its predecessor left open.
"""

from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass, replace
from pathlib import Path

from engine.state.config import Settings, default_process_id

# Far more runtime processes than one machine runs from one folder; past this, something
# is starting processes in a loop, and saying so beats filling the disk with slots.
MAX_SLOTS = 64


class NoFreeSlot(RuntimeError):
    """Every slot of the state folder is held by a running process; set ``KWF_STATE_DIR``."""


@dataclass
class StateSlot:
    """A held slot: its number and folder; ``release`` gives it up (exiting does too)."""

    number: int
    folder: Path
    _fd: int

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # closing the descriptor drops the lock
            self._fd = -1


def claim_slot(base: Path, limit: int = MAX_SLOTS) -> StateSlot:
    """Lock the lowest free ``base/slot-N``.

    Raises:
        NoFreeSlot: all ``limit`` slots are held.
    """
    for number in range(limit):
        folder = base / f"slot-{number}"
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        return StateSlot(number, folder, fd)
    raise NoFreeSlot(f"all {limit} state slots under {base} are held by running processes; "
                     "stop some, or give this one a folder of its own with KWF_STATE_DIR")


def settle_identity(settings: Settings) -> tuple[Settings, StateSlot | None]:
    """The settings a runtime process runs with: its own state folder and process ID.

    With ``settings.per_process_state`` a slot is claimed (the caller releases it at
    shutdown); otherwise the state folder is used as given. An empty process ID is derived
    from the state folder.
    """
    slot = claim_slot(settings.state_dir) if settings.per_process_state else None
    state_dir = slot.folder if slot is not None else settings.state_dir
    process_id = settings.process_id or default_process_id(state_dir)
    return replace(settings, state_dir=state_dir, process_id=process_id, per_process_state=False), slot
