"""The workflow client: start, query, raise events to and manage instances.

Commands are ``HistoryEvent`` records produced to ``kwf.inbox`` keyed by instance ID;
reads come from a ``StatusView`` of ``kwf.status``. Each management call waits (bounded)
until the view shows its effect, so a read right after it sees the change.

A new client's view may still be reading the status topic (no folder to resume on this
machine): until it has, reads are asked of a running runtime's HTTP API
(``engine.api.runtime_reads``), whose view is current, and the client's own starts still
overlay the answers (read-your-writes).

A client may start before any runtime: before its first command or read it creates the
runtime's topics where missing (the same specs the runtime uses), so its commands wait on
the inbox and its view follows the status topic, whichever process came first.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Producer

from engine.api.bulk import BulkOperation, bulk_command, send_bulk
from engine.api.runtime_reads import RuntimeReads
from engine.api.status_index import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, ListFilter, created_ms
from engine.api.status_view import StatusView, not_reached
from engine.core import payload
from engine.core.bulk import PURGE, TERMINATE
from engine.core.clock import now_utc
from engine.core.history import (
    EventRaised,
    ExecutionResumed,
    ExecutionStarted,
    ExecutionSuspended,
    ExecutionTerminated,
    FailureDetails,
    HistoryEvent,
    PurgeRequested,
    WorkflowStatus,
    validate_event_name,
    validate_instance_id,
)
from engine.core.payload import PayloadTooLarge as PayloadTooLarge
from engine.observability.tracing import headers_of_context, remote_parent
from engine.replay.registry import name_of
from engine.state.codec import StatusRecord, encode_event
from engine.state.config import Settings
from engine.state.instance_state import ENDED
from engine.state.topics import INBOX, ensure_workflow_topics

log = logging.getLogger("engine.api.client")

# How long a management call waits to see its effect before saying so.
DEFAULT_ACK_TIMEOUT_S = 30.0
# Delivery of one command to the broker; beyond this the broker is unreachable.
DELIVERY_TIMEOUT_S = 30.0
# One wait for acknowledgements while a command is in flight.
DELIVERY_POLL_S = 0.002
# A wait asked of a runtime is held there this long at most; then the own view is looked at
# again, and takes over once it is caught up.
REMOTE_WAIT_SLICE_S = 5.0


class InstanceExists(Exception):
    """A start named an instance ID that is still running; wait for it to end or purge it."""


@dataclass(frozen=True)
class WorkflowFailureDetails:
    """Why an instance failed (dapr.ext.workflow's ``FailureDetails``)."""

    message: str
    error_type: str
    stack_trace: str | None

    @classmethod
    def of(cls, failure: FailureDetails) -> WorkflowFailureDetails:
        return cls(failure.message, failure.type, failure.stack_trace)


@dataclass(frozen=True)
class WorkflowState:
    """A snapshot of one instance, as dapr.ext.workflow's ``WorkflowState``."""

    instance_id: str
    name: str
    runtime_status: WorkflowStatus
    created_at: datetime
    last_updated_at: datetime
    serialized_input: str | None
    serialized_output: str | None
    serialized_custom_status: str | None
    failure_details: WorkflowFailureDetails | None

    @property
    def stalled_reason(self) -> str | None:
        """Why a STALLED instance waits (``VERSION_NOT_AVAILABLE`` or ``PATCH_MISMATCH``), else None.

        ``failure_details.message`` then says which version or patch is missing.
        """
        if self.runtime_status is not WorkflowStatus.STALLED or self.failure_details is None:
            return None
        return self.failure_details.error_type

    def to_json(self) -> dict[str, Any]:
        """The state as a JSON-ready dict (as dapr.ext.workflow's ``WorkflowState.to_json``)."""
        return {
            "instance_id": self.instance_id,
            "name": self.name,
            "runtime_status": self.runtime_status.name,
            "created_at": self.created_at.isoformat(),
            "last_updated_at": self.last_updated_at.isoformat(),
            "serialized_input": self.serialized_input,
            "serialized_output": self.serialized_output,
            "serialized_custom_status": self.serialized_custom_status,
            "failure_details": None if self.failure_details is None else {
                "message": self.failure_details.message,
                "error_type": self.failure_details.error_type,
                "stack_trace": self.failure_details.stack_trace,
            },
        }

    @classmethod
    def of(cls, status: StatusRecord, fetch_payloads: bool = True) -> WorkflowState:
        return cls(
            instance_id=status.instance_id,
            name=status.name,
            runtime_status=status.runtime_status,
            created_at=status.created_at,
            last_updated_at=status.last_updated_at,
            serialized_input=status.input if fetch_payloads else None,
            serialized_output=status.output if fetch_payloads else None,
            serialized_custom_status=status.custom_status if fetch_payloads else None,
            failure_details=None if status.failure is None else WorkflowFailureDetails.of(status.failure),
        )


@dataclass(frozen=True)
class WorkflowPage:
    """One page of ``list_workflows_page``: the instances, and the token of the next page
    (None when this is the last), as durabletask's ``continuation_token``."""

    workflows: list[WorkflowState]
    continuation_token: str | None


class WorkflowClient:
    """Starts and manages workflow instances (alias ``DaprWorkflowClient``).

    ``WorkflowClient()`` reads the same ``KWF_*`` configuration as ``WorkflowRuntime()``,
    so both reach the same runtime. Dapr's ``host``/``port`` arguments are accepted and
    ignored: there is no sidecar.
    """

    def __init__(self, host: str | None = None, port: str | None = None, *, settings: Settings | None = None,
                 runtime_url: str | None = None, ask_runtimes: bool = True, **_: Any) -> None:
        """Args:
            settings: Broker, topics and the rest (default: ``Settings.from_env()``).
            runtime_url: A runtime's HTTP API to ask while this process's status view is not
                caught up (comma-separated for several); wins over ``KWF_RUNTIME_URL`` and
                over the runtimes' announcements.
            ask_runtimes: False: never ask a runtime, wait for the own view instead.
        """
        self.settings = settings or Settings.from_env()
        if runtime_url:
            self.settings = replace(self.settings, runtime_urls=tuple(u.strip() for u in runtime_url.split(",")
                                                                      if u.strip()))
        self.runtime_reads = RuntimeReads(self.settings) if ask_runtimes else None
        self._producer = Producer(self.settings.producer())
        self._closed = False
        self._inbox = self.settings.topic(INBOX)
        self._view: StatusView | None = None
        # Starts the view after a runtime answered this client's first read (see _overlaid).
        self._view_start: threading.Thread | None = None
        self._delivery_errors: list[str] = []
        self._topics_ready = False
        # Held by the one thread that serves the producer's acknowledgements for every caller.
        self._serving = threading.Lock()

    @property
    def view(self) -> StatusView:
        """This process's status view, once it has read the topic to its end."""
        view = self._started_view()
        view.wait_caught_up()
        return view

    def _started_view(self) -> StatusView:
        """This process's status view, started but perhaps still reading the topic."""
        if self._view is None:
            self._ensure_topics()
            self._view = StatusView.shared(self.settings, wait=False)
        return self._view

    def _running_view(self) -> StatusView | None:
        """The view this process already runs for these topics, caught up or not (None: none yet)."""
        if self._view is None:
            self._view = StatusView.running(self.settings)
        return self._view

    def _asking_runtime(self) -> RuntimeReads | None:
        """Whom to ask while the own view is not caught up (None: the view is, or no one to ask).

        Before this process has a view, the runtime is asked first and the view started after
        its answer: a first answer waits neither for the view's set-up nor shares the
        interpreter with its first reads of the topic.
        """
        view = self._running_view()
        return None if self.runtime_reads is None or (view is not None and view.caught_up) else self.runtime_reads

    def _overlaid(self, instance_id: str, status: StatusRecord | None) -> StatusRecord | None:
        """A runtime's answer as this process gives it: its own starts over it (read-your-writes).

        Without a view in this process there are none (a start runs the view); the view is
        then started in the background, to answer once it is caught up.
        """
        view = self._running_view()
        if view is None:
            self._start_view_in_background()
            return status
        return view.overlay(instance_id, status)

    def _start_view_in_background(self) -> None:
        if self._running_view() is None and self._view_start is None:
            self._view_start = threading.Thread(target=self._start_view, name="kwf-client-view", daemon=True)
            self._view_start.start()

    def _start_view(self) -> None:
        try:
            self._started_view()
        except Exception as err:  # the next read that needs the view raises it
            log.warning("the status view did not start: %s", err)

    def _status(self, instance_id: str) -> StatusRecord | None:
        """The instance's status: from a runtime while the own view catches up, else from the view."""
        runtime = self._asking_runtime()
        answer = None if runtime is None else runtime.status(instance_id)
        if answer is not None:
            return self._overlaid(instance_id, answer.record)
        return self.view.get(instance_id)

    def _wait_for_status(self, instance_id: str, until: str, accept: Callable[[StatusRecord | None], bool],
                         timeout: float | None) -> StatusRecord | None:
        """Wait until ``accept(status)``: on a runtime while the own view catches up (a slice at
        a time, so the view takes over once it is current), then on the view."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while (runtime := self._asking_runtime()) is not None:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise not_reached(instance_id, timeout, self._status(instance_id))
            view = self._running_view()
            replaced = None if view is None else view.replaced_by_start(instance_id)
            answer = runtime.wait(instance_id, until, replaced,
                                  REMOTE_WAIT_SLICE_S if remaining is None else min(remaining, REMOTE_WAIT_SLICE_S))
            if answer is None:
                break
            status = self._overlaid(instance_id, answer.record)
            if accept(status):
                return status
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        return self._started_view().wait_for(instance_id, accept, remaining)

    # -- starting ------------------------------------------------------------------------

    def schedule_new_workflow(self, workflow: Callable[..., Any] | str, *, input: Any = None,
                              instance_id: str | None = None, start_at: datetime | None = None,
                              reuse_id_policy: Any = None, traceparent: str | None = None) -> str:
        """Start an instance and return its ID once the start is durable on the inbox.

        Until the runtime reports the instance, this process answers for it as PENDING
        (read-your-writes: ``get_workflow_state`` shows it at once); ``wait_for_workflow_start``
        waits for the runtime to run it. The start carries the current OpenTelemetry
        context, or the W3C ``traceparent`` given, so the workflow's spans and its
        activities' join the caller's trace.

        Raises:
            InstanceExists: ``instance_id`` names an instance that has not ended.
            PayloadTooLarge: the input is over ``KWF_MAX_PAYLOAD_BYTES``.
            TimeoutError: the broker did not take the start in time.
        """
        instance_id = instance_id or uuid.uuid4().hex
        with remote_parent(traceparent):
            start, execution_id, previous = self._send_start(workflow, input, instance_id, start_at)
        now = now_utc()
        # A workflow that continues as new in its first step replaces the execution ID in the
        # same transaction, so any execution other than the previous one is the runtime's word.
        self.view.expect_start(StatusRecord(instance_id, execution_id, start.name, WorkflowStatus.PENDING, now, now,
                                            start.input), previous)
        return instance_id

    def schedule_new_workflows(self, workflow: Callable[..., Any] | str,
                               inputs: Iterable[tuple[str, Any]]) -> list[str]:
        """Start many instances without waiting for each to be accepted (bulk, for throughput).

        Args:
            workflow: The workflow function or its registered name.
            inputs: ``(instance_id, input)`` pairs.

        Returns:
            The instance IDs, once every start is on the broker. Query them afterwards with
            ``wait_for_workflow_start``; a running ID is refused by the runtime and logged.
        """
        ids = []
        for instance_id, value in inputs:
            self._send_start(workflow, value, instance_id, None, check=False, flush=False)
            ids.append(instance_id)
        self._flush()
        return ids

    def _send_start(self, workflow: Callable[..., Any] | str, value: Any, instance_id: str, start_at: datetime | None,
                    check: bool = True, flush: bool = True) -> tuple[ExecutionStarted, str, str | None]:
        """Send a start; return it, its execution ID and (with ``check``) the execution it replaces."""
        validate_instance_id(instance_id)
        # Bad input is refused before anything touches the broker.
        scheduled = None if start_at is None else (start_at if start_at.tzinfo else start_at.replace(tzinfo=UTC))
        start = ExecutionStarted(name_of(workflow), self._encode(value, "input"), None, scheduled)
        previous = None
        if check:
            current = self.view.get(instance_id)
            if current is not None and current.runtime_status not in ENDED:
                raise InstanceExists(
                    f"instance {instance_id} already exists and is {current.runtime_status.name}; "
                    "terminate it or wait for it to end, or pick another ID"
                )
            previous = None if current is None else current.execution_id
        execution_id = uuid.uuid4().hex
        self._produce(HistoryEvent(instance_id, execution_id, -1, now_utc(), start), flush=flush)
        return start, execution_id, previous

    # -- reading -------------------------------------------------------------------------

    def get_workflow_state(self, instance_id: str, *, fetch_payloads: bool = True) -> WorkflowState | None:
        """The instance's latest state, or None if no such instance exists."""
        status = self._status(instance_id)
        return None if status is None else WorkflowState.of(status, fetch_payloads)

    def wait_for_workflow_start(self, instance_id: str, *, fetch_payloads: bool = False,
                                timeout_in_seconds: float = 0) -> WorkflowState | None:
        """Wait until the instance runs (or has ended); 0 waits forever.

        Raises:
            TimeoutError: the time ran out first.
        """
        status = self._wait_for_status(
            instance_id, "started", lambda s: s is not None and s.runtime_status is not WorkflowStatus.PENDING,
            timeout_in_seconds or None)
        return None if status is None else WorkflowState.of(status, fetch_payloads)

    def wait_for_workflow_completion(self, instance_id: str, *, fetch_payloads: bool = True,
                                     timeout_in_seconds: float = 0) -> WorkflowState | None:
        """Wait until the instance has ended (COMPLETED, FAILED or TERMINATED); 0 waits forever.

        Raises:
            TimeoutError: the time ran out first.
        """
        status = self._wait_for_status(instance_id, "ended", lambda s: s is not None and s.runtime_status in ENDED,
                                       timeout_in_seconds or None)
        return None if status is None else WorkflowState.of(status, fetch_payloads)

    def list_workflows(self, *, status: WorkflowStatus | None = None, name: str | None = None,
                       created_after: datetime | None = None,
                       created_before: datetime | None = None) -> list[WorkflowState]:
        """Every instance the filter matches, oldest created first (all pages of ``list_workflows_page``)."""
        states: list[WorkflowState] = []
        token: str | None = None
        while True:
            page = self.list_workflows_page(status=status, name=name, created_after=created_after,
                                            created_before=created_before, page_size=MAX_PAGE_SIZE,
                                            continuation_token=token)
            states.extend(page.workflows)
            token = page.continuation_token
            if token is None:
                return states

    def list_workflows_page(self, *, status: WorkflowStatus | None = None, name: str | None = None,
                            created_after: datetime | None = None, created_before: datetime | None = None,
                            page_size: int = DEFAULT_PAGE_SIZE, continuation_token: str | None = None,
                            fetch_payloads: bool = True) -> WorkflowPage:
        """One page of the instances the filter matches, oldest created first.

        Pass the page's ``continuation_token`` to get the next one (None: this was the last).
        A page reads one range of the view's index, so its cost does not grow with the
        number of instances. ``created_after`` is inclusive, ``created_before`` exclusive.

        Raises:
            ValueError: ``page_size`` is not within 1..1000, or the token is not one a page
                handed out (``BadContinuationToken``).
        """
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size is between 1 and {MAX_PAGE_SIZE}, not {page_size}")
        query = ListFilter(status, name, None if created_after is None else created_ms(created_after),
                           None if created_before is None else created_ms(created_before))
        runtime = self._asking_runtime()
        page = None if runtime is None else runtime.page(query, page_size, continuation_token)
        if page is not None:
            self._start_view_in_background()
        else:
            page = self.view.list_page(query, page_size, continuation_token)
        return WorkflowPage([WorkflowState.of(s, fetch_payloads) for s in page.records], page.continuation_token)

    # -- managing ------------------------------------------------------------------------

    def raise_workflow_event(self, instance_id: str, event_name: str, *, data: Any = None) -> None:
        """Send an external event; names compare case-insensitively. Unknown instances drop it."""
        validate_instance_id(instance_id)
        validate_event_name(event_name)
        self._command(instance_id, EventRaised(event_name, self._encode(data, "event data")))

    def terminate_workflow(self, instance_id: str, *, output: Any = None, recursive: bool = True) -> None:
        """Terminate the instance (and its children unless ``recursive=False``) and wait for it."""
        self._command(instance_id, ExecutionTerminated(None, self._encode(output, "output"), recursive))
        self.view.wait_for(instance_id, lambda s: s is None or s.runtime_status in ENDED, DEFAULT_ACK_TIMEOUT_S)

    def pause_workflow(self, instance_id: str) -> None:
        """Suspend the instance; events that arrive meanwhile are kept for its resume."""
        self._command(instance_id, ExecutionSuspended(None))
        self.view.wait_for(instance_id, lambda s: s is None or s.runtime_status in {WorkflowStatus.SUSPENDED, *ENDED},
                           DEFAULT_ACK_TIMEOUT_S)

    def resume_workflow(self, instance_id: str) -> None:
        """Resume a suspended instance."""
        self._command(instance_id, ExecutionResumed(None))
        self.view.wait_for(instance_id, lambda s: s is None or s.runtime_status is not WorkflowStatus.SUSPENDED,
                           DEFAULT_ACK_TIMEOUT_S)

    def purge_workflow(self, instance_id: str, *, recursive: bool = True) -> None:
        """Remove an ended instance and its history; its ID can then be started again."""
        current = self.view.get(instance_id)
        if current is not None and current.runtime_status not in ENDED:
            raise ValueError(f"instance {instance_id} is {current.runtime_status.name}: only ended instances "
                             "can be purged; terminate it first")
        self._command(instance_id, PurgeRequested())
        self.view.wait_for(instance_id, lambda s: s is None, DEFAULT_ACK_TIMEOUT_S)

    def purge_workflows(self, *, status: Iterable[WorkflowStatus | str] | None = None, name: str | None = None,
                        created_before: datetime | None = None,
                        created_after: datetime | None = None) -> BulkOperation:
        """Purge every ended instance the filter matches, as one durable command.

        Returns once the broker has the command; ``.wait()`` on the result waits until it
        has reached the instances it matched. ``status`` defaults to every final status.
        """
        command = bulk_command(PURGE, status=status, name=name, created_before=created_before,
                               created_after=created_after)
        return send_bulk(self._producer, self._inbox, command, self.view, self._flush, self._delivered)

    def terminate_workflows(self, *, status: Iterable[WorkflowStatus | str] | None = None, name: str | None = None,
                            created_before: datetime | None = None, created_after: datetime | None = None,
                            output: Any = None) -> BulkOperation:
        """Terminate every unended instance the filter matches, as one durable command (see ``purge_workflows``)."""
        command = bulk_command(TERMINATE, status=status, name=name, created_before=created_before,
                               created_after=created_after, output=self._encode(output, "output"))
        return send_bulk(self._producer, self._inbox, command, self.view, self._flush, self._delivered)

    def close(self) -> None:
        """Deliver what is pending and close the Kafka producer; the client is unusable after."""
        if self._closed:
            return
        if self._view_start is not None:
            # Its view is then registered and closed with the others (StatusView.close_shared).
            self._view_start.join(DELIVERY_TIMEOUT_S)
        self._flush()
        # Closed here rather than left to the garbage collector: a producer still referenced
        # somewhere keeps reconnecting (and logging) after its broker has gone.
        self._producer.close()
        self._closed = True

    def __enter__(self) -> WorkflowClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing ------------------------------------------------------------------------

    def _command(self, instance_id: str, event: Any) -> None:
        validate_instance_id(instance_id)
        self._produce(HistoryEvent(instance_id, "", -1, now_utc(), event))

    def _encode(self, value: Any, what: str) -> str | None:
        text = payload.encode(value)
        payload.check_size(text, what, self.settings.max_payload_bytes)
        return text

    def _ensure_topics(self) -> None:
        """Create the runtime's topics where missing, once: a runtime may not have run yet."""
        if not self._topics_ready:
            ensure_workflow_topics(self.settings)
            self._topics_ready = True

    def _produce(self, event: HistoryEvent, flush: bool = True) -> None:
        """Send ``event`` to the inbox; with ``flush``, return once the broker acknowledged it."""
        self._ensure_topics()
        delivery = _Delivery() if flush else None
        while True:
            try:
                self._producer.produce(self._inbox, key=event.instance_id.encode(), value=encode_event(event),
                                       on_delivery=delivery.report if delivery else self._delivered,
                                       headers=headers_of_context())
                break
            except BufferError:  # the local queue is full: let deliveries drain it
                self._producer.poll(0.05)
        if delivery is not None:
            self._await(delivery)

    def _await(self, delivery: _Delivery) -> None:
        """Wait for one record's acknowledgement, not for every record in flight: callers on
        other threads keep producing, and a whole-producer flush would wait for theirs too.

        Short flushes send at once (no linger) and serve every thread's reports; one thread
        at a time flushes and the others wait on their own acknowledgement. Thirty-two
        threads flushing at once each woke the producer's broker threads every 2 ms.
        """
        deadline = time.monotonic() + DELIVERY_TIMEOUT_S
        while not delivery.done.is_set():
            if time.monotonic() > deadline:
                raise TimeoutError(f"command not delivered to {self.settings.bootstrap_servers} within "
                                   f"{DELIVERY_TIMEOUT_S:.0f} s; is the broker running?")
            if self._serving.acquire(blocking=False):
                try:
                    self._producer.flush(DELIVERY_POLL_S)
                finally:
                    self._serving.release()
            else:
                delivery.done.wait(DELIVERY_POLL_S)
        if delivery.error is not None:
            raise RuntimeError(f"the broker refused the command: {delivery.error}")

    def _delivered(self, err: Any, _: Any) -> None:
        if err is not None:
            self._delivery_errors.append(str(err))

    def _flush(self) -> None:
        if self._producer.flush(DELIVERY_TIMEOUT_S) > 0:
            raise TimeoutError(f"commands not delivered to {self.settings.bootstrap_servers} within "
                               f"{DELIVERY_TIMEOUT_S:.0f} s; is the broker running?")
        if self._delivery_errors:
            errors, self._delivery_errors = self._delivery_errors, []
            raise RuntimeError(f"the broker refused {len(errors)} command(s): {errors[0]}")


class _Delivery:
    """The acknowledgement of one produced record, set by the producer's delivery report."""

    __slots__ = ("done", "error")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.error: str | None = None

    def report(self, err: Any, _: Any) -> None:
        self.error = None if err is None else str(err)
        self.done.set()


DaprWorkflowClient = WorkflowClient
