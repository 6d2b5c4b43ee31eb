"""Property: the cached incremental path and full replay make identical histories and outputs.

Workflows are drawn from a small grammar of steps; the order in which activities finish,
timers fire, children start and events arrive is drawn too. The same draw is run with the
live-instance cache on, off, and thrashing (size 1), and every instance must end the same.
"""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import engine as wf
from engine.core.history import WorkflowStatus
from engine.replay.executor import Registry
from tests.unit.engine.driver import Driver

RETRY = wf.RetryPolicy(first_retry_interval=timedelta(seconds=1), max_number_of_attempts=3, backoff_coefficient=2)


def spec_workflow(ctx: wf.WorkflowContext, steps: list[list[Any]]):
    trace: list[Any] = []
    for step in steps:
        kind = step[0]
        if kind == "act":
            trace.append((yield ctx.call_activity(inc, input=step[1])))
        elif kind == "timer":
            yield ctx.create_timer(timedelta(seconds=step[1]))
            trace.append(["timer", ctx.current_utc_datetime.isoformat()])
        elif kind == "fan":
            trace.append((yield wf.when_all([ctx.call_activity(inc, input=i) for i in range(step[1])])))
        elif kind == "race":
            work = ctx.call_activity(inc, input=step[1])
            timer = ctx.create_timer(timedelta(seconds=step[2]))
            winner = yield wf.when_any([work, timer])
            trace.append(["race", "timer" if winner == timer else winner.get_result()])
        elif kind == "event":
            trace.append((yield ctx.wait_for_external_event(step[1])))
        elif kind == "event_or_timeout":
            try:
                trace.append((yield ctx.wait_for_external_event(step[1], timeout=timedelta(seconds=step[2]))))
            except TimeoutError:
                trace.append("timed out")
        elif kind == "child":
            trace.append((yield ctx.call_child_workflow(child_workflow, input=step[1])))
        elif kind == "fail":
            try:
                yield ctx.call_activity(boom, input=step[1])
            except wf.TaskFailedError as err:
                trace.append(["caught", err.details.type])
        elif kind == "flaky":
            trace.append((yield ctx.call_activity(flaky, input=step[1], retry_policy=RETRY)))
        elif kind == "status":
            ctx.set_custom_status({"at": len(trace)})
        elif kind == "forget":
            ctx.call_activity(inc, input=step[1])
    return trace


def child_workflow(ctx: wf.WorkflowContext, n: int):
    first = yield ctx.call_activity(inc, input=n)
    return first * 10


def inc(ctx: wf.WorkflowActivityContext, n: int) -> int:
    return n + 1


def boom(ctx: wf.WorkflowActivityContext, n: int) -> int:
    raise ValueError(f"boom {n}")


def flaky(ctx: wf.WorkflowActivityContext, n: int) -> int:
    # Deterministic flakiness: of two attempts in a row (task IDs n and n + 2, the retry
    # timer between them), exactly one fails.
    if (ctx.task_id // 2) % 2 == 0:
        raise ConnectionError("flaky")
    return n


def registry() -> Registry:
    reg = Registry()
    reg.register_workflow(spec_workflow)
    reg.register_workflow(child_workflow)
    for fn in (inc, boom, flaky):
        reg.register_activity(fn)
    return reg


EVENT_NAMES = ["go", "Go", "GO", "stop"]

steps = st.one_of(
    st.tuples(st.just("act"), st.integers(0, 9)),
    st.tuples(st.just("timer"), st.integers(1, 30)),
    st.tuples(st.just("fan"), st.integers(0, 5)),
    st.tuples(st.just("race"), st.integers(0, 9), st.integers(1, 30)),
    st.tuples(st.just("event"), st.sampled_from(EVENT_NAMES)),
    st.tuples(st.just("event_or_timeout"), st.sampled_from(EVENT_NAMES), st.integers(1, 30)),
    st.tuples(st.just("child"), st.integers(0, 9)),
    st.tuples(st.just("fail"), st.integers(0, 9)),
    st.tuples(st.just("flaky"), st.integers(0, 9)),
    st.tuples(st.just("status")),
    st.tuples(st.just("forget"), st.integers(0, 9)),
)


def play(spec: list[Any], raised: list[tuple[str, int]], seed: int, cache_size: int) -> Driver:
    driver = Driver(registry(), cache_size=cache_size, rng=random.Random(seed), tick=timedelta(seconds=1))
    driver.start(spec_workflow, spec)
    for name, data in raised:
        driver.queue_event("wf-1", name, data)
    driver.run()
    return driver


def outcome(driver: Driver) -> dict[str, Any]:
    return {
        iid: (inst.status, inst.output, inst.failure, inst.custom_status, inst.history, inst.past_executions)
        for iid, inst in driver.instances.items()
    }


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    spec=st.lists(steps, max_size=7).map(lambda items: [list(item) for item in items]),
    seed=st.integers(0, 2**32 - 1),
    extra_events=st.lists(st.sampled_from(EVENT_NAMES), max_size=3),
)
def test_cached_and_replayed_runs_are_identical(spec: list[Any], seed: int, extra_events: list[str]) -> None:
    # One event for every wait so each plain wait can finish, plus some that may go unclaimed.
    waits = [step[1] for step in spec if step[0] in ("event", "event_or_timeout")]
    raised = [(name, i) for i, name in enumerate(waits + extra_events)]

    cached = play(spec, raised, seed, cache_size=10_000)
    replayed = play(spec, raised, seed, cache_size=0)
    thrashing = play(spec, raised, seed, cache_size=1)

    main = cached.instance()
    assert main.status is WorkflowStatus.COMPLETED, main.failure
    assert len(main.result) == sum(1 for step in spec if step[0] not in ("status", "forget"))
    assert outcome(cached) == outcome(replayed)
    assert outcome(cached) == outcome(thrashing)
    assert cached.activity_runs == replayed.activity_runs == thrashing.activity_runs
