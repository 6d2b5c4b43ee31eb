"""``chaos``: many workflows of mixed patterns while runtime processes are SIGKILLed at random.

Orchestrator and worker processes (``kwf run --role orchestrator|worker``, two of each by
default) are killed with SIGKILL and restarted at seeded random moments while instances
start, wait on timers, retry failing activities, fan out, continue as new and receive
external events raised from here. At the end every instance must be COMPLETED with the
output its input determines; every history must be free of duplicated sequence numbers,
second terminal events and second results of one task; every activity must have run.

One JSON line on stdout: ``instances``, ``lost`` (not ended), ``wrong`` (ended otherwise
than expected), ``duplicates`` (history anomalies), ``kills``, ``never_ran`` (activities
with no recorded run), and counts and timings besides. The integration test
``tests/integration/reliability/test_chaos.py`` runs a bounded version of the same code.

    python -m tests.integration.reliability.chaos --minutes N [--instances 500] [--seed 1]

This module is also the app the runtime processes host (``--app tests.integration.reliability.chaos:runtime``).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from confluent_kafka.admin import AdminClient

import engine as wf
from engine.core.history import ExecutionCompleted, TaskCompleted, TaskFailed
from engine.state.codec import decode_event
from engine.state.config import Settings
from engine.state.topics import HISTORY, ensure_workflow_topics
from engine.testing import READY_TIMEOUT_S, REPO, RuntimeProcess
from streams.broker import fresh_local_broker
from streams.reader import read_to_end
from streams.topics import delete_topics_with_prefix

APP = "tests.integration.reliability.chaos:runtime"
RUNS_ENV = "KWF_CHAOS_RUNS_DIR"
WORKLOAD = "chaos"
KINDS = ("chain", "fan_out", "timer", "continue_as_new", "event")
CHAIN_LENGTH = 3
FAN_OUT = 20
CONTINUATIONS = 3
# Reading the whole history topic back: a minute means a transaction is stuck open.
SCAN_TIMEOUT_S = 90.0

# -- the app the runtime processes host ----------------------------------------------------

runtime = wf.WorkflowRuntime()


def record_run(key: str) -> None:
    """Append ``run KEY PID TIME`` to this process's file; O_APPEND keeps lines whole."""
    folder = os.environ.get(RUNS_ENV)
    if not folder:
        return
    line = f"run {key} {os.getpid()} {time.time():.3f}\n".encode()
    fd = os.open(Path(folder) / f"{os.getpid()}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def first_attempt(key: str) -> bool:
    """True for the first caller with ``key`` across all processes (an exclusive file create)."""
    folder = os.environ.get(RUNS_ENV)
    if not folder:
        return False
    try:
        os.close(os.open(Path(folder) / f"failed-{key.replace('/', '_')}", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


@runtime.activity(name="chaos_add")
def add(ctx: Any, item: dict) -> int:
    record_run(item["key"])
    time.sleep(0.01)  # a little work, so kills catch some activities mid-run
    return int(item["value"])


@runtime.activity(name="chaos_flaky")
def flaky(ctx: Any, item: dict) -> int:
    """Fails its first attempt for each key on purpose; the retry policy takes it from there."""
    record_run(item["key"])
    if first_attempt(item["key"]):
        raise RuntimeError(f"first attempt of {item['key']} fails on purpose")
    return int(item["value"]) + 1


RETRY = wf.RetryPolicy(first_retry_interval=timedelta(milliseconds=300), max_number_of_attempts=6)


@runtime.workflow(name="chaos_chain")
def chain(ctx: wf.DaprWorkflowContext, length: int):
    value = 0
    for step in range(length):
        value = yield ctx.call_activity(flaky, input={"key": f"{ctx.instance_id}/{step}", "value": value},
                                        retry_policy=RETRY)
    return value


@runtime.workflow(name="chaos_fan_out")
def fan_out(ctx: wf.DaprWorkflowContext, count: int):
    results = yield wf.when_all([ctx.call_activity(add, input={"key": f"{ctx.instance_id}/{i}", "value": i})
                                 for i in range(count)])
    return sum(results)


@runtime.workflow(name="chaos_timer")
def timer(ctx: wf.DaprWorkflowContext, seconds: float):
    yield ctx.create_timer(timedelta(seconds=seconds))
    value = yield ctx.call_activity(add, input={"key": f"{ctx.instance_id}/0", "value": 7})
    return value


@runtime.workflow(name="chaos_continue_as_new")
def continue_as_new(ctx: wf.DaprWorkflowContext, state: dict):
    value = yield ctx.call_activity(add, input={"key": f"{ctx.instance_id}/{state['round']}",
                                                "value": state["round"] + 1})
    total = state["total"] + value
    if state["round"] + 1 < state["rounds"]:
        ctx.continue_as_new({**state, "round": state["round"] + 1, "total": total})
        return None
    return total


@runtime.workflow(name="chaos_event")
def event(ctx: wf.DaprWorkflowContext, _: Any):
    data = yield ctx.wait_for_external_event("go")
    value = yield ctx.call_activity(add, input={"key": f"{ctx.instance_id}/0", "value": data["value"]})
    return value


# -- the plan: what each instance is and what it must end with ------------------------------


@dataclass
class Planned:
    """One instance: how it starts, what it must return, which activity keys it runs."""

    instance_id: str
    workflow: str
    input: Any
    expected: Any
    keys: list[str]
    start_at: float  # seconds into the run
    event_value: int | None = None
    raise_after: float = 0.0  # seconds after it is seen running
    started: bool = False
    raised: bool = False
    seen_running_at: float | None = None


def plan(count: int, window_s: float, rng: random.Random) -> list[Planned]:
    """``count`` instances of the five kinds in turn, starts spread over ``window_s``."""
    planned = []
    for i in range(count):
        kind = KINDS[i % len(KINDS)]
        instance_id = f"c{i:04d}-{kind}"
        start_at = rng.uniform(0, window_s)
        if kind == "chain":
            item = Planned(instance_id, "chaos_chain", CHAIN_LENGTH, CHAIN_LENGTH,
                           [f"{instance_id}/{s}" for s in range(CHAIN_LENGTH)], start_at)
        elif kind == "fan_out":
            item = Planned(instance_id, "chaos_fan_out", FAN_OUT, sum(range(FAN_OUT)),
                           [f"{instance_id}/{s}" for s in range(FAN_OUT)], start_at)
        elif kind == "timer":
            item = Planned(instance_id, "chaos_timer", round(rng.uniform(1.0, 6.0), 2), 7, [f"{instance_id}/0"],
                           start_at)
        elif kind == "continue_as_new":
            item = Planned(instance_id, "chaos_continue_as_new", {"round": 0, "rounds": CONTINUATIONS, "total": 0},
                           sum(range(1, CONTINUATIONS + 1)), [f"{instance_id}/{r}" for r in range(CONTINUATIONS)],
                           start_at)
        else:
            value = rng.randint(1, 1_000_000)
            item = Planned(instance_id, "chaos_event", None, value, [f"{instance_id}/0"], start_at,
                           event_value=value, raise_after=rng.uniform(0.0, 5.0))
        planned.append(item)
    return sorted(planned, key=lambda p: p.start_at)


# -- runtime processes ---------------------------------------------------------------------


def chaos_process(settings: Settings, name: str, role: str, folder: Path, runs_dir: Path) -> RuntimeProcess:
    """One ``kwf run --role ROLE`` of this module's app; a restart is the same process."""
    return RuntimeProcess(settings, f"{settings.topic_prefix}-{name}", folder, APP, role, {RUNS_ENV: str(runs_dir)})


def wait_ready(processes: list[RuntimeProcess]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    for process in processes:
        process.wait_ready(max(0.0, deadline - time.monotonic()))


# -- checking the outcome ------------------------------------------------------------------


def scan_history(settings: Settings, timeout: float = SCAN_TIMEOUT_S) -> dict[str, Any]:
    """Read the whole history topic once; count duplicated sequences, terminals and results.

    Returns ``{"events": n, "duplicates": n, "examples": [...]}``.
    """
    sequences: dict[tuple[str, str], Counter[int]] = defaultdict(Counter)
    terminals: Counter[tuple[str, str]] = Counter()
    results: Counter[tuple[str, str, int]] = Counter()
    events = 0
    for message in read_to_end(settings.client(), settings.topic(HISTORY), timeout=timeout):
        if message.value() is None:
            continue  # a tombstone of a superseded execution
        record = decode_event(message.value())
        events += 1
        execution = (record.instance_id, record.execution_id)
        sequences[execution][record.sequence] += 1
        if isinstance(record.event, ExecutionCompleted):
            terminals[execution] += 1
        elif isinstance(record.event, TaskCompleted | TaskFailed):
            results[(*execution, record.event.task_id)] += 1
    examples = []
    duplicates = 0
    for execution, counts in sequences.items():
        for sequence, n in counts.items():
            if n > 1:
                duplicates += n - 1
                examples.append(f"{execution[0]} sequence {sequence} x{n}")
    for execution, n in terminals.items():
        if n > 1:
            duplicates += n - 1
            examples.append(f"{execution[0]}: {n} terminal events")
    for key, n in results.items():
        if n > 1:
            duplicates += n - 1
            examples.append(f"{key[0]}: task {key[2]} has {n} results")
    return {"events": events, "duplicates": duplicates, "examples": examples[:10]}


def read_runs(runs_dir: Path) -> Counter[str]:
    """How many times each activity key ran, over every process's run file."""
    runs: Counter[str] = Counter()
    for path in runs_dir.glob("*.log"):
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) == 4 and parts[0] == "run":
                runs[parts[1]] += 1
    return runs


# -- the run -------------------------------------------------------------------------------


@dataclass
class ChaosConfig:
    """How big and how long one chaos run is."""

    instances: int = 500
    chaos_s: float = 120.0  # processes are killed during this window
    start_share: float = 0.7  # instances start during this share of the window
    settle_s: float = 240.0  # after the window, the longest wait for every instance to end
    orchestrators: int = 2
    workers: int = 2
    partitions: int = 8
    kill_every_s: tuple[float, float] = (3.0, 8.0)  # pause between kills, uniform
    down_s: tuple[float, float] = (0.5, 3.0)  # how long a killed process stays down
    seed: int = 1


@dataclass
class ChaosRun:
    """The state of one run while it goes."""

    config: ChaosConfig
    settings: Settings
    folder: Path
    processes: list[RuntimeProcess] = field(default_factory=list)
    kills: int = 0
    kill_log: list[str] = field(default_factory=list)


def run_chaos(bootstrap: str, config: ChaosConfig, folder: Path | None = None,
              log: Any = None) -> dict[str, Any]:
    """Run one chaos experiment against ``bootstrap``; return the summary (see the module docstring)."""
    say = log or (lambda message: print(message, file=sys.stderr, flush=True))
    own_folder = folder is None
    folder = Path(tempfile.mkdtemp(prefix="kwf-chaos-")) if folder is None else folder
    runs_dir = folder / "runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(config.seed)
    settings = Settings(bootstrap_servers=bootstrap, topic_prefix=f"chaos-{uuid.uuid4().hex[:8]}",
                        partitions=config.partitions, state_dir=folder / "client-state", process_id="chaos-driver")
    ensure_workflow_topics(settings)
    run = ChaosRun(config, settings, folder)
    run.processes = [chaos_process(settings, f"orchestrator-{i}", "orchestrator", folder, runs_dir)
                     for i in range(config.orchestrators)]
    run.processes += [chaos_process(settings, f"worker-{i}", "worker", folder, runs_dir)
                      for i in range(config.workers)]
    client = wf.WorkflowClient(settings=settings)
    planned = plan(config.instances, config.chaos_s * config.start_share, rng)
    began = time.monotonic()
    try:
        for process in run.processes:
            process.start(wait=False)
        wait_ready(run.processes)
        say(f"chaos: {len(run.processes)} processes ready in {time.monotonic() - began:.1f} s; "
            f"{config.instances} instances over {config.chaos_s:.0f} s, seed {config.seed}")
        t0 = time.monotonic()
        next_kill = t0 + rng.uniform(*config.kill_every_s)
        restarts: list[tuple[float, RuntimeProcess]] = []
        while time.monotonic() - t0 < config.chaos_s:
            now = time.monotonic()
            _start_due(client, planned, now - t0)
            _raise_due(client, planned, now)
            for due, process in [r for r in restarts if r[0] <= now]:
                restarts.remove((due, process))
                process.start(wait=False)
            if now >= next_kill:
                up = [p for p in run.processes if p.alive]
                if up:
                    victim = rng.choice(up)
                    victim.kill()
                    run.kills += 1
                    down = rng.uniform(*config.down_s)
                    run.kill_log.append(f"{now - t0:.1f}s {victim.process_id} down {down:.1f}s")
                    restarts.append((now + down, victim))
                next_kill = now + rng.uniform(*config.kill_every_s)
            time.sleep(0.05)
        chaos_end = time.monotonic()
        for _, process in restarts:
            process.start(wait=False)
        for process in run.processes:
            if not process.alive:
                process.start(wait=False)
        say(f"chaos: window over after {run.kills} kills; waiting for every instance to end")
        ended = _settle(client, planned, config.settle_s)
        settle_seconds = time.monotonic() - chaos_end
        summary = _judge(run, client, planned, runs_dir, ended)
        summary["settle_seconds"] = round(settle_seconds, 1)
        summary["seconds"] = round(time.monotonic() - began, 1)
        return summary
    finally:
        for process in run.processes:
            process.stop()
        client.close()
        delete_topics_with_prefix(AdminClient(settings.client()), settings.topic_prefix)
        if own_folder:
            shutil.rmtree(folder, ignore_errors=True)


def _start_due(client: wf.WorkflowClient, planned: list[Planned], elapsed: float) -> None:
    due = [p for p in planned if not p.started and p.start_at <= elapsed]
    if due:
        by_workflow: dict[str, list[Planned]] = defaultdict(list)
        for item in due:
            by_workflow[item.workflow].append(item)
        for workflow, items in by_workflow.items():
            client.schedule_new_workflows(workflow, [(p.instance_id, p.input) for p in items])
        for item in due:
            item.started = True


def _raise_due(client: wf.WorkflowClient, planned: list[Planned], now: float) -> None:
    """Raise each event instance's event a while after it is seen running (never before: an
    event for an instance that has not started yet is dropped)."""
    for item in planned:
        if item.event_value is None or item.raised or not item.started:
            continue
        if item.seen_running_at is None:
            state = client.view.get(item.instance_id)
            if state is not None and state.runtime_status is wf.WorkflowStatus.RUNNING:
                item.seen_running_at = now
            continue
        if now - item.seen_running_at >= item.raise_after:
            client.raise_workflow_event(item.instance_id, "go", data={"value": item.event_value})
            item.raised = True


def _settle(client: wf.WorkflowClient, planned: list[Planned], timeout: float) -> set[str]:
    deadline = time.monotonic() + timeout
    ended_states = {wf.WorkflowStatus.COMPLETED, wf.WorkflowStatus.FAILED, wf.WorkflowStatus.TERMINATED}
    while True:
        now = time.monotonic()
        _raise_due(client, planned, now)
        ended = set()
        for item in planned:
            state = client.view.get(item.instance_id)
            if state is not None and state.runtime_status in ended_states:
                ended.add(item.instance_id)
        if len(ended) == len(planned) or now > deadline:
            return ended
        time.sleep(0.5)


def _judge(run: ChaosRun, client: wf.WorkflowClient, planned: list[Planned], runs_dir: Path,
           ended: set[str]) -> dict[str, Any]:
    lost, wrong = [], []
    for item in planned:
        if item.instance_id not in ended:
            lost.append(item.instance_id)
            continue
        state = client.get_workflow_state(item.instance_id)
        output = None if state is None or state.serialized_output is None else json.loads(state.serialized_output)
        if state is None or state.runtime_status is not wf.WorkflowStatus.COMPLETED or output != item.expected:
            detail = "gone" if state is None else (
                f"{state.runtime_status.name} output {output!r} want {item.expected!r}"
                + (f" failure {state.failure_details.message}" if state.failure_details else ""))
            wrong.append(f"{item.instance_id}: {detail}")
    history = scan_history(run.settings)
    runs = read_runs(runs_dir)
    expected_keys = [key for item in planned for key in item.keys]
    never_ran = [key for key in expected_keys if runs[key] == 0]
    # A chain step's first attempt fails on purpose: two runs of it are expected.
    wanted_runs = sum(2 if item.workflow == "chaos_chain" else 1 for item in planned for _ in item.keys)
    return {
        "workload": WORKLOAD,
        "instances": len(planned),
        "lost": len(lost),
        "wrong": len(wrong),
        "duplicates": history["duplicates"],
        "kills": run.kills,
        "never_ran": len(never_ran),
        "activities": len(expected_keys),
        "activity_runs": sum(runs.values()),
        "extra_runs": max(0, sum(runs.values()) - wanted_runs),
        "history_events": history["events"],
        "seed": run.config.seed,
        "examples": {"lost": lost[:5], "wrong": wrong[:5], "duplicates": history["examples"][:5],
                     "never_ran": never_ran[:5], "kills": run.kill_log},
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.integration.reliability.chaos",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=2.0, help="length of the kill window")
    parser.add_argument("--instances", type=int, default=500)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--orchestrators", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    config = ChaosConfig(instances=args.instances, chaos_s=args.minutes * 60, seed=args.seed,
                         orchestrators=args.orchestrators, workers=args.workers)
    configured = os.environ.get("KWF_BOOTSTRAP_SERVERS")
    with nullcontext(configured) if configured else fresh_local_broker(REPO / ".kwf", "chaos-broker") as bootstrap:
        summary = run_chaos(bootstrap, config)
    print(json.dumps(summary), flush=True)
    failed = summary["lost"] or summary["wrong"] or summary["duplicates"] or summary["never_ran"]
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
