"""One transactional producer per processor, and what each transaction error means.

``classify_error`` is the decision, a plain function: retry the call, abort the
transaction and go on, replace the producer and go on, or stop.

A transaction that outlives ``transaction.timeout.ms`` is aborted by its coordinator,
which bumps the producer's epoch. That happens whenever a broker is lost mid-transaction:
an ``acks=all`` write waits for the dead replica until the controller fences it (the
broker's ``broker.session.timeout.ms``, 9 s by default), and a coordinator on the lost
broker answers nothing until its partition has a new leader. librdkafka then reports a
fatal error (``_FENCED``, or ``INVALID_TXN_STATE`` from the new coordinator) and the
producer is done for. Nothing of the transaction is visible, so a new producer with the
same transactional id (its ``init_transactions`` takes the next epoch) can carry on once
the consumer is rewound to its committed offsets: the writer renews itself in ``abort``.

Every transactional call runs through a ``CallRunner`` and is waited for at most its own
timeout plus ``HUNG_CALL_GRACE_S``, since librdkafka does not always return after a broker
loss. A call given up on leaves the producer spent and untouched until that call returns
(then it is purged and closed on the call's worker, ``close_when_returned``); what follows depends on
the call: ``begin``, ``send_offsets`` or ``abort`` that hung renew the producer (nothing of
the transaction committed), while a hung ``commit`` (outcome unknown) or ``init`` (no
producer to carry on with) raise ``RestartRequired`` for the runtime to start the processor
again.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Mapping
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer, TopicPartition

from streams.bounded_call import CallHung, CallRunner, close_when_returned

log = logging.getLogger("streams.transaction")

# init_transactions waits for the coordinator to abort a predecessor's open transaction;
# on a busy single broker that takes a few seconds, a minute means something is wrong.
INIT_TIMEOUT_S = 60.0
# Retriable errors (coordinator moving, request timeouts) are retried this long; after
# that the broker is unreachable and the transaction is aborted (or the processor stops).
RETRY_DEADLINE_S = 60.0
# librdkafka's own retries run inside each call; this bounds one attempt of a commit or abort.
CALL_TIMEOUT_S = 30.0
# begin_transaction has no timeout and only waits for librdkafka's own thread: a call this
# long has hung (librdkafka issue 4420: behind a fatal error).
BEGIN_BOUND_S = 10.0
# Pause before retrying a retriable error, so a struggling broker is not hammered.
RETRY_BACKOFF_S = 0.1
# A full local queue empties as the broker acknowledges; wait this long per try.
QUEUE_FULL_WAIT_S = 0.05
# Flushing on close: outstanding records belong to an aborted or committed transaction anyway.
CLOSE_FLUSH_S = 5.0
# A healthy producer's close (after the flush) only stops its threads: this long means a
# broker it still waits for is gone; the process goes on shutting down without it.
CLOSE_BOUND_S = 10.0
# A spent producer's close tries one last abort, which waits for a broker that may still be
# away (seen: 25 s, until the broker was back); its epoch is fenced by the new one anyway.
DISCARD_BOUND_S = 10.0
# send_offsets_to_transaction can block past its timeout, for good, once the group
# coordinator's broker is lost (librdkafka issues 5456 and 5511, open in 2.16).
SEND_OFFSETS_TIMEOUT_S = 10.0
# Every transactional call runs on a worker thread (streams.bounded_call) and is given up
# on this long after its own timeout: librdkafka returns within a second of it when it works.
HUNG_CALL_GRACE_S = 5.0
# A producer is renewed after a lost broker, once or twice per outage; more renewals than
# this within the window mean another process runs with the same transactional id (the
# two would fence each other forever), so the processor stops and says so.
MAX_RENEWALS, RENEWAL_WINDOW_S = 5, 300.0

# The producer's epoch was bumped under it: by the coordinator aborting a transaction that
# timed out, or by another process with the same transactional id.
FENCING_CODES = frozenset(
    {
        KafkaError._FENCED,
        KafkaError.PRODUCER_FENCED,
        KafkaError.INVALID_PRODUCER_EPOCH,
        KafkaError.INVALID_TXN_STATE,
    }
)
# Settings no new producer can fix.
REFUSED_CODES = frozenset(
    {
        KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
        KafkaError.INVALID_TRANSACTION_TIMEOUT,
        KafkaError.CLUSTER_AUTHORIZATION_FAILED,
    }
)


class ProcessorFenced(RuntimeError):
    """The processor cannot go on: another process with the same transactional id took over,
    or the producer hit a fatal error. Its open transaction was aborted; restart it (with a
    process_id of its own if two ran with the same one).
    """

    def __init__(self, message: str, error: KafkaError | None = None) -> None:
        super().__init__(message)
        self.error = error


class RestartRequired(KafkaException):
    """Only a fresh start of the processor clears this: a producer call never returned where
    replacing the producer is not enough (``init_transactions``), or a commit's outcome is
    unknown (the consumer position and the stores could disagree with what committed). A
    retriable Kafka timeout, so the runtime starts the processor again, which restores its
    stores and resumes from the committed offsets.
    """

    def __init__(self, message: str) -> None:
        super().__init__(KafkaError(KafkaError._TIMED_OUT, message, retriable=True))


class AbortRequired(Exception):
    """The current transaction failed and must be aborted; processing can go on after."""

    def __init__(self, error: KafkaError) -> None:
        super().__init__(error.str())
        self.error = error


class TxnAction(enum.Enum):
    RETRY = "retry"
    ABORT = "abort"
    RENEW = "renew"
    FATAL = "fatal"


def classify_error(error: KafkaError) -> TxnAction:
    """What to do after a transactional call failed with ``error``.

    Refused settings stop the processor. Fencing and other fatal producer errors renew
    the producer (which aborts the transaction); errors that require an abort (or that
    librdkafka does not mark at all) abort it; either way the batch is replayed.
    Retriable errors repeat the same call.
    """
    if error.code() in REFUSED_CODES:
        return TxnAction.FATAL
    if error.fatal() or error.code() in FENCING_CODES:
        return TxnAction.RENEW
    if error.txn_requires_abort():
        return TxnAction.ABORT
    if error.retriable():
        return TxnAction.RETRY
    return TxnAction.ABORT


class TransactionalWriter:
    """A transactional producer that begins lazily and classifies every error.

    Args:
        settings: Complete producer settings, including ``transactional.id``.
    """

    def __init__(self, settings: Mapping[str, Any]) -> None:
        self.transactional_id = str(settings["transactional.id"])
        self._settings = dict(settings)
        self._producer = self._new_producer()
        self._open = False
        # Offset of the last changelog record per partition in the current transaction.
        self.changelog_offsets: dict[int, int] = {}
        self._awaiting: set[int] = set()
        # The error that left the producer unusable; ``abort`` replaces the producer.
        self._spent: KafkaError | None = None
        # A call of the spent producer never returned, or a commit goes on inside it: it must
        # not be purged, closed or asked to abort.
        self._hung = False
        # The call that never returned: the spent producer is closed once it does.
        self._stuck: CallHung | None = None
        self._renewed_at: list[float] = []
        self._calls = CallRunner(self.transactional_id)

    def _new_producer(self) -> Producer:
        settings = self._settings
        return Producer(settings)

    @property
    def in_transaction(self) -> bool:
        return self._open

    def init(self) -> None:
        """Register the transactional id; aborts a predecessor's open transaction (same id).

        Raises:
            ProcessorFenced: the producer was fenced or refused.
            RestartRequired: the coordinator did not answer in time, or the call hung.
        """
        try:
            self._call(self._producer.init_transactions, INIT_TIMEOUT_S, what="init_transactions",
                       bound_s=INIT_TIMEOUT_S + HUNG_CALL_GRACE_S)
        except CallHung as hung:
            raise RestartRequired(f"{hung} for transactional id {self.transactional_id}") from hung
        except AbortRequired as err:
            if classify_error(err.error) is TxnAction.RETRY:
                # The broker (or its transaction coordinator) is still away: transient.
                raise RestartRequired(
                    f"init_transactions of {self.transactional_id} kept failing for {RETRY_DEADLINE_S:.0f} s: {err}"
                ) from err
            raise ProcessorFenced(
                f"init_transactions failed for transactional id {self.transactional_id}: {err}. "
                "Check that the broker is reachable and allows transactions, and that no other running "
                "process has the same group and process_id."
            ) from err

    def begin(self) -> None:
        """Begin a transaction unless one is open."""
        if self._open:
            return
        self.changelog_offsets = {}
        self._awaiting = set()
        try:
            self._call(self._producer.begin_transaction, what="begin_transaction", bound_s=BEGIN_BOUND_S)
        except CallHung:
            raise AbortRequired(self._spent) from None  # type: ignore[arg-type]
        self._open = True

    def produce(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: int | None = None,
        headers: list[tuple[str, bytes | None]] | None = None,
        on_delivery: Any = None,
    ) -> None:
        """Send one record in the current transaction (begun here if needed)."""
        if not self._open:
            self.begin()
        target = -1 if partition is None else partition
        while True:
            try:
                if on_delivery is None:
                    self._producer.produce(topic, value, key, target, headers=headers)
                else:
                    self._producer.produce(topic, value, key, target, headers=headers, on_delivery=on_delivery)
                return
            except BufferError:
                # The local queue is full: serve delivery reports until it drains.
                self._producer.poll(QUEUE_FULL_WAIT_S)
            except KafkaException as err:
                self._raise_for(err.args[0], "produce")

    def produce_changelog(self, topic: str, partition: int, entries: list[tuple[Any, Any, Any]]) -> None:
        """Send changelog records to ``partition``; remember the last one's offset on delivery."""
        last = len(entries) - 1
        self._awaiting.add(partition)
        for index, (key, value, _decoded) in enumerate(entries):
            if index == last:
                # One delivery report per partition is enough: offsets within it only grow.
                self.produce(topic, key, value, partition, on_delivery=self._on_changelog_delivery)
            else:
                self.produce(topic, key, value, partition)

    def _on_changelog_delivery(self, error: KafkaError | None, message: Any) -> None:
        if error is not None:
            return  # the commit fails on it and the transaction is aborted
        self.changelog_offsets[message.partition()] = message.offset()
        self._awaiting.discard(message.partition())

    def commit(self, offsets: list[TopicPartition], group_metadata: Any) -> None:
        """Add the consumed ``offsets`` (when any) and commit.

        Raises:
            AbortRequired: the transaction must be aborted; nothing of it is visible.
            RestartRequired: the commit never returned, or kept timing out; whether it
                committed is unknown.
            ProcessorFenced: the processor must stop.
        """
        if offsets:
            try:
                self._call(self._producer.send_offsets_to_transaction, offsets, group_metadata,
                           SEND_OFFSETS_TIMEOUT_S, what="send_offsets_to_transaction",
                           bound_s=SEND_OFFSETS_TIMEOUT_S + HUNG_CALL_GRACE_S)
            except CallHung:
                raise AbortRequired(self._spent) from None  # type: ignore[arg-type]
        try:
            self._call(self._producer.commit_transaction, CALL_TIMEOUT_S, what="commit_transaction",
                       bound_s=CALL_TIMEOUT_S + HUNG_CALL_GRACE_S)
        except CallHung as hung:
            # Replaying the batch would repeat it if the commit went through after all, and
            # keeping its offsets would lose it if not: only a restart (stores restored from
            # the changelog, input from the committed offsets) is right either way.
            self._open = False
            raise RestartRequired(f"{hung} for transactional id {self.transactional_id}; whether the "
                                  "transaction committed is unknown") from hung
        except AbortRequired as err:
            if classify_error(err.error) is not TxnAction.RETRY:
                raise
            # Still timing out at the deadline: the commit goes on inside librdkafka (an abort
            # now fails with "conflicting commit_transaction call in progress"), its outcome
            # unknown as above. The producer is left alone, like one whose call hung.
            self._open = False
            self._spent, self._hung = err.error, True
            raise RestartRequired(f"commit_transaction of {self.transactional_id} kept timing out for "
                                  f"{RETRY_DEADLINE_S:.0f} s ({err}); whether the transaction committed is "
                                  "unknown") from err
        self._open = False
        if self._awaiting:
            # commit_transaction serves delivery reports; a last poll catches a straggler.
            self._producer.poll(0)
        if self._awaiting:
            raise ProcessorFenced(
                f"committed transaction of {self.transactional_id} but got no delivery report for the "
                f"changelog records of partitions {sorted(self._awaiting)}; cannot record the applied "
                "offset. Restart the processor: its stores restore from the changelog."
            )

    def abort(self) -> None:
        """Abort the open transaction; renew the producer when it cannot abort it itself.

        Raises:
            ProcessorFenced: the producer was renewed too often, or a new one was fenced.
            RestartRequired: a new one could not be initialised in time.
        """
        if not self._open and self._spent is None:
            return
        self._open = False
        if self._spent is None:
            try:
                self._call(self._producer.abort_transaction, CALL_TIMEOUT_S, what="abort_transaction",
                           bound_s=CALL_TIMEOUT_S + HUNG_CALL_GRACE_S)
                return
            except AbortRequired as err:
                # Still failing after the retries (e.g. the coordinator gone the whole time):
                # a new producer's init_transactions aborts the transaction instead.
                self._spent = err.error
            except CallHung:
                pass  # spent: renewed below
        self._renew()

    def _renew(self) -> None:
        """Replace a spent producer: the new one's ``init_transactions`` takes the next epoch of
        the transactional id, which aborts whatever transaction the old one left open."""
        spent = self._spent
        assert spent is not None
        now = time.monotonic()
        self._renewed_at = [at for at in self._renewed_at if now - at < RENEWAL_WINDOW_S] + [now]
        if len(self._renewed_at) > MAX_RENEWALS:
            raise ProcessorFenced(
                f"the producer of {self.transactional_id} was fenced {len(self._renewed_at)} times within "
                f"{RENEWAL_WINDOW_S:.0f} s, the last with: {spent.str()}. Another process runs with the same "
                "group and process_id (give every running process its own process_id); restart this one.",
                spent,
            )
        log.warning("producer of %s cannot go on (%s); replacing it, which aborts its open transaction",
                    self.transactional_id, spent.str())
        self._let_go()
        self._producer = self._new_producer()
        self._spent = None
        self.init()

    def _let_go(self) -> None:
        """Part with the spent producer: closed now, or once the call stuck inside it returns.

        A commit that goes on inside it with no call of ours waiting (it kept timing out)
        leaves it to the collector, which destroys it once the writer lets go of it.
        """
        stuck, hung = self._stuck, self._hung
        self._stuck, self._hung = None, False
        if stuck is not None:
            producer = self._producer
            close_when_returned(stuck, f"the spent producer of {self.transactional_id}",
                                lambda: _purge_and_close(producer))
        elif not hung:
            self._discard()

    def _discard(self) -> None:
        """Drop the producer's queued records (they belong to an aborted transaction) and close it.

        A fenced producer's ``close`` tries to abort once more and raises the fencing error
        after closing; nothing is left to do with it either way. A purge still blocked after
        ``DISCARD_BOUND_S`` has the producer closed once it returns; a close still blocked
        goes on by itself, its worker holding the producer.
        """
        producer = self._producer
        for name, step in (("purge", producer.purge), ("close", producer.close)):
            try:
                self._calls.run(f"{name} of the spent producer", DISCARD_BOUND_S, step)
            except (KafkaException, RuntimeError) as err:  # RuntimeError: closed already
                log.info("%s of the spent producer of %s: %s", name, self.transactional_id, err)
            except CallHung as hung:
                if name == "purge":
                    close_when_returned(hung, f"the spent producer of {self.transactional_id}", producer.close)
                return

    def abort_quietly(self) -> None:
        """Abort if a transaction is open, logging instead of raising (on the way out).

        A spent producer is not renewed here: closing it is enough, as the coordinator
        aborts its transaction on timeout, or the next start's ``init`` does at once.
        """
        if self._spent is not None:
            self._open = False
            return
        try:
            self.abort()
        except Exception as err:
            log.warning("abort of %s on shutdown failed: %s", self.transactional_id, err)

    def poll(self) -> None:
        """Serve delivery reports without waiting."""
        self._producer.poll(0)

    def close(self) -> None:
        """Abort what is open, flush what is queued and close the producer."""
        try:
            self._close_producer()
        finally:
            self._calls.close()

    def _close_producer(self) -> None:
        self.abort_quietly()
        if self._spent is not None:
            self._let_go()
            return
        producer = self._producer
        try:
            self._calls.run("flush", CLOSE_FLUSH_S + HUNG_CALL_GRACE_S, producer.flush, CLOSE_FLUSH_S)
        except KafkaException as err:  # a producer in a fatal state has nothing left to send
            log.warning("flush of %s on close failed: %s", self.transactional_id, err)
        except CallHung as hung:
            log.warning("flush of %s on close %s; closing the producer once it returns", self.transactional_id, hung)
            close_when_returned(hung, f"the producer of {self.transactional_id}", producer.close)
            return
        # Closed now, not when the last reference goes (a traceback can hold the writer long
        # after): an open producer keeps reconnecting, and logging, once its broker is gone.
        try:
            self._calls.run("close", CLOSE_BOUND_S, producer.close)
        except KafkaException as err:  # closed, but a fatal state's last abort failed
            log.warning("close of %s: %s", self.transactional_id, err)
        except CallHung as hung:  # goes on by itself, its worker holding the producer
            log.warning("close of the producer of %s %s; shutting down without waiting for it",
                        self.transactional_id, hung)

    def _call(self, method: Any, *args: Any, what: str, bound_s: float) -> None:
        """``method(*args)``, retried while its error is retriable, each attempt waited for at
        most ``bound_s``.

        Raises:
            CallHung: an attempt was still blocked after ``bound_s``; the producer is spent
                and must not be touched again (it is left to the collector).
            AbortRequired: the call failed; ``ProcessorFenced`` when no producer can fix it.
        """
        deadline = time.monotonic() + RETRY_DEADLINE_S
        while True:
            try:
                self._calls.run(what, bound_s, method, *args)
                return
            except CallHung as hung:
                self._hung, self._stuck = True, hung
                self._spent = KafkaError(KafkaError._TIMED_OUT, str(hung), fatal=True)
                raise
            except KafkaException as err:
                error = err.args[0]
                if classify_error(error) is TxnAction.RETRY and time.monotonic() < deadline:
                    log.info("%s of %s failed, retrying: %s", what, self.transactional_id, error.str())
                    time.sleep(RETRY_BACKOFF_S)
                    continue
                self._raise_for(error, what)

    def _raise_for(self, error: KafkaError, what: str) -> None:
        action = classify_error(error)
        if action is TxnAction.FATAL:
            raise ProcessorFenced(
                f"{what} failed for transactional id {self.transactional_id}: {error.str()}. "
                "The broker refuses this producer's settings or rights; fix them and restart.",
                error,
            )
        if action is TxnAction.RENEW:
            self._spent = error
        raise AbortRequired(error)


def _purge_and_close(producer: Producer) -> None:
    """Drop a spent producer's queued records (of an aborted transaction) and close it."""
    producer.purge()
    producer.close()
