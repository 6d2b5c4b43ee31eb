"""Calls to other applications (``app_id=``) in the replay engine and the orchestrator's routing.

The replay engine records the target application on the step and checks it on replay; the
orchestrator sends the step to that application's topics with the way back to its own inbox.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import engine as wf
from engine.core.history import (
    ChildWorkflowCompleted,
    ChildWorkflowFailed,
    ChildWorkflowScheduled,
    ExecutionStarted,
    ExecutionTerminated,
    FailureDetails,
    HistoryEvent,
    ParentInstance,
    TaskCompleted,
    TaskFailed,
    TaskScheduled,
    WorkflowStatus,
)
from engine.orchestration.app_topics import AppTopics
from engine.orchestration.decisions import other_app
from engine.replay.executor import Executor
from engine.replay.propagation import PropagationScope
from engine.replay.registry import Registry
from engine.state.codec import decode_event, decode_task
from engine.state.config import Settings
from tests.unit.engine.orchestrator_harness import OrchestratorHarness

WHEN = datetime(2024, 1, 1, tzinfo=UTC)


def caller(ctx, value):
    total = yield ctx.call_activity("double", input=value, app_id="app3")
    child = yield ctx.call_child_workflow("kid", input=total, instance_id="kid-1", app_id="app2")
    return child


def registry(fn=caller, app_id: str = "") -> Registry:
    reg = Registry()
    reg.app_id = app_id
    reg.register_workflow(fn, name="flow")
    return reg


def event(seq: int, body) -> HistoryEvent:
    return HistoryEvent("i-1", "e-1", seq, WHEN, body)


def test_the_step_carries_the_target_application() -> None:
    result = Executor(registry()).execute("i-1", [], [event(0, ExecutionStarted("flow", "2"))])
    assert result.actions == [TaskScheduled(0, "double", "2", None, "app3")]


def test_a_child_step_carries_its_application_and_replay_matches_it() -> None:
    history = [event(0, ExecutionStarted("flow", "2")), event(1, TaskScheduled(0, "double", "2", None, "app3"))]
    result = Executor(registry()).execute("i-1", history, [event(2, TaskCompleted(0, "4"))])
    assert result.actions == [ChildWorkflowScheduled(1, "kid", "kid-1", "4", None, "app2")]
    # A fresh executor replays the whole history, the application included, and finishes.
    history += [event(2, TaskCompleted(0, "4")), event(3, ChildWorkflowScheduled(1, "kid", "kid-1", "4", None, "app2"))]
    done = Executor(registry()).execute("i-1", history, [event(4, ChildWorkflowCompleted(1, '"ok"'))])
    assert done.status is WorkflowStatus.COMPLETED and done.output == '"ok"'


def test_history_that_called_another_application_does_not_replay_against_a_local_call() -> None:
    def local(ctx, value):
        return (yield ctx.call_activity("double", input=value))

    history = [event(0, ExecutionStarted("flow", "2")), event(1, TaskScheduled(0, "double", "2", None, "app3"))]
    result = Executor(registry(local)).execute("i-1", history, [event(2, TaskCompleted(0, "4"))])
    assert result.status is WorkflowStatus.FAILED and result.failure is not None
    assert result.failure.type == "NonDeterminismError"
    assert "activity 'double' of application 'app3'" in result.failure.message


def test_a_failure_from_another_application_is_retried_by_the_callers_policy() -> None:
    policy = wf.RetryPolicy(first_retry_interval=timedelta(seconds=1), max_number_of_attempts=2)

    def retried(ctx, value):
        return (yield ctx.call_activity("missing", input=value, app_id="app3", retry_policy=policy))

    ex = Executor(registry(retried))
    first = ex.execute("i-1", [], [event(0, ExecutionStarted("flow", "2"))])
    assert first.actions == [TaskScheduled(0, "missing", "2", None, "app3")]
    failure = FailureDetails("ActivityNotRegistered", "activity 'missing' is not registered in application 'app3'")
    history = [event(0, ExecutionStarted("flow", "2")), event(1, first.actions[0])]
    retry = ex.execute("i-1", history, [event(2, TaskFailed(0, failure))])
    assert [type(a).__name__ for a in retry.actions] == ["TimerCreated"]


def test_an_invalid_application_id_is_refused_where_the_call_is_made() -> None:
    def bad(ctx, value):
        return (yield ctx.call_activity("double", input=value, app_id="no.dots"))

    result = Executor(registry(bad)).execute("i-1", [], [event(0, ExecutionStarted("flow", "2"))])
    assert result.status is WorkflowStatus.FAILED and result.failure is not None
    assert "invalid application ID 'no.dots'" in result.failure.message


def test_propagated_history_names_the_callers_application() -> None:
    def propagating(ctx, value):
        return (yield ctx.call_activity("double", input=value, app_id="app3",
                                        propagation=PropagationScope.OWN_HISTORY))

    result = Executor(registry(propagating, app_id="app1")).execute("i-1", [], [event(0, ExecutionStarted("flow"))])
    (step,) = result.actions
    assert wf.PropagatedHistory.from_json(step.propagated_history).get_app_ids() == ["app1"]


@pytest.mark.parametrize("own,asked,target", [
    ("", None, None), ("", "", None), ("app1", "app1", None), ("app1", None, None),
    ("", "app3", "app3"), ("app1", "", ""), ("app1", "app2", "app2"),
])
def test_other_app(own: str, asked: str | None, target: str | None) -> None:
    assert other_app(own, asked) == target


def test_application_topics_nest_under_the_prefix_and_the_default_keeps_its_names() -> None:
    assert Settings(topic_prefix="kwf").topic("inbox") == "kwf.inbox"
    app1 = Settings(topic_prefix="kwf", app_id="app1")
    assert app1.topic("activities") == "kwf.app1.activities"
    assert app1.app_topic("", "inbox") == "kwf.inbox" and app1.app_topic("app3", "inbox") == "kwf.app3.inbox"


def test_kwf_app_id_is_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KWF_APP_ID", "app.1")
    with pytest.raises(ValueError, match="invalid application ID"):
        Settings.from_env()


# -- the orchestrator's routing, on one partition without Kafka -------------------------


class Harness(OrchestratorHarness):
    """An orchestrator of application ``app1``; other applications' inboxes have 3 partitions."""

    def __init__(self, reg: Registry, folder: Path) -> None:
        self.ensured: list[str] = []

        def ensure(settings: Settings) -> int:
            self.ensured.append(settings.app_id)
            return 3

        super().__init__(reg, folder, app_id="app1", app_topics=lambda settings: AppTopics(settings, ensure))


def test_the_orchestrator_sends_a_task_to_the_target_applications_queue_with_the_way_back(tmp_path: Path) -> None:
    harness = Harness(registry(), tmp_path)
    try:
        emitted = harness.feed([HistoryEvent("i-1", "", -1, WHEN, ExecutionStarted("flow", "2"))])
        (task_record,) = [e for e in emitted if e.topic == "kwf.app3.activities"]
        task = decode_task(task_record.value)
        assert (task.name, task.reply_to) == ("double", "kwf.app1.inbox")
        assert harness.ensured == ["app3"]
        assert not [e for e in emitted if e.topic.endswith(".activities") and e.topic != "kwf.app3.activities"]
    finally:
        harness.close()


def test_a_cross_app_child_start_names_its_parents_application_and_its_end_goes_back(tmp_path: Path) -> None:
    harness = Harness(registry(), tmp_path)
    try:
        harness.feed([HistoryEvent("i-1", "", -1, WHEN, ExecutionStarted("flow", "2"))])
        execution = harness.history[0].execution_id
        emitted = harness.feed([HistoryEvent("i-1", execution, -1, WHEN, TaskCompleted(0, "4"))])
        (start_record,) = [e for e in emitted if e.topic == "kwf.app2.inbox"]
        start = decode_event(start_record.value)
        assert start.instance_id == "kid-1" and start_record.partition is not None
        assert start.event == ExecutionStarted("kid", "4", ParentInstance("i-1", execution, 1, "flow", "app1"))

        # The child's runtime (app2) sends its end back to app1's inbox: here app1 runs a
        # child of the default application and answers it the same way.
        kid = Registry()
        kid.register_workflow(lambda ctx, value: value * 10, name="kid")
        child_side = Harness(kid, tmp_path / "child")
        try:
            parent = ParentInstance("p-0", "pe", 7, "root", "")
            out = child_side.feed([HistoryEvent("kid-0", "", -1, WHEN, ExecutionStarted("kid", "3", parent))])
            (notice,) = [e for e in out if e.topic == "kwf.inbox"]
            assert decode_event(notice.value).event == ChildWorkflowCompleted(7, "30")
            assert child_side.ensured == [""]
        finally:
            child_side.close()
    finally:
        harness.close()


def test_a_same_app_call_stays_on_this_applications_topics(tmp_path: Path) -> None:
    def local(ctx, value):
        return (yield ctx.call_activity("double", input=value, app_id="app1"))

    harness = Harness(registry(local), tmp_path)
    try:
        emitted = harness.feed([HistoryEvent("i-1", "", -1, WHEN, ExecutionStarted("flow", "2"))])
        (task_record,) = [e for e in emitted if e.topic.endswith(".activities")]
        assert task_record.topic == "kwf.app1.activities" and decode_task(task_record.value).reply_to is None
        assert harness.ensured == []
    finally:
        harness.close()



def test_terminating_a_parent_terminates_its_child_in_the_other_application(tmp_path: Path) -> None:
    harness = Harness(registry(), tmp_path)
    try:
        harness.feed([HistoryEvent("i-1", "", -1, WHEN, ExecutionStarted("flow", "2"))])
        execution = harness.history[0].execution_id
        harness.feed([HistoryEvent("i-1", execution, -1, WHEN, TaskCompleted(0, "4"))])
        emitted = harness.feed([HistoryEvent("i-1", "", -1, WHEN, ExecutionTerminated("stop"))])
        (stop,) = [decode_event(e.value) for e in emitted if e.topic == "kwf.app2.inbox"]
        assert stop.instance_id == "kid-1" and isinstance(stop.event, ExecutionTerminated)
    finally:
        harness.close()


def test_a_runtime_joins_the_application_it_is_given() -> None:
    runtime = wf.WorkflowRuntime(settings=Settings(topic_prefix="kwf"), app_id="app2")
    assert runtime.settings.topic("inbox") == "kwf.app2.inbox"
    runtime.set_app_id("")
    assert runtime.settings.topic("inbox") == "kwf.inbox"
    with pytest.raises(ValueError, match="invalid application ID"):
        wf.WorkflowRuntime(settings=Settings(), app_id="a/b")


def test_an_applications_consumer_groups_and_transactional_ids_are_its_own(tmp_path: Path) -> None:
    from engine.edges.worker import ActivityWorker
    from engine.orchestration.orchestrator import Orchestrator

    app3 = Settings(topic_prefix="kwf", app_id="app3", state_dir=tmp_path, process_id="p1")
    assert ActivityWorker(app3, Registry()).consumer_settings()["group.id"] == "kwf.app3.workers"
    config = Orchestrator(app3, Registry(), partitions=1).processor_config()
    assert (config.group_id, config.input_topic, config.changelog_topic) == (
        "kwf.app3.orchestrator", "kwf.app3.inbox", "kwf.app3.history")
    default = Orchestrator(replace(app3, app_id=""), Registry(), partitions=1).processor_config()
    # Same process ID, other application: another transactional ID, so neither fences the other.
    assert default.group_id == "kwf.orchestrator" and default.transactional_id != config.transactional_id


def test_a_child_the_target_application_lacks_fails_back_to_the_parent_naming_it(tmp_path: Path) -> None:
    lacking = Registry()
    lacking.app_id = "app1"
    harness = Harness(lacking, tmp_path)
    try:
        parent = ParentInstance("p-0", "pe", 7, "root", "")
        out = harness.feed([HistoryEvent("kid-0", "", -1, WHEN, ExecutionStarted("nobody", "3", parent))])
        (notice,) = [decode_event(e.value).event for e in out if e.topic == "kwf.inbox"]
        assert isinstance(notice, ChildWorkflowFailed) and notice.task_id == 7
        assert notice.failure.type == "WorkflowNotRegistered"
        assert "workflow 'nobody' is not registered in application 'app1'" in notice.failure.message
    finally:
        harness.close()
