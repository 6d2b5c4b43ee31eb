"""Blocking client calls that the caller waits for only so long.

A few librdkafka calls can block past the timeout they were given, or have none, once a
broker is lost (librdkafka issues 3013, 4420, 5456, 5511): ``send_offsets_to_transaction``
waiting for a group coordinator that never answers, ``begin_transaction`` behind a fatal
error, a ``seek`` waiting for its partition's fetcher. A ``CallRunner`` runs each call on
a worker thread of its own and waits at most the call's bound. A call still running then
is abandoned: its thread stays inside it (nothing can interrupt a C call) and ends once
the call returns, if ever; the next call gets a fresh worker. The caller gets
``CallHung`` and decides what the stuck client means (replace it, restart its processor).

A client with a call still inside it is never purged, flushed or closed by anyone else:
librdkafka's blocking calls wait on request objects that destroying the handle frees under
them (an assertion that kills the process). ``close_when_returned`` keeps such a client
referenced, so the collector cannot destroy it either, and closes it on the stuck call's
own worker once that call returns.
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

    def __init__(self, what: str, waited_s: float, call: Future[Any] | None = None) -> None:
        super().__init__(f"{what} still blocked {waited_s:.0f} s after it was called")
        self.what = what
        self.waited_s = waited_s
        # Set by the worker once the stuck call returns (see ``close_when_returned``).
        self.call: Future[Any] = call if call is not None else Future()


# Stuck calls whose client is to be closed once they return: referenced here so the client
# outlives the call (a collected client is destroyed, under the call, on the collector's thread).
_abandoned: set[Future[Any]] = set()
_abandoned_lock = threading.Lock()


def close_when_returned(hung: CallHung, client: str, close: Callable[[], object]) -> None:
    """Close the client whose call hung once that call returns, never before.

    ``close`` (which references the client) is kept until then and runs on the stuck call's
    worker thread; what it raises is logged.

    Args:
        hung: What the client's call raised.
        client: Names the client in the log.
        close: Closes the client.
    """
    def closed_after_return(call: Future[Any]) -> None:
        try:
            close()
            log.info("closed %s after its %s returned", client, hung.what)
        except Exception as err:  # closing what is left of a broken client: nothing to act on
            log.info("closing %s after its %s returned: %s", client, hung.what, err)
        finally:
            with _abandoned_lock:
                _abandoned.discard(call)

    with _abandoned_lock:
        _abandoned.add(hung.call)
    hung.call.add_done_callback(closed_after_return)


def abandoned_clients() -> int:
    """How many clients wait for a stuck call to return before they are closed."""
    with _abandoned_lock:
        return len(_abandoned)


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
            raise CallHung(what, bound_s, future) from None

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
