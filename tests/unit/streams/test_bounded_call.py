"""A call waited for at most its bound: its result, its error, or CallHung; and the next
call runs although the hung one still blocks its old worker."""

from __future__ import annotations

import threading

import pytest

from streams.bounded_call import CallHung, CallRunner


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
