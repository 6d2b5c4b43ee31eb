"""The live-instance cache: O(1) work per step on a hit, bounded size, and safe fallback to replay."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import overload

import engine as wf
from engine.core.history import ExecutionStarted, HistoryEvent, TaskCompleted, TimerCreated, WorkflowStatus
from engine.replay.executor import Executor, Registry
from tests.unit.engine.driver import START


class WatchedHistory(Sequence[HistoryEvent]):
    """A history that counts how many of its events the executor reads."""

    def __init__(self, events: list[HistoryEvent]) -> None:
        self.events = events
        self.reads = 0

    def __len__(self) -> int:
        return len(self.events)

    @overload
    def __getitem__(self, index: int) -> HistoryEvent: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[HistoryEvent]: ...

    def __getitem__(self, index: int | slice) -> HistoryEvent | Sequence[HistoryEvent]:
        self.reads += 1
        return self.events[index]

    def __iter__(self):
        self.reads += len(self.events)
        return iter(self.events)


def fan_out(ctx: wf.WorkflowContext, n: int):
    results = yield wf.when_all([ctx.call_activity("work", input=i) for i in range(n)])
    return sum(results)


def registry() -> Registry:
    reg = Registry()
    reg.register_workflow(fan_out)
    reg.register_activity(lambda ctx, i: i, name="work")
    return reg


def feed(executor: Executor, instance_id: str, n: int) -> tuple[WatchedHistory, list[int]]:
    """Run a fan-out of n, one result per step; return the history and the reads per step."""
    history = WatchedHistory([])

    def step(body):
        event = HistoryEvent(instance_id, "exec", len(history.events), START, body)
        before = history.reads
        result = executor.execute(instance_id, history, [event])
        reads.append(history.reads - before)
        history.events.append(event)
        for action in result.actions:
            history.events.append(HistoryEvent(instance_id, "exec", len(history.events), START, action))
        return result

    reads: list[int] = []
    step(ExecutionStarted("fan_out", str(n)))
    for i in range(n):
        result = step(TaskCompleted(i, str(i)))
    assert result.status is WorkflowStatus.COMPLETED
    assert result.output == str(sum(range(n)))
    return history, reads


def test_a_cached_step_reads_only_the_ends_of_the_history() -> None:
    _, reads = feed(Executor(registry()), "a", 200)
    assert max(reads) <= 3  # history[0] and history[-1], whatever the history's length


def test_without_the_cache_every_step_replays_everything() -> None:
    history, reads = feed(Executor(registry(), cache_size=0), "a", 50)
    assert reads[-1] >= len(history.events) - 2


def test_the_cache_is_bounded_least_recently_used_first() -> None:
    executor = Executor(registry(), cache_size=2)
    histories = {}
    for iid in ("a", "b", "c"):
        start = HistoryEvent(iid, "exec", 0, START, ExecutionStarted("fan_out", "2"))
        actions = executor.execute(iid, [], [start]).actions
        histories[iid] = [start, *(HistoryEvent(iid, "exec", 1 + k, START, a) for k, a in enumerate(actions))]
    assert executor.cached_instances == 2
    # "a" was evicted; its next step replays, decides correctly and pushes out "b".
    done = HistoryEvent("a", "exec", 3, START, TaskCompleted(0, "5"))
    assert executor.execute("a", histories["a"], [done]).actions == []
    assert executor.cached_instances == 2
    done2 = HistoryEvent("a", "exec", 4, START, TaskCompleted(1, "6"))
    result = executor.execute("a", [*histories["a"], done], [done2])
    assert result.output == "11"
    assert executor.cached_instances == 1  # a finished run leaves the cache; "c" stays
    more = HistoryEvent("c", "exec", 3, START, TaskCompleted(0, "1"))
    assert executor.execute("c", histories["c"], [more]).status is WorkflowStatus.RUNNING


def test_a_history_that_does_not_match_the_cached_run_is_replayed() -> None:
    def flow(ctx, _):
        first = yield ctx.call_activity("work", input=1)
        yield ctx.create_timer(timedelta(seconds=first))
        return first

    reg = Registry()
    reg.register_workflow(flow)
    reg.register_activity(lambda ctx, i: i, name="work")
    executor = Executor(reg)
    start = HistoryEvent("x", "exec", 0, START, ExecutionStarted("flow"))
    scheduled = executor.execute("x", [], [start]).actions
    history = [start, HistoryEvent("x", "exec", 1, START, scheduled[0])]
    done = HistoryEvent("x", "exec", 2, START, TaskCompleted(0, "3"))
    first_try = executor.execute("x", history, [done])
    # The caller failed to store that step and retries it: same history, same event.
    retry = executor.execute("x", history, [done])
    assert retry.actions == first_try.actions == [TimerCreated(1, START + timedelta(seconds=3))]
    assert executor.evict("x") is None and executor.cached_instances == 0


def test_the_cached_and_uncached_fan_outs_give_identical_histories() -> None:
    cached, _ = feed(Executor(registry()), "a", 30)
    replayed, _ = feed(Executor(registry(), cache_size=0), "a", 30)
    assert cached.events == replayed.events
