"""A call waited for at most its bound: its result, its error, or CallHung; the next call
runs although the hung one still blocks its old worker; and a client whose call hung is
kept, untouched, until that call returns, and only then closed."""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable

import pytest

from streams.bounded_call import CallHung, CallRunner, abandoned_clients, close_when_returned


def test_a_call_in_time_gives_its_result_or_its_error() -> None:
    runner = CallRunner("test")
    assert runner.run("add", 5.0, lambda a, b: a + b, 2, 3) == 5
    with pytest.raises(ZeroDivisionError):
        runner.run("divide", 5.0, lambda: 1 / 0)
    runner.close()


@pytest.mark.timeout(10)
def test_a_hung_call_is_given_up_on_and_the_next_call_gets_a_fresh_worker() -> None:
    runner = CallRunner("test")
    released = threading.Event()
    with pytest.raises(CallHung, match="stuck still blocked 0 s after it was called") as raised:
        runner.run("stuck", 0.1, released.wait)
    assert raised.value.what == "stuck"
    assert runner.run("next", 5.0, lambda: "ran") == "ran"  # the old worker is still inside released.wait
    workers = [t for t in threading.enumerate() if t.name == "test-calls"]
    assert len(workers) == 2
    released.set()
    runner.close()
    for worker in workers:
        worker.join(5.0)
    assert not any(worker.is_alive() for worker in workers)  # both end: the hung one once its call returns


class BlockingClient:
    """A client whose ``call`` blocks until released; records what was asked of it."""

    def __init__(self) -> None:
        self.released = threading.Event()
        self.asked: list[str] = []

    def call(self) -> str:
        self.asked.append("call")
        self.released.wait()
        return "returned"

    def close(self) -> None:
        self.asked.append("close")


def wait_for(condition: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + 5.0
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)
    return condition()


@pytest.mark.timeout(10)
def test_a_client_whose_call_hung_is_closed_only_once_the_call_returns() -> None:
    runner = CallRunner("test")
    client = BlockingClient()
    with pytest.raises(CallHung) as raised:
        runner.run("call", 0.1, client.call)
    before = abandoned_clients()
    close_when_returned(raised.value, "the blocking client", client.close)
    closing = weakref.ref(client)
    del client
    time.sleep(0.2)
    stuck = closing()
    assert stuck is not None and stuck.asked == ["call"]  # kept referenced, not closed under its call
    assert abandoned_clients() == before + 1
    stuck.released.set()
    assert wait_for(lambda: stuck.asked == ["call", "close"])
    assert wait_for(lambda: abandoned_clients() == before)
    runner.close()


def test_a_client_whose_call_returned_meanwhile_is_closed_at_once() -> None:
    runner = CallRunner("test")
    client = BlockingClient()
    with pytest.raises(CallHung) as raised:
        runner.run("call", 0.05, client.call)
    client.released.set()
    assert wait_for(raised.value.call.done)
    close_when_returned(raised.value, "the blocking client", client.close)
    assert client.asked == ["call", "close"]
    runner.close()
