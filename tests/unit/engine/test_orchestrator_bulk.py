"""Bulk commands in the orchestrator: the chunks a command is applied in, and what it reads."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import engine as wf
from engine.core.bulk import PURGE, TERMINATE, BulkCommand
from engine.core.history import ExecutionStarted, ExecutionTerminated, PurgeRequested, WorkflowStatus
from engine.replay.registry import Registry
from engine.state.codec import decode_bulk, is_bulk
from streams.testing import Incoming
from tests.unit.engine.orchestrator_harness import OrchestratorHarness, proposed

registry = Registry()


@registry.workflow(name="b_done")
def b_done(ctx: wf.DaprWorkflowContext, value: object):
    return value
    yield  # a generator that ends at its first step


@registry.workflow(name="b_waits")
def b_waits(ctx: wf.DaprWorkflowContext, _: object):
    return (yield ctx.wait_for_external_event("go"))


@pytest.fixture
def harness(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[OrchestratorHarness]:
    monkeypatch.setattr("engine.orchestration.orchestrator.BULK_CHUNK", 2)
    driven = OrchestratorHarness(registry, tmp_path)
    yield driven
    driven.close()


def run_to_the_end(harness: OrchestratorHarness, command: BulkCommand) -> int:
    """Apply ``command`` and each continuation it sends itself; how many chunks it took."""
    chunks = 0
    pending: BulkCommand | None = command
    while pending is not None:
        chunks += 1
        turn = harness.driven.process(Incoming(pending, pending.command_id.encode(), None))
        harness._keep(turn)
        rest = [decode_bulk(e.value) for e in turn.emitted if is_bulk(e.value)]
        assert len(rest) <= 1
        pending = rest[0] if rest else None
    return chunks


def start(harness: OrchestratorHarness, workflow: str, *ids: str) -> None:
    harness.feed([proposed(i, ExecutionStarted(workflow, "1")) for i in ids])


def test_a_purge_reads_only_ended_instances_from_the_ended_index(harness: OrchestratorHarness) -> None:
    start(harness, "b_waits", *(f"run-{n}" for n in range(7)))
    start(harness, "b_done", "done-1", "done-2", "done-3")
    assert {harness.status(f"done-{n}").runtime_status for n in (1, 2, 3)} == {WorkflowStatus.COMPLETED}

    # Three ended instances in chunks of two: two chunks, whatever the seven running ones.
    chunks = run_to_the_end(harness, BulkCommand("c1", PURGE, (WorkflowStatus.COMPLETED, WorkflowStatus.FAILED)))

    assert chunks == 2
    purged = sorted(e.instance_id for e in harness.history if isinstance(e.event, PurgeRequested))
    assert purged == ["done-1", "done-2", "done-3"]
    assert {harness.status(f"run-{n}").runtime_status for n in range(7)} == {WorkflowStatus.RUNNING}


def test_a_terminate_walks_every_instance_and_applies_to_those_that_match(harness: OrchestratorHarness) -> None:
    start(harness, "b_waits", "a", "b", "c")
    start(harness, "b_done", "d")

    chunks = run_to_the_end(harness, BulkCommand("c2", TERMINATE, (WorkflowStatus.RUNNING,)))

    assert chunks == 3  # four instances in chunks of two, and the empty chunk that ends it
    terminated = sorted(e.instance_id for e in harness.history if isinstance(e.event, ExecutionTerminated))
    assert terminated == ["a", "b", "c"]
