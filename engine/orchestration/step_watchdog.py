"""A time limit on one replay step, so workflow code that loops cannot stall its partition.

The executor is pure and cannot time itself; this sits at the edge, around the
orchestrator's call into it. One daemon thread per watchdog checks the running step's
deadline and, once it has passed, raises ``StepTimeLimitExceeded`` inside the thread
running the step (``PyThreadState_SetAsyncExc``). The exception arrives between two
bytecodes of that thread: a Python loop is stopped, a blocking C call (``time.sleep``, a
socket read) only when it returns.
"""

from __future__ import annotations

import ctypes
import threading
import time

# How often the watchdog looks at the running step, as a share of the limit: a step is
# stopped at most a quarter of its limit late.
CHECK_SHARE = 0.25
# Never look more often than this: the check costs a wake-up of a thread.
MIN_CHECK_S = 0.01
MAX_CHECK_S = 1.0



def _set_async_exc(thread_id: int, exception: type[BaseException] | None) -> None:
    """Raise ``exception`` in the thread soon; None withdraws one not yet raised."""
    # None passes as NULL, which is what withdraws a pending exception.
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread_id), None if exception is None else ctypes.py_object(exception))


class StepTimeLimitExceeded(BaseException):
    """A replay step ran past its time limit.

    A ``BaseException``, so that workflow code's ``except Exception`` does not swallow it.
    """


class StepWatchdog:
    """Raises ``StepTimeLimitExceeded`` (once) in a thread whose step runs past ``limit_s``.

    Call ``begin()`` before each step and ``end()`` after it, on the thread that runs it,
    both inside the ``try`` that catches ``StepTimeLimitExceeded``, and ``end()`` again in
    that handler: the exception can arrive anywhere up to the end of ``end()``, and after
    it none does. ``limit_s`` of None or 0 disables the watchdog.

    Args:
        limit_s: The longest a step may run, in seconds.
    """

    def __init__(self, limit_s: float | None) -> None:
        self.limit_s = limit_s if limit_s else None
        self._lock = threading.Lock()
        self._deadline: float | None = None
        self._thread_id = 0
        self._fired = False
        self._started = False

    def begin(self) -> None:
        """A step starts on the calling thread."""
        if self.limit_s is None:
            return
        if not self._started:
            self._started = True
            threading.Thread(target=self._watch, name="kwf-step-watchdog", daemon=True).start()
        with self._lock:
            self._thread_id = threading.get_ident()
            self._fired = False
            self._deadline = time.monotonic() + self.limit_s

    def end(self) -> None:
        """The step ended; an exception raised for it and not yet delivered is withdrawn."""
        if self.limit_s is None:
            return
        with self._lock:
            self._deadline = None
            if self._fired:
                self._fired = False
                _set_async_exc(self._thread_id, None)

    def _watch(self) -> None:
        assert self.limit_s is not None
        interval = min(MAX_CHECK_S, max(MIN_CHECK_S, self.limit_s * CHECK_SHARE))
        while True:
            time.sleep(interval)
            with self._lock:
                if self._deadline is not None and time.monotonic() >= self._deadline:
                    # Once per step: a second exception could arrive while the caller handles
                    # the first. (Workflow code that catches BaseException defeats the limit.)
                    self._deadline = None
                    self._fired = True
                    _set_async_exc(self._thread_id, StepTimeLimitExceeded)
