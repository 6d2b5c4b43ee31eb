"""Bulk purge and terminate by filter: one durable command, sent to every partition.

The client writes one ``kwf.BulkCommand`` record to each partition of the inbox and returns
once the broker has them all: from then on the command is as durable as any start. Each
orchestrator applies it to its own instances in chunks (``Orchestrator._apply_bulk``).
``BulkOperation.wait`` follows it through the status view: it waits until every instance
the command matched when it was sent has left (purge) or ended (terminate).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime

from confluent_kafka import Producer

from engine.api.status_view import StatusView
from engine.core.bulk import ENDED, PURGE, BulkCommand, bulk_statuses, to_ms
from engine.core.history import WorkflowStatus
from engine.state.codec import StatusRecord, encode_bulk

# How long a wait without a timeout looks between checks of the view.
WAIT_POLL_S = 0.1


@dataclass
class BulkOperation:
    """A bulk command the broker has accepted.

    Attributes:
        command_id: Names the command in the orchestrators' logs.
        action: ``PURGE`` or ``TERMINATE``.
        partitions: The inbox partitions it was sent to (all of them).
        matched: The instances it matched in the client's view when it was sent.
    """

    command_id: str
    action: str
    partitions: int
    matched: list[str]
    _view: StatusView = field(repr=False)

    def done(self) -> bool:
        """Whether every matched instance has left (purge) or ended (terminate)."""
        return not self.remaining()

    def remaining(self) -> list[str]:
        """The matched instances the command has not reached yet."""
        left = []
        for instance_id in self.matched:
            status = self._view.get(instance_id)
            if self.action == PURGE:
                if status is not None and status.runtime_status in ENDED:
                    left.append(instance_id)
            elif status is not None and status.runtime_status not in ENDED:
                left.append(instance_id)
        return left

    def wait(self, timeout: float | None = 60.0) -> int:
        """Wait until the command has reached every instance it matched; return how many.

        Raises:
            TimeoutError: some are left after ``timeout`` seconds (None: wait forever).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = self.remaining()
            if not left:
                return len(self.matched)
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"bulk {self.action.lower()} {self.command_id}: {len(left)} of "
                                   f"{len(self.matched)} instances not reached within {timeout:.0f} s "
                                   f"(e.g. {left[0]})")
            time.sleep(WAIT_POLL_S)


def bulk_command(action: str, *, status: Iterable[WorkflowStatus | str] | None, name: str | None,
                 created_before: datetime | None, created_after: datetime | None,
                 output: str | None = None) -> BulkCommand:
    """Check a filter and build the command (ValueError names what is wrong)."""
    return BulkCommand(uuid.uuid4().hex, action, bulk_statuses(action, status), name or None, to_ms(created_after),
                       to_ms(created_before), output)


def send_bulk(producer: Producer, inbox: str, command: BulkCommand, view: StatusView,
              flush: Callable[[], None], on_delivery: Callable[..., None]) -> BulkOperation:
    """Send ``command`` to every partition of ``inbox``; return once the broker has it."""
    matched = [s.instance_id for s in view.records() if _matches(command, s)]
    partitions = len(producer.list_topics(inbox, timeout=30).topics[inbox].partitions)
    if partitions == 0:
        raise RuntimeError(f"topic {inbox} does not exist: start a runtime first")
    value = encode_bulk(command)
    for partition in range(partitions):
        producer.produce(inbox, key=command.command_id.encode(), value=value, partition=partition,
                         on_delivery=on_delivery)
    flush()
    return BulkOperation(command.command_id, command.action, partitions, matched, view)


def _matches(command: BulkCommand, status: StatusRecord) -> bool:
    return command.matches(status.runtime_status, status.name, int(status.created_at.timestamp() * 1000))
