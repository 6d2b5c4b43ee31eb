"""Taking over partitions without holding up the others.

A partition just assigned is not processed before the producer of its departed owner is
fenced (``streams/fencing.py``) and its store has caught up with the changelog
(``streams/restore.py``). Both wait on the network: the fence may read the group's members
and register the departed owner's transactional ID, the restore lists the changelog's
offsets first. Done inside the assign callback, that wait held up every other
partition's work, as the callback runs inside the consumer's poll.

So the callback only pauses the new partitions, opens their stores (``Pending``) and reads
their last committers with the taking consumer (one offset fetch); a helper thread fences
and then lists the changelog's offsets (``start_takeover``). The
processor's loop, between transactions, folds the committed changelog records into the
stores from the assignment on, sets each restore's end once the listing is done, and
resumes each partition once its store has reached it. The folding stays in the loop's
thread, so the handler's ``apply_changelog`` never runs concurrently with its processing.
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from streams.store import PartitionStore

# (log start, high watermark) of each changelog partition, read after the fence.
Watermarks = dict[int, tuple[int, int]]


@dataclass
class Pending:
    """A partition assigned to this process and not yet handed to the handler.

    Attributes:
        store: Its store, open and owned by the processor (closed if the partition goes).
        assigned_at: ``time.monotonic()`` at the assignment.
        skipped: The first input offset the consumer handed over anyway, while the
            partition was paused; the partition is rewound there before it resumes.
    """

    store: PartitionStore
    assigned_at: float = field(default_factory=time.monotonic)
    skipped: int | None = None


@dataclass
class Takeover:
    """Partitions assigned together, whose fence and offset listing run on a helper thread."""

    stores: dict[int, PartitionStore]
    watermarks: concurrent.futures.Future[Watermarks]


def start_takeover(stores: dict[int, PartitionStore], prepare: Callable[[list[int]], Watermarks],
                   thread_name: str) -> Takeover:
    """Run ``prepare`` (fence, then list the changelog's offsets) over ``stores``' partitions
    on a daemon thread; its result or error lands in the returned takeover's future.

    A daemon thread rather than a pool: a fence that hangs up to its timeout must not keep
    the interpreter from exiting, nor delay the next takeover.
    """
    future: concurrent.futures.Future[Watermarks] = concurrent.futures.Future()

    def run() -> None:
        future.set_running_or_notify_cancel()
        try:
            future.set_result(prepare(sorted(stores)))
        except BaseException as err:
            future.set_exception(err)

    threading.Thread(target=run, name=thread_name, daemon=True).start()
    return Takeover(dict(stores), future)
