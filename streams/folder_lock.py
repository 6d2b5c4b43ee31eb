"""Claim a folder for one process: an exclusive ``flock`` on a lock file inside it.

A persistent local copy (``streams.mirror``) lives in a folder that outlives its process;
two processes writing one RocksDB folder would corrupt it (or fail on RocksDB's LOCK). A
process tries the slots ``slot-0``, ``slot-1``, ... under one base folder and keeps the
first it can lock; when every slot is taken it falls back to a private temporary folder.
The lock is released by the kernel when the process dies, so a killed process never
leaves a slot locked.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

LOCK_FILE = "kwf.lock"


@dataclass
class ClaimedFolder:
    """A folder this process holds; ``release`` unlocks it (and removes it if temporary)."""

    path: Path
    temporary: bool
    _fd: int | None

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None
        if self.temporary:
            shutil.rmtree(self.path, ignore_errors=True)


def claim_folder(base: Path | None, slots: int, temp_prefix: str) -> ClaimedFolder:
    """The first of ``base/slot-0 .. slot-{slots-1}`` no other process holds, else (or when
    ``base`` is None) a new temporary folder removed on release."""
    if base is not None:
        for n in range(slots):
            folder = base / f"slot-{n}"
            try:
                folder.mkdir(parents=True, exist_ok=True)
                fd = os.open(folder / LOCK_FILE, os.O_CREAT | os.O_RDWR, 0o600)
            except OSError:
                break  # an unwritable base: a temporary folder still works
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                continue
            return ClaimedFolder(folder, False, fd)
    return ClaimedFolder(Path(tempfile.mkdtemp(prefix=temp_prefix)), True, None)
