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

from engine.core.history import validate_app_id, validate_event_name
from engine.edges.bridge import BridgeRoute, PubSubBridge
from engine.edges.commands import CommandsDoor, commands_topic
from engine.edges.worker import ActivityWorker
from engine.orchestration.orchestrator import Orchestrator
from engine.replay.registry import Registry
from engine.state.config import Settings
from engine.state.retention import RetentionPolicy
from engine.state.state_slot import StateSlot, settle_identity
from engine.state.topics import INBOX, workflow_topics
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
        host, port, logger_options, interceptors: Dapr's sidecar address, logging and gRPC
            options: accepted, no effect here (Kafka is configured by ``settings``).
        maximum_concurrent_activity_work_items: Activity tasks running or queued at once
            in this process (Dapr's name for ``max_concurrent_activities``).
        maximum_concurrent_orchestration_work_items: Inbox records (workflow events) the
            orchestrator takes into one transaction. Workflow steps run one at a time on
            the orchestrator's thread, so this bounds the orchestration work in flight per
            commit; default 500.
        maximum_thread_pool_workers: Threads that run plain (``def``) activities; ``async
            def`` activities run on the worker's event loop and take none. Default 32.
        settings: Configuration; by default read from ``KWF_*`` (the same source
            ``WorkflowClient()`` uses).
        role: ``all`` (orchestrator and worker), ``orchestrator`` or ``worker``.
        app_id: The application this runtime belongs to (as ``KWF_APP_ID``, which it wins
            over): its own topics, workers and orchestrators; other applications' workflows
            reach its code with ``call_activity(..., app_id=)`` and ``call_child_workflow(...,
            app_id=)``. "" or unset: the default application.
        cache_size: Live workflow runs the orchestrator keeps in memory.
        max_concurrent_activities: Activity tasks running at once in this process.
        runtime_interceptors, workflow_outbound_interceptors: Dapr's interceptor hooks:
            accepted, no effect here. Other keywords are accepted and ignored as well.
        retention_any_terminal, retention_completed, retention_failed, retention_terminated:
            How long an ended instance is kept before this runtime purges it (``"7d"``,
            ``"12h"``, seconds or a ``timedelta``), as ``KWF_RETENTION_*``; these win.
    """

    def __init__(self, host: str | None = None, port: str | None = None, logger_options: Any = None,
                 interceptors: Any = None, maximum_concurrent_activity_work_items: int | None = None,
                 maximum_concurrent_orchestration_work_items: int | None = None,
                 maximum_thread_pool_workers: int | None = None, *, settings: Settings | None = None,
                 role: str = "all", cache_size: int = 10_000, max_concurrent_activities: int = 10_000,
                 registry: Registry | None = None, runtime_interceptors: Any = None,
                 workflow_outbound_interceptors: Any = None, retention_any_terminal: RetentionArg = None,
                 retention_completed: RetentionArg = None, retention_failed: RetentionArg = None,
                 retention_terminated: RetentionArg = None, app_id: str | None = None, **_: Any) -> None:
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
        self.settings = settings or Settings.from_env()
        retention = RetentionPolicy.of(retention_any_terminal, retention_completed, retention_failed,
                                       retention_terminated)
        if retention.enabled:
            self.settings = replace(self.settings, retention=self.settings.retention.merged(retention))
        if app_id is not None:
            self.settings = replace(self.settings, app_id=app_id and validate_app_id(app_id))
        # As configured; ``settings`` becomes this process's own (state folder, ID) at start.
        self._configured = self.settings
        self.registry = registry or Registry()
        self.role = role
        self.cache_size = cache_size
        # -- Dapr's concurrency options (see the class docstring) --
        for option, value in (("maximum_concurrent_activity_work_items", maximum_concurrent_activity_work_items),
                              ("maximum_concurrent_orchestration_work_items",
                               maximum_concurrent_orchestration_work_items),
                              ("maximum_thread_pool_workers", maximum_thread_pool_workers)):
            if value is not None and value < 1:
                raise ValueError(f"{option} must be 1 or more, got {value}")
        self.max_concurrent_activities = maximum_concurrent_activity_work_items or max_concurrent_activities
        self.max_orchestration_batch = maximum_concurrent_orchestration_work_items
        self.activity_threads = maximum_thread_pool_workers
        self._ready: list[threading.Event] = []
        # -- end of Dapr's concurrency options --
        self._threads: list[threading.Thread] = []
        self._processor: Processor | None = None
        self._worker: ActivityWorker | None = None
        self._failure: BaseException | None = None
        self._stopping = threading.Event()
        self._routes: list[BridgeRoute] = []
        # Other processors of the orchestrator role: the JSON commands door and the bridges.
        self._doors: list[Processor] = []
        self._slot: StateSlot | None = None

    def set_app_id(self, app_id: str) -> None:
        """Make this runtime part of application ``app_id`` ("" the default one); before ``start()``."""
        self._configured = replace(self._configured, app_id=app_id and validate_app_id(app_id))
        self.settings = replace(self.settings, app_id=self._configured.app_id)

    # -- registration (delegates to the registry) ----------------------------------------

    def workflow(self, fn: F | None = None, *, name: str | None = None) -> Any:
        return self.registry.workflow(fn, name=name)

    def activity(self, fn: F | None = None, *, name: str | None = None) -> Any:
        return self.registry.activity(fn, name=name)

    def register_workflow(self, fn: Callable[..., Any], *, name: str | None = None) -> None:
        self.registry.register_workflow(fn, name=name)

    def register_activity(self, fn: Callable[..., Any], *, name: str | None = None) -> None:
        self.registry.register_activity(fn, name=name)

    def versioned_workflow(self, *, name: str, version_name: str | None = None, is_latest: bool) -> Any:
        """Register one version of workflow ``name`` (decorator); see ``register_versioned_workflow``."""
        return self.registry.versioned_workflow(name=name, version_name=version_name, is_latest=is_latest)

    def register_versioned_workflow(self, fn: Callable[..., Any], *, name: str, version_name: str | None = None,
                                    is_latest: bool) -> None:
        """Register ``fn`` as one version of workflow ``name``: new instances run the version
        registered with ``is_latest=True``, a running instance the version it started with."""
        self.registry.register_versioned_workflow(fn, name=name, version_name=version_name, is_latest=is_latest)

    def add_bridge(self, route: BridgeRoute) -> None:
        """Route records of an external topic to external events (started with the orchestrator)."""
        validate_event_name(route.event_name)
        self._routes.append(route)

    # -- lifecycle -----------------------------------------------------------------------

    def start(self, timeout: float = START_TIMEOUT_S) -> None:
        """Create topics, start the processes of this role; return once they are ready."""
        self.registry.app_id = self.settings.app_id
        if self.role in ("all", "orchestrator"):
            # Processors with state and transactions: this process's own folder and identity.
            self.settings, self._slot = settle_identity(self._configured)
            log.info("state folder %s, process ID %s", self.settings.state_dir, self.settings.process_id)
        partitions = self._ensure_topics()
        waits: list[threading.Event] = []
        if self.role in ("all", "orchestrator"):
            self._processor = hosted(self.orchestrator(partitions))
            self._spawn("kwf-orchestrator", self._processor.run, restartable=True)
            waits.append(self._processor.ready)
            self._doors.append(hosted(CommandsDoor(self.settings, partitions)))
            self._doors += [hosted(PubSubBridge(self.settings, route, partitions)) for route in self._routes]
            for door in self._doors:
                self._spawn(f"kwf-{door.config.input_topic}", door.run, restartable=True)
                waits.append(door.ready)
        if self.role in ("all", "worker"):
            self._worker = self.activity_worker()
            self._spawn("kwf-worker", self._worker.run)
            waits.append(self._worker.ready)
        self._ready = waits
        deadline = time.monotonic() + timeout
        for event in waits:
            while not event.wait(0.1):
                if self._failure is not None:
                    raise RuntimeError(f"the runtime failed to start: {self._failure}") from self._failure
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the runtime was not ready within {timeout:.0f} s "
                                       f"(broker {self.settings.bootstrap_servers})")

    def _ensure_topics(self) -> int:
        """Create what this role reads and writes where missing; return the inbox's partition count."""
        specs = workflow_topics(self.settings)
        if self.role in ("all", "orchestrator"):
            specs.append(commands_topic(self.settings))
            specs += [TopicSpec(route.topic, self.settings.partitions, co_partitioned=False) for route in self._routes]
        admin = AdminClient(self.settings.client())
        ensure_topics(admin, specs)
        inbox = self.settings.topic(INBOX)
        return len(admin.list_topics(inbox, timeout=30).topics[inbox].partitions)

    def orchestrator(self, inbox_partitions: int) -> Orchestrator:
        """A new orchestrator with this runtime's cache size and batch limit."""
        return Orchestrator(self.settings, self.registry, inbox_partitions, cache_size=self.cache_size,
                            max_batch_records=self.max_orchestration_batch)

    def activity_worker(self) -> ActivityWorker:
        """A new activity worker with this runtime's concurrency limits."""
        if self.activity_threads is None:
            return ActivityWorker(self.settings, self.registry, max_in_flight=self.max_concurrent_activities)
        return ActivityWorker(self.settings, self.registry, max_in_flight=self.max_concurrent_activities,
                              threads=self.activity_threads)

    def wait_for_worker_ready(self, timeout: float = 30.0) -> bool:
        """Wait until the processes started by ``start()`` hold their partitions.

        ``start()`` already returns only once they do, so after it this answers True at once.

        Args:
            timeout: Seconds to wait at most.

        Returns:
            True when every process is ready; False when ``start()`` was not called, the
            runtime failed, or the timeout passed first.
        """
        if not self._ready:
            return False
        deadline = time.monotonic() + timeout
        for event in self._ready:
            if not event.wait(max(0.0, deadline - time.monotonic())):
                return False
        return self._failure is None

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
        if self._slot is not None:
            self._slot.release()
            self._slot = None

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


def hosted(handler: Orchestrator | CommandsDoor | PubSubBridge) -> Processor:
    """The processor that runs ``handler`` with the configuration it asks for."""
    return Processor(handler.processor_config(), handler)
