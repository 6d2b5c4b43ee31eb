"""Blocking client calls that the caller waits for only so long.

A few librdkafka calls can block past the timeout they were given, or have none, once a
broker is lost (librdkafka issues 3013, 4420, 5456, 5511): ``send_offsets_to_transaction``
waiting for a group coordinator that never answers, ``begin_transaction`` behind a fatal
error, a ``seek`` waiting for its partition's fetcher. A ``CallRunner`` runs each call on
a worker thread of its own and waits at most the call's bound. A call still running then
is abandoned: its thread stays inside it (nothing can interrupt a C call) and ends once
the call returns, if ever; the next call gets a fresh worker. The caller gets
``CallHung`` and decides what the stuck client means (replace it, restart its processor).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, TypeVar

log = logging.getLogger("streams.bounded_call")
T = TypeVar("T")


class CallHung(Exception):
    """A client call was still blocked when its bound ran out; the client it was made on
    must not be used again (a purge or close would block on the same lock)."""

    def __init__(self, what: str, waited_s: float) -> None:
        super().__init__(f"{what} still blocked {waited_s:.0f} s after it was called")
        self.what = what
        self.waited_s = waited_s


_Job = tuple[Future[Any], Callable[..., Any], tuple[Any, ...]]


class CallRunner:
    """Runs calls one at a time on a daemon worker thread, each waited for at most its bound.

    A persistent worker, not a thread per call: handing a call over costs tens of
    microseconds, starting a thread ten times that on a busy machine, and the transactional
    calls run several times per transaction. Use from one thread at a time.

    Args:
        name: Names the worker threads (a stack dump shows whose calls they run).
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._jobs: queue.SimpleQueue[_Job | None] | None = None

    def run(self, what: str, bound_s: float, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)``'s result, or what it raised.

        Raises:
            CallHung: ``fn`` had not returned ``bound_s`` seconds after it was handed over.
        """
        jobs = self._jobs
        if jobs is None:
            jobs = self._jobs = queue.SimpleQueue()
            threading.Thread(target=_serve, args=(jobs,), name=f"{self.name}-calls", daemon=True).start()
        future: Future[T] = Future()
        jobs.put((future, fn, args))
        try:
            return future.result(bound_s)
        except FutureTimeout:
            # The worker stays inside the call: let it end once the call returns.
            jobs.put(None)
            self._jobs = None
            log.warning("%s of %s still blocked %.0f s after it was called; giving up on it", what, self.name,
                        bound_s)
            raise CallHung(what, bound_s) from None

    def close(self) -> None:
        """Let the worker end (at once when idle, else after its call returns)."""
        if self._jobs is not None:
            self._jobs.put(None)
            self._jobs = None


def _serve(jobs: queue.SimpleQueue[_Job | None]) -> None:
    while True:
        job = jobs.get()
        if job is None:
            return
        future, fn, args = job
        try:
            future.set_result(fn(*args))
        except BaseException as err:  # handed to the caller, who decides
            future.set_exception(err)
