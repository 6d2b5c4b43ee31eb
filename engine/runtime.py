"""``WorkflowRuntime``: registers workflows and activities and runs their processes.

``start()`` creates the topics, then runs the orchestrator processor and an activity
worker on threads of this process and returns once both hold their partitions (and
the orchestrator has restored its state). Several processes started the same way share
the work through the consumer groups.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from typing import Any, TypeVar

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient

from engine.core.history import validate_event_name
from engine.edges.bridge import BridgeRoute, PubSubBridge
from engine.edges.commands import CommandsDoor
from engine.edges.worker import ActivityWorker
from engine.orchestration.orchestrator import Orchestrator
from engine.replay.registry import Registry
from engine.state.config import Settings
from engine.state.retention import RetentionPolicy
from engine.state.topics import INBOX, ensure_workflow_topics
from streams.processor import Processor
from streams.topics import TopicSpec, ensure_topics

log = logging.getLogger("engine.runtime")
F = TypeVar("F", bound=Callable[..., Any])
RetentionArg = str | float | timedelta | None

# Joining a group, restoring state and the first rebalance take a few seconds on a cold broker.
START_TIMEOUT_S = 120.0
# A processor that stops on a transient Kafka error (a restarting broker: leaders and
# coordinators moving) is started again, after a pause growing by a second per restart in
# a row up to the cap; past this many restarts in a row the runtime gives up.
MAX_RESTARTS_IN_A_ROW = 10
RESTART_PAUSE_CAP_S = 10.0
# A processor that ran this long before it stopped starts a fresh count of restarts.
HEALTHY_RUN_S = 60.0
TRANSIENT_CODES = frozenset({
    KafkaError.FENCED_LEADER_EPOCH, KafkaError.UNKNOWN_LEADER_EPOCH, KafkaError.NOT_LEADER_FOR_PARTITION,
    KafkaError.LEADER_NOT_AVAILABLE, KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
    KafkaError.COORDINATOR_NOT_AVAILABLE, KafkaError.REQUEST_TIMED_OUT, KafkaError.NETWORK_EXCEPTION,
    KafkaError._TIMED_OUT, KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN,
})
ROLES = ("all", "orchestrator", "worker")


class WorkflowRuntime:
    """Hosts workflows and activities (dapr.ext.workflow's ``WorkflowRuntime``).

    Args:
        settings: Configuration; by default read from ``KWF_*`` (the same source
            ``WorkflowClient()`` uses).
        role: ``all`` (orchestrator and worker), ``orchestrator`` or ``worker``.
        cache_size: Live workflow runs the orchestrator keeps in memory.
        max_concurrent_activities: Activity tasks running at once in this process.
        retention_any_terminal, retention_completed, retention_failed, retention_terminated:
            How long an ended instance is kept before this runtime purges it (``"7d"``,
            ``"12h"``, seconds or a ``timedelta``), as ``KWF_RETENTION_*``; these win.
        Dapr's constructor arguments (host, port, logger options...) are accepted and ignored.
    """

    def __init__(self, host: str | None = None, port: str | None = None, *, settings: Settings | None = None,
                 role: str = "all", cache_size: int = 10_000, max_concurrent_activities: int = 10_000,
                 registry: Registry | None = None, retention_any_terminal: RetentionArg = None,
                 retention_completed: RetentionArg = None, retention_failed: RetentionArg = None,
                 retention_terminated: RetentionArg = None, **_: Any) -> None:
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
        self.settings = settings or Settings.from_env()
        retention = RetentionPolicy.of(retention_any_terminal, retention_completed, retention_failed,
                                       retention_terminated)
        if retention.enabled:
            self.settings = replace(self.settings, retention=self.settings.retention.merged(retention))
        self.registry = registry or Registry()
        self.role = role
        self.cache_size = cache_size
        self.max_concurrent_activities = max_concurrent_activities
        self._threads: list[threading.Thread] = []
        self._processor: Processor | None = None
        self._worker: ActivityWorker | None = None
        self._failure: BaseException | None = None
        self._stopping = threading.Event()
        self._routes: list[BridgeRoute] = []
        # Other processors of the orchestrator role: the JSON commands door and the bridges.
        self._doors: list[Processor] = []

    # -- registration (delegates to the registry) ----------------------------------------

    def workflow(self, fn: F | None = None, *, name: str | None = None) -> Any:
        return self.registry.workflow(fn, name=name)

    def activity(self, fn: F | None = None, *, name: str | None = None) -> Any:
        return self.registry.activity(fn, name=name)

    def register_workflow(self, fn: Callable[..., Any], *, name: str | None = None) -> None:
        self.registry.register_workflow(fn, name=name)

    def register_activity(self, fn: Callable[..., Any], *, name: str | None = None) -> None:
        self.registry.register_activity(fn, name=name)

    def add_bridge(self, route: BridgeRoute) -> None:
        """Route records of an external topic to external events (started with the orchestrator)."""
        validate_event_name(route.event_name)
        self._routes.append(route)

    # -- lifecycle -----------------------------------------------------------------------

    def start(self, timeout: float = START_TIMEOUT_S) -> None:
        """Create topics, start the processes of this role; return once they are ready."""
        ensure_workflow_topics(self.settings)
        inbox = self.settings.topic(INBOX)
        partitions = len(AdminClient(self.settings.client()).list_topics(inbox, timeout=30).topics[inbox].partitions)
        waits: list[threading.Event] = []
        if self.role in ("all", "orchestrator"):
            orchestrator = Orchestrator(self.settings, self.registry, partitions, cache_size=self.cache_size)
            self._processor = Processor(orchestrator.processor_config(), orchestrator)
            self._spawn("kwf-orchestrator", self._processor.run, restartable=True)
            waits.append(self._processor.ready)
            self._doors.append(CommandsDoor(self.settings, inbox_partitions=partitions).processor())
            for route in self._routes:
                ensure_topics(AdminClient(self.settings.client()),
                              [TopicSpec(route.topic, self.settings.partitions, co_partitioned=False)])
                self._doors.append(Processor(*_bridge_parts(self.settings, route, partitions)))
            for door in self._doors:
                self._spawn(f"kwf-{door.config.input_topic}", door.run, restartable=True)
                waits.append(door.ready)
        if self.role in ("all", "worker"):
            self._worker = ActivityWorker(self.settings, self.registry, max_in_flight=self.max_concurrent_activities)
            self._spawn("kwf-worker", self._worker.run)
            waits.append(self._worker.ready)
        deadline = time.monotonic() + timeout
        for event in waits:
            while not event.wait(0.1):
                if self._failure is not None:
                    raise RuntimeError(f"the runtime failed to start: {self._failure}") from self._failure
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the runtime was not ready within {timeout:.0f} s "
                                       f"(broker {self.settings.bootstrap_servers})")

    def shutdown(self) -> None:
        """Stop the processes cleanly: open transactions are finished, stores closed."""
        self._stopping.set()
        if self._processor is not None:
            self._processor.stop()
        if self._worker is not None:
            self._worker.stop()
        for door in self._doors:
            door.stop()
        for thread in self._threads:
            thread.join(30)
        self._threads.clear()

    def wait(self) -> None:
        """Block until a process of the runtime stops (used by ``kwf run``)."""
        while all(t.is_alive() for t in self._threads):
            time.sleep(0.2)
        if self._failure is not None:
            raise RuntimeError(f"the runtime stopped: {self._failure}") from self._failure

    @property
    def failure(self) -> BaseException | None:
        return self._failure

    def _spawn(self, name: str, target: Callable[[], None], restartable: bool = False) -> None:
        def run() -> None:
            restarts = 0
            while True:
                began = time.monotonic()
                try:
                    target()
                    return
                except BaseException as err:
                    if time.monotonic() - began > HEALTHY_RUN_S:
                        restarts = 0
                    if restartable and transient(err) and restarts < MAX_RESTARTS_IN_A_ROW \
                            and not self._stopping.is_set():
                        restarts += 1
                        pause = min(RESTART_PAUSE_CAP_S, float(restarts))
                        log.warning("%s stopped on a transient Kafka error (%s); starting it again in %.0f s "
                                    "(%d of %d in a row)", name, err, pause, restarts, MAX_RESTARTS_IN_A_ROW)
                        self._stopping.wait(pause)
                        continue
                    log.exception("%s stopped", name)
                    self._failure = err
                    return

        thread = threading.Thread(target=run, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def __enter__(self) -> WorkflowRuntime:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


def transient(err: BaseException) -> bool:
    """Whether a processor stopped by ``err`` can simply be started again (the broker recovers)."""
    if not isinstance(err, KafkaException) or not err.args or not isinstance(err.args[0], KafkaError):
        return False
    error: KafkaError = err.args[0]
    return not error.fatal() and (error.retriable() or error.code() in TRANSIENT_CODES)


def _bridge_parts(settings: Settings, route: BridgeRoute, partitions: int) -> tuple[Any, PubSubBridge]:
    bridge = PubSubBridge(settings, route, partitions)
    return bridge.processor_config(), bridge
