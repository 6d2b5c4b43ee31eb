"""``broker_faults``: one node of a 3-node Kafka cluster SIGKILLed while workflows run.

A ``kwf run`` process runs ``chain3`` and fan-outs of 10 (``bench.apps``) started at a
steady rate. After a warm-up instance and a few seconds of load, one node is SIGKILLed,
left down, then started again, the load going on throughout: the broker leading most
history partitions (``leader``), the one coordinating the orchestrator's transactions
(``coordinator``, which also leads a third of all partitions), or the active KRaft
controller (``controller``). Afterwards every instance must be COMPLETED with its right
output, every execution's history numbered 0..n-1 with no sequence twice and none
missing, no instance's status seen going backwards, and the restarted node back in the
in-sync replicas of every history partition.

Figures: ``stall_s``, the longest time no instance completed from the kill until the
last completion; ``p99_fault_ms`` and ``p99_before_ms``, the 99th percentile start-to-completion
latency of instances started while the node was down and before the kill (the last of
these are caught by the fault; ``p50_before_ms`` is the undisturbed latency).

    python -m tests.integration.cluster.broker_faults [--fault leader|coordinator|controller] [--rate 10]

runs against a fresh local cluster of its own (three JVMs, about a minute to start here).
The integration test ``tests/integration/cluster/test_broker_faults.py`` runs the same code.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

import engine as wf
from engine.core.history import WorkflowStatus
from engine.state.codec import decode_event, decode_status
from engine.state.config import Settings
from engine.state.topics import HISTORY, STATUS, ensure_workflow_topics
from engine.testing import RuntimeProcess
from streams.broker import LocalBroker, LocalCluster, free_port_block
from streams.reader import read_to_end
from streams.topics import delete_topics_with_prefix

REPO = Path(__file__).resolve().parents[3]
APP = "bench.apps:runtime"
FAN_OUT = 10
# One fan-out per this many chains: most of the load is chains, fan-outs add bursts.
FAN_OUT_EVERY = 5
# A killed broker is fenced by the controller after its 9 s session; leaders move then,
# and clients' retries find them. Everything started must end well within this.
SETTLE_TIMEOUT_S = 90.0
# A JVM start on a machine this busy can take a minute or two.
RESTART_TIMEOUT_S = 180.0
# Reading the history topic back to its end: a minute means a transaction is stuck open.
SCAN_TIMEOUT_S = 60.0
# A fresh runtime's first instance waits for every group's first assignment; a minute
# means it will not run at all.
WARM_UP_TIMEOUT_S = 60.0
# Status ranks: a status seen after one of a higher rank went backwards.
RANK = {WorkflowStatus.PENDING: 0, WorkflowStatus.RUNNING: 1, WorkflowStatus.COMPLETED: 2,
        WorkflowStatus.FAILED: 2, WorkflowStatus.TERMINATED: 2}


@dataclass
class FaultConfig:
    fault: str = "leader"  # or "coordinator" (of the orchestrator's transactions), "controller"
    rate: float = 10.0  # instances started per second
    before_s: float = 8.0  # load before the kill
    down_s: float = 10.0  # the node stays down this long
    after_s: float = 8.0  # load after the restart
    partitions: int = 8


@dataclass
class StatusWatch:
    """Follows the status topic (read_committed) and notes when each instance's status changes."""

    settings: Settings
    seen: dict[str, list[tuple[float, WorkflowStatus, str | None]]] = field(default_factory=lambda: defaultdict(list))
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        topic = self.settings.topic(STATUS)
        consumer = Consumer({**self.settings.client(), "group.id": f"faults-{uuid.uuid4().hex}",
                             "enable.auto.commit": "false", "isolation.level": "read_committed"})
        partitions = consumer.list_topics(topic, timeout=30).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])

        def follow() -> None:
            try:
                while not self._stop.is_set():
                    for message in consumer.consume(1000, 0.1):
                        if message.error() is not None or message.value() is None:
                            continue
                        status = decode_status(message.value())
                        self.seen[status.instance_id].append((time.time(), status.runtime_status, status.output))
            finally:
                consumer.close()

        self._thread = threading.Thread(target=follow, name="status-watch", daemon=True)
        self._thread.start()

    def completed_at(self, instance_id: str) -> float | None:
        for at, status, _ in self.seen.get(instance_id, []):
            if status is WorkflowStatus.COMPLETED:
                return at
        return None

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)


def history_leaders(settings: Settings) -> Counter[int]:
    """How many history partitions each broker leads."""
    topic = settings.topic(HISTORY)
    meta = AdminClient(settings.client()).list_topics(topic, timeout=30).topics[topic]
    return Counter(p.leader for p in meta.partitions.values())


def history_in_sync(settings: Settings) -> bool:
    """True when every history partition has all its replicas in sync."""
    topic = settings.topic(HISTORY)
    meta = AdminClient(settings.client()).list_topics(topic, timeout=30).topics[topic]
    return all(len(p.isrs) == len(p.replicas) for p in meta.partitions.values())


def scan_history(settings: Settings, timeout: float = SCAN_TIMEOUT_S) -> dict[str, Any]:
    """Read the history topic to its end; every execution must be numbered 0..n-1, once each."""
    sequences: dict[tuple[str, str], Counter[int]] = defaultdict(Counter)
    events = 0
    for message in read_to_end(settings.client(), settings.topic(HISTORY), timeout=timeout):
        if message.value() is None:
            continue  # a tombstone of a superseded execution
        record = decode_event(message.value())
        events += 1
        sequences[(record.instance_id, record.execution_id)][record.sequence] += 1
    duplicated, missing = [], []
    for (instance, _), counts in sequences.items():
        duplicated += [f"{instance} #{s} x{n}" for s, n in counts.items() if n > 1]
        gaps = set(range(max(counts) + 1)) - set(counts)
        missing += [f"{instance} #{s}" for s in sorted(gaps)]
    return {"events": events, "executions": len(sequences), "duplicated": duplicated[:10],
            "missing": missing[:10], "anomalies": len(duplicated) + len(missing)}


def expected_output(name: str, value: int) -> int:
    return value + 3 if name == "chain3" else FAN_OUT


def percentile_ms(values: list[float], q: float) -> int | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))])


def run_fault(cluster: LocalCluster, config: FaultConfig, folder: Path) -> dict[str, Any]:
    """Run the load, kill and restart one node; return the findings (see the module docstring)."""
    cluster.start()  # every node up, a node a run before killed included
    settings = Settings.from_env(bootstrap_servers=cluster.bootstrap, topic_prefix=f"f{uuid.uuid4().hex[:8]}",
                                 partitions=config.partitions, state_dir=folder / "client-state")
    ensure_workflow_topics(settings)
    runtime = RuntimeProcess(settings, f"{settings.topic_prefix}-runtime-1", folder, APP)
    runtime.start()
    watch = StatusWatch(settings)
    watch.start()
    client = wf.WorkflowClient(settings=settings)
    started: dict[str, tuple[float, str, int]] = {}
    marks: dict[str, Any] = {}
    victim: LocalBroker | None = None
    try:
        marks["warm_up_s"] = warm_up(client, watch)
        began = time.time()
        total_s = config.before_s + config.down_s + config.after_s
        n = start_timeouts = 0
        restarted: threading.Thread | None = None
        while (now := time.time()) - began < total_s:
            elapsed = now - began
            if victim is None and elapsed >= config.before_s:
                victim = choose_victim(cluster, settings, config.fault)
                marks["kill"] = time.time()
                victim.kill()
                # On a timer of its own: a start below may block while the node is down.
                restarted = threading.Thread(target=restart_node, args=(cluster, victim, config.down_s, marks),
                                             daemon=True)
                restarted.start()
            due = int(elapsed * config.rate) + 1 - n
            batch: dict[str, list[tuple[str, int]]] = defaultdict(list)
            for _ in range(max(0, due)):
                name = "fan_out" if n % FAN_OUT_EVERY == FAN_OUT_EVERY - 1 else "chain3"
                instance_id = f"{name}-{n}"
                value = FAN_OUT if name == "fan_out" else n
                batch[name].append((instance_id, value))
                started[instance_id] = (time.time(), name, n)
                n += 1
            for name, inputs in batch.items():
                try:
                    client.schedule_new_workflows(name, inputs)
                except TimeoutError:
                    # Not yet acknowledged: the producer goes on retrying; the checks below
                    # tell whether the starts arrived.
                    start_timeouts += 1
            time.sleep(0.02)
        marks["load_end"] = time.time()
        deadline = time.time() + SETTLE_TIMEOUT_S
        while time.time() < deadline and any(watch.completed_at(i) is None for i in started):
            time.sleep(0.2)
        if restarted is not None:
            restarted.join(RESTART_TIMEOUT_S)
        rejoin_deadline = time.time() + SETTLE_TIMEOUT_S
        while time.time() < rejoin_deadline and not history_in_sync(settings):
            time.sleep(0.5)
        in_sync = history_in_sync(settings)
        marks["start_timeouts"] = start_timeouts
        time.sleep(0.5)  # the last statuses reach the watch
    finally:
        watch.stop()
        client.close()
        runtime.kill()
    try:
        return judge(config, settings, started, watch, marks, victim, in_sync)
    finally:
        # Every run's topics kept would make each later node restart slower.
        delete_topics_with_prefix(AdminClient(settings.client()), settings.topic_prefix)


def java_string_hash(text: str) -> int:
    """Java's ``String.hashCode`` (over UTF-16 code units), as a signed 32-bit int."""
    data = text.encode("utf-16-be")
    h = 0
    for i in range(0, len(data), 2):
        h = (31 * h + int.from_bytes(data[i:i + 2], "big")) & 0xFFFFFFFF
    return h - (1 << 32) if h >= 1 << 31 else h


def coordinator_partition(key: str, partitions: int) -> int:
    """The partition of ``__transaction_state`` (or ``__consumer_offsets``) that holds ``key``,
    as the broker picks it: ``Utils.abs(key.hashCode) % partitions``."""
    h = java_string_hash(key)
    return 0 if h == -(1 << 31) else abs(h) % partitions


def transaction_coordinator(settings: Settings, transactional_id: str) -> int:
    """The broker that coordinates ``transactional_id``'s transactions: its state partition's leader."""
    topic = "__transaction_state"
    meta = AdminClient(settings.client()).list_topics(topic, timeout=30).topics[topic]
    return meta.partitions[coordinator_partition(transactional_id, len(meta.partitions))].leader


def warm_up(client: wf.WorkflowClient, watch: StatusWatch) -> float:
    """Run one chain3 to completion, so that the figures before the kill are of a runtime at
    work, not of its groups' first assignments; return how long it took."""
    began = time.time()
    client.schedule_new_workflow("chain3", input=0, instance_id="warm-up")
    while watch.completed_at("warm-up") is None:
        if time.time() - began > WARM_UP_TIMEOUT_S:
            raise TimeoutError(f"the warm-up instance did not complete within {WARM_UP_TIMEOUT_S:.0f} s")
        time.sleep(0.05)
    return round(time.time() - began, 1)


def choose_victim(cluster: LocalCluster, settings: Settings, fault: str) -> LocalBroker:
    if fault == "coordinator":
        # The orchestrator's producer (ProcessorConfig.transactional_id): it writes history and statuses.
        runtime_id = f"{settings.topic_prefix}-runtime-1"
        return cluster.node(transaction_coordinator(settings, f"{settings.topic_prefix}.orchestrator-{runtime_id}"))
    if fault == "controller":
        controller = cluster.active_controller()
        if controller is None:
            raise RuntimeError("no KRaft quorum state found on disk")
        return cluster.node(controller)
    leader, _ = history_leaders(settings).most_common(1)[0]
    return cluster.node(leader)


def restart_node(cluster: LocalCluster, node: LocalBroker, after_s: float, marks: dict[str, Any]) -> None:
    time.sleep(after_s)
    marks["restart"] = time.time()
    try:
        node.wait_answering(node.launch(), RESTART_TIMEOUT_S)
        cluster.wait_for_brokers(cluster.size, RESTART_TIMEOUT_S)
        marks["rejoined"] = time.time()
    except Exception as err:
        marks["restart_error"] = f"{type(err).__name__}: {err}"


def judge(config: FaultConfig, settings: Settings, started: dict[str, tuple[float, str, int]], watch: StatusWatch,
          marks: dict[str, Any], victim: LocalBroker | None, in_sync: bool) -> dict[str, Any]:
    lost, wrong, backwards = [], [], []
    latencies_before, latencies_fault = [], []
    completions = []
    for instance_id, (sent, name, value) in started.items():
        seen = watch.seen.get(instance_id, [])
        ranks = [RANK.get(status, 1) for _, status, _ in seen]
        if any(later < earlier for earlier, later in zip(ranks, ranks[1:], strict=False)):
            backwards.append(instance_id)
        done = [(at, output) for at, status, output in seen if status is WorkflowStatus.COMPLETED]
        if not done:
            lost.append(instance_id)
            continue
        at, output = done[0]
        if output is None or json.loads(output) != expected_output(name, value):
            wrong.append(instance_id)
        completions.append(at)
        if sent < marks.get("kill", float("inf")):
            latencies_before.append(at - sent)
        elif sent < marks.get("restart", float("inf")):
            latencies_fault.append(at - sent)
    # From the kill to the last completion (the load goes on until after the restart, so
    # completions stop only when the runtime does).
    window = [marks["kill"], *sorted(t for t in completions if t >= marks["kill"])]
    stall = max((b - a for a, b in zip(window, window[1:], strict=False)), default=0.0)
    history = scan_history(settings)
    return {
        "fault": config.fault, "victim": victim.node_id if victim else None, "instances": len(started),
        "lost": len(lost), "wrong": len(wrong), "backwards": len(backwards),
        "history_events": history["events"], "history_anomalies": history["anomalies"],
        "examples": (lost + wrong + backwards)[:5] + history["duplicated"][:3] + history["missing"][:3],
        "stall_s": round(stall, 2),
        "p50_before_ms": percentile_ms(latencies_before, 0.5),
        "p99_before_ms": percentile_ms(latencies_before, 0.99),
        "p99_fault_ms": percentile_ms(latencies_fault, 0.99),
        "rejoined_after_s": round(marks.get("rejoined", float("nan")) - marks.get("restart", 0), 1),
        "in_sync_after": in_sync,
        "start_timeouts": marks.get("start_timeouts", 0),
        "warm_up_s": marks.get("warm_up_s"),
        "restart_error": marks.get("restart_error"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.integration.cluster.broker_faults",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--fault", choices=["leader", "coordinator", "controller"], default="leader")
    parser.add_argument("--rate", type=float, default=10.0)
    parser.add_argument("--down", type=float, default=10.0)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="kwf-faults-"))
    home = Path(os.environ.get("KWF_HOME", REPO / ".kwf")).resolve()
    cluster = LocalCluster(home=home, size=3, port=free_port_block(6), folder_name="faults-cluster")
    cluster.stop()
    import shutil

    shutil.rmtree(cluster.folder, ignore_errors=True)
    cluster.start()
    try:
        print(json.dumps(run_fault(cluster, FaultConfig(args.fault, args.rate, down_s=args.down), folder)))
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
