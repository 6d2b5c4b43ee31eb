"""A local, always-current view of ``kwf.status``: the latest status of every instance.

The view is a ``streams.mirror.TopicMirror`` of the compacted status topic: a RocksDB copy
that outlives its process in a folder of its own (``Settings.view_dir``, one per cluster
and topic prefix, locked by the process using it), so a new client resumes from the
offsets the last one stored and reads only what changed since: its first answer costs
the tail, not every instance ever run. With each record the view keeps the index that
``list_page`` reads (``engine.api.status_index``). Readers wait for the view to show what
they expect (read-your-writes for the client), each on its instance: a write wakes the
readers of the instances it changed, not every reader.

The topic may not exist yet when the view starts, and partitions may be added to it
later: the mirror looks its partitions up again from time to time and reads new ones
from their beginning. The view is caught up once it has read every partition there is
to its end; a topic with no partitions is never caught up.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from engine.api.history_reader import HistoryView
from engine.api.status_index import DEFAULT_PAGE_SIZE, ListFilter, index_keys, instance_of, page_range, token_after
from engine.api.view_folders import views_folder
from engine.state.codec import StatusRecord, decode_status
from engine.state.config import Settings
from engine.state.topics import STATUS
from streams.mirror import TopicMirror
from streams.store import StoreBatch

log = logging.getLogger("engine.api.status_view")

# How long a new view may take to read the topic up to its end before start() gives up.
CATCH_UP_TIMEOUT_S = 60.0
# Starts this process made durable that the topic does not show yet; past this many (no
# runtime is reading the inbox) the oldest are forgotten, so memory stays bounded.
PROVISIONAL_LIMIT = 100_000


@dataclass(frozen=True)
class StatusPage:
    """One page of a list: the records, and the token of the next page (None: the last)."""

    records: list[StatusRecord]
    continuation_token: str | None


class _InstanceWaits(threading.Condition):
    """The mirror's condition, with a condition per instance someone waits for.

    The mirror notifies it after each write; that wakes only the readers of the instances
    the write changed (``touched``, filled by the view's change hook on the mirror's thread
    during the same read). Thirty-two threads each waiting for its own instance would
    otherwise all wake, take the lock and read the store on every write.
    """

    def __init__(self) -> None:
        self._shared_lock = threading.RLock()
        super().__init__(self._shared_lock)
        self.touched: set[str] = set()
        # instance -> (its condition on this lock, the readers waiting on it)
        self._instances: dict[str, tuple[threading.Condition, int]] = {}

    def wait_on(self, instance_id: str, timeout: float) -> None:
        """Wait (the lock held) until ``instance_id`` changes or ``timeout`` passes."""
        condition, readers = self._instances.get(instance_id) or (threading.Condition(self._shared_lock), 0)
        self._instances[instance_id] = (condition, readers + 1)
        try:
            condition.wait(timeout)
        finally:
            condition, readers = self._instances[instance_id]
            if readers == 1:
                del self._instances[instance_id]
            else:
                self._instances[instance_id] = (condition, readers - 1)

    def notify_instance(self, instance_id: str) -> None:
        """Wake the readers of ``instance_id`` (the lock held)."""
        waiting = self._instances.get(instance_id)
        if waiting is not None:
            waiting[0].notify_all()

    def notify_all(self) -> None:  # type: ignore[override]
        super().notify_all()
        for instance_id in self.touched:
            self.notify_instance(instance_id)
        self.touched.clear()


class StatusView:
    """The latest ``StatusRecord`` per instance, kept current by a consumer thread."""

    _shared: dict[tuple[str, str, str], StatusView] = {}
    _shared_lock = threading.Lock()

    def __init__(self, settings: Settings, folder: Path | None = None) -> None:
        """A view whose persistent folder's slots live in ``folder`` (default: the cluster's
        folder under ``settings.view_dir``)."""
        self.settings = settings
        self.topic = settings.topic(STATUS)
        self._changed = _InstanceWaits()
        self._mirror = TopicMirror(settings.client(), self.topic, folder or views_folder(settings, self.topic),
                                   on_change=self._on_change, changed=self._changed)
        # instance -> (the PENDING record this process answers with, the execution it replaces)
        self._provisional: OrderedDict[str, tuple[StatusRecord, str | None]] = OrderedDict()

    @property
    def mirror(self) -> TopicMirror:
        """The copy of the topic underneath (where it lives, what it read)."""
        return self._mirror

    @classmethod
    def shared(cls, settings: Settings, wait: bool = True) -> StatusView:
        """One started view per (cluster, topic prefix, application) in this process; with
        ``wait``, once it has read the topic up to its end (else it may still be reading)."""
        key = (settings.bootstrap_servers, settings.topic_prefix, settings.app_id)
        with cls._shared_lock:
            view = cls._shared.get(key)
            if view is None or view._mirror.stopped:
                view = cls._shared[key] = cls(settings)
                view._mirror.begin()
                atexit.register(view.close)
        if wait:
            view.wait_caught_up()
        return view

    @classmethod
    def running(cls, settings: Settings) -> StatusView | None:
        """The shared view of these topics if this process runs one, caught up or not."""
        key = (settings.bootstrap_servers, settings.topic_prefix, settings.app_id)
        with cls._shared_lock:
            view = cls._shared.get(key)
        return None if view is None or view._mirror.stopped else view

    @classmethod
    def close_shared(cls, topic_prefix: str | None = None) -> None:
        """Close the shared views of ``topic_prefix`` (None: every one), status and history,
        before the topics or the broker they read go away."""
        HistoryView.close_shared(topic_prefix)
        with cls._shared_lock:
            closing = [key for key in cls._shared if topic_prefix is None or key[1] == topic_prefix]
            views = [cls._shared.pop(key) for key in closing]
        for view in views:
            view.close()

    def start(self, timeout: float = CATCH_UP_TIMEOUT_S) -> None:
        """Start reading; return once the view has read the topic up to its end."""
        try:
            self._mirror.start(timeout)
        except TimeoutError as err:
            raise TimeoutError(f"the status view did not catch up with {self.topic} within {timeout:.0f} s "
                               f"(broker {self.settings.bootstrap_servers}): {err}") from err

    @property
    def caught_up(self) -> bool:
        """True once the view has read the whole topic (as it stood when it started) once."""
        return self._mirror.caught_up

    def wait_caught_up(self, timeout: float = CATCH_UP_TIMEOUT_S) -> None:
        """Return once ``caught_up``; raise TimeoutError after ``timeout``."""
        try:
            self._mirror.wait_caught_up(timeout)
        except TimeoutError as err:
            raise TimeoutError(f"the status view did not catch up with {self.topic} within {timeout:.0f} s "
                               f"(broker {self.settings.bootstrap_servers}): {err}") from err

    def close(self) -> None:
        self._mirror.close()

    def get(self, instance_id: str) -> StatusRecord | None:
        raw = self._mirror.get(instance_id.encode())
        return self.overlay(instance_id, None if raw is None else decode_status(raw))

    def overlay(self, instance_id: str, status: StatusRecord | None) -> StatusRecord | None:
        """``status`` (the topic's word, from this view or another process's) as this process
        answers it: its own start made durable since (read-your-writes) shows instead, until
        the topic shows an execution other than the one that start replaced."""
        provisional = self._provisional.get(instance_id)
        if provisional is None:
            return status
        record, replaced = provisional
        if status is not None and status.execution_id != replaced:
            self._provisional.pop(instance_id, None)  # the runtime's word replaces ours
            return status
        return record

    def _on_change(self, batch: StoreBatch, key: bytes, old: bytes | None, new: bytes | None) -> None:
        """Move the instance's index keys with its status, in the batch that writes it."""
        before = None if old is None else decode_status(old)
        after = None if new is None else decode_status(new)
        for index_key in set(index_keys(before) if before else []) - set(index_keys(after) if after else []):
            batch.delete(index_key)
        for index_key in index_keys(after) if after else []:
            batch.put(index_key, b"")
        self._changed.touched.add(key.decode(errors="replace"))
        if self._provisional:
            self._settle(key, after)

    def _settle(self, key: bytes, status: StatusRecord | None) -> None:
        """The topic has news of an instance this process answers for: its word wins once it
        shows an execution other than the replaced one, or the instance's removal."""
        instance_id = key.decode(errors="replace")
        provisional = self._provisional.get(instance_id)
        if provisional is not None and (status is None or status.execution_id != provisional[1]):
            self._provisional.pop(instance_id, None)

    def expect_start(self, record: StatusRecord, replaced: str | None) -> None:
        """Answer for a start this process has made durable on the inbox (``record``, PENDING)
        until the topic shows an execution other than ``replaced`` for its instance.

        A start is durable once the inbox has it; this is read-your-writes without waiting
        for the orchestrator's trip. Other processes see the start when the topic shows it.
        """
        with self._changed:
            self._provisional[record.instance_id] = (record, replaced)
            self._provisional.move_to_end(record.instance_id)
            while len(self._provisional) > PROVISIONAL_LIMIT:
                self._provisional.popitem(last=False)
            self._changed.notify_instance(record.instance_id)

    def replaced_by_start(self, instance_id: str) -> str | None:
        """The execution a start of this process replaces, while it answers for that start."""
        provisional = self._provisional.get(instance_id)
        return None if provisional is None else provisional[1]

    def wait_for(self, instance_id: str, accept: Callable[[StatusRecord | None], bool],
                 timeout: float | None) -> StatusRecord | None:
        """Wait until ``accept(status)`` holds; raise TimeoutError after ``timeout`` (None: forever)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._changed:
            while True:
                status = self.get(instance_id)
                if accept(status):
                    return status
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise not_reached(instance_id, timeout, status)
                self._changed.wait_on(instance_id, 0.5 if remaining is None else min(remaining, 0.5))

    def records(self) -> Iterator[StatusRecord]:
        """Every instance's latest status, ordered by instance ID."""
        for _, raw in self._mirror.records():
            yield decode_status(raw)

    def list_page(self, query: ListFilter, page_size: int = DEFAULT_PAGE_SIZE,
                  continuation_token: str | None = None) -> StatusPage:
        """One page of the instances ``query`` matches, oldest created first; reads one
        index range, whatever the number of instances.

        Raises:
            BadContinuationToken: the token was not handed out by this method.
        """
        prefix, start, end = page_range(query, continuation_token)
        records: list[StatusRecord] = []
        last: bytes | None = None
        more = False
        for index_key, _ in self._mirror.scan(start, end):
            if len(records) == page_size:
                more = True
                break
            last = index_key
            raw = self._mirror.get(instance_of(index_key, prefix).encode())
            status = None if raw is None else decode_status(raw)
            # The index and the records change together, but between reading one and the
            # other a write may land: a record that no longer matches is left out.
            if status is not None and query.matches(status):
                records.append(status)
        return StatusPage(records, token_after(last, prefix) if more and last is not None else None)


def not_reached(instance_id: str, timeout: float | None, status: StatusRecord | None) -> TimeoutError:
    """The error of a wait for ``instance_id`` that timed out, naming what was last seen."""
    seen = status.runtime_status.name if status else "no such instance"
    return TimeoutError(f"instance {instance_id} did not reach the expected state within {timeout or 0:.1f} s "
                        f"(last seen: {seen})")
