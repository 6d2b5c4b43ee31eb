"""Says what a loop is doing when one of its steps takes too long.

A processor stuck inside a client call would otherwise stay silent: nothing it runs logs
until the call returns. The loop marks its steps (``with watch.step("commit"): ...``); a
daemon thread looks every ``CHECK_EVERY_S`` and, once a step has lasted ``threshold_s``,
logs the step and where the loop's thread is (its innermost frames name the call), again
every ``threshold_s`` for as long as it lasts.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger("streams.stall_watch")

# Often enough that a report comes within a second of its due time; a look costs nothing.
CHECK_EVERY_S = 1.0
# Innermost frames in a report: the client call, the bounded call's wait (four frames),
# and the processor code that made it.
FRAMES_SHOWN = 8


class StallWatch:
    """Watches the steps of the thread that calls ``start``.

    Args:
        name: Who is watched, in the log lines (a processor's transactional id).
        threshold_s: A step lasting this long is reported.
    """

    def __init__(self, name: str, threshold_s: float) -> None:
        self.name = name
        self.threshold_s = threshold_s
        self._step: tuple[str, float] | None = None
        self._watched: int | None = None
        self._done = threading.Event()

    def start(self) -> None:
        """Watch the calling thread from now on, until ``stop``."""
        self._watched = threading.get_ident()
        self._done.clear()
        threading.Thread(target=self._watch, name=f"{self.name}-stall-watch", daemon=True).start()

    def stop(self) -> None:
        self._done.set()

    @contextmanager
    def step(self, what: str) -> Iterator[None]:
        """Marks the watched thread as being in ``what`` until the block ends."""
        self._step = (what, time.monotonic())
        try:
            yield
        finally:
            self._step = None

    def _watch(self) -> None:
        reported: tuple[str, float] | None = None
        next_report = 0.0
        while not self._done.wait(CHECK_EVERY_S):
            step = self._step
            if step is None:
                continue
            what, since = step
            lasted = time.monotonic() - since
            if step != reported:
                reported, next_report = step, self.threshold_s
            if lasted >= next_report:
                next_report += self.threshold_s
                log.warning("%s has been in %s for %.0f s, at %s", self.name, what, lasted, self.where())

    def where(self) -> str:
        """The watched thread's innermost frames, innermost first."""
        frame = sys._current_frames().get(self._watched) if self._watched is not None else None
        if frame is None:
            return "(thread gone)"
        frames = traceback.extract_stack(frame)[-FRAMES_SHOWN:]
        return " <- ".join(f"{f.name} ({f.filename.rsplit('/', 1)[-1]}:{f.lineno})" for f in reversed(frames))
