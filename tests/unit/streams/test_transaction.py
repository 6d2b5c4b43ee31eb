"""What each transactional error leads to: retry the call, abort and replay, renew the
producer and replay, or stop; and the writer's renewal of a spent producer."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import KafkaError

from engine.runtime import transient
from streams import transaction
from streams.transaction import (
    AbortRequired,
    ProcessorFenced,
    RestartRequired,
    TxnAction,
    classify_error,
)
from tests.unit.streams.fake_producer import FakeProducer, FakeWriter


def test_fencing_renews_the_producer() -> None:
    # The coordinator aborting a timed-out transaction bumps the epoch: librdkafka reports
    # _FENCED, or (transactions v2) INVALID_TXN_STATE on the next EndTxn.
    for code in (KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH,
                 KafkaError.INVALID_TXN_STATE):
        assert classify_error(KafkaError(code)) is TxnAction.RENEW


def test_a_fatal_producer_error_renews_the_producer() -> None:
    error = KafkaError(KafkaError._STATE, fatal=True, retriable=True, txn_requires_abort=True)
    assert classify_error(error) is TxnAction.RENEW


def test_refused_settings_stop_the_processor() -> None:
    for code in (KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED, KafkaError.INVALID_TRANSACTION_TIMEOUT):
        assert classify_error(KafkaError(code, fatal=True)) is TxnAction.FATAL


def test_abortable_error_aborts() -> None:
    error = KafkaError(KafkaError.ILLEGAL_GENERATION, txn_requires_abort=True)
    assert classify_error(error) is TxnAction.ABORT


def test_abortable_beats_retriable() -> None:
    error = KafkaError(KafkaError._TIMED_OUT, retriable=True, txn_requires_abort=True)
    assert classify_error(error) is TxnAction.ABORT


def test_retriable_error_repeats_the_call() -> None:
    assert classify_error(KafkaError(KafkaError._TIMED_OUT, retriable=True)) is TxnAction.RETRY


def test_unmarked_error_aborts_rather_than_stops() -> None:
    # e.g. a record the broker refuses as too large: the batch is replayed (and, if it keeps
    # failing, the processor gives up after a bounded number of aborts).
    assert classify_error(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE)) is TxnAction.ABORT


FENCED = KafkaError(KafkaError._FENCED, fatal=True)


def test_a_spent_producer_whose_close_raises_is_still_replaced() -> None:
    # confluent-kafka's close of a fenced producer tries an abort and raises the fencing error.
    writer = FakeWriter([{"commit_transaction": FENCED, "close": FENCED}])
    writer.init()
    writer.produce("t", b"k", b"v")
    with pytest.raises(AbortRequired):
        writer.commit([], None)
    writer.abort()
    assert len(writer.producers) == 2
    writer.close()
    assert writer.producers[1].calls[-1] == "close"


def test_a_fenced_commit_aborts_by_renewing_the_producer() -> None:
    writer = FakeWriter([{"commit_transaction": FENCED}])
    writer.init()
    writer.produce("t", b"k", b"v")
    with pytest.raises(AbortRequired):
        writer.commit([], None)
    writer.abort()
    old, new = writer.producers
    assert "abort_transaction" not in old.calls  # a fenced producer cannot abort
    assert old.calls[-2:] == ["purge", "close"]
    assert new.calls == ["init_transactions"]
    writer.produce("t", b"k", b"v")
    writer.commit([], None)
    assert new.calls[-1] == "commit_transaction"


def test_an_abort_the_producer_cannot_make_renews_it() -> None:
    error = KafkaError(KafkaError.INVALID_TXN_STATE, fatal=True)
    writer = FakeWriter([{"produce": KafkaError(KafkaError._MSG_TIMED_OUT, txn_requires_abort=True),
                          "abort_transaction": error}])
    writer.init()
    with pytest.raises(AbortRequired):
        writer.produce("t", b"k", b"v")
    writer.abort()
    assert len(writer.producers) == 2 and writer.producers[1].calls == ["init_transactions"]


def test_renewing_over_and_over_means_another_process_has_the_id(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transaction, "MAX_RENEWALS", 2)
    writer = FakeWriter([{"commit_transaction": FENCED}] * 3)
    writer.init()
    for _ in range(2):
        writer.produce("t", b"k", b"v")
        with pytest.raises(AbortRequired):
            writer.commit([], None)
        writer.abort()
    writer.produce("t", b"k", b"v")
    with pytest.raises(AbortRequired):
        writer.commit([], None)
    with pytest.raises(ProcessorFenced, match="same group and process_id"):
        writer.abort()


def test_a_fresh_producer_fenced_at_init_stops_the_processor() -> None:
    writer = FakeWriter([{"init_transactions": KafkaError(KafkaError.PRODUCER_FENCED, fatal=True)}])
    with pytest.raises(ProcessorFenced, match="init_transactions failed"):
        writer.init()


def test_a_send_offsets_that_never_returns_spends_the_producer_without_touching_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # librdkafka issues 5456/5511: blocked for good once the group coordinator's broker is lost.
    monkeypatch.setattr(transaction, "HUNG_CALL_GRACE_S", 0.2)
    monkeypatch.setattr(transaction, "SEND_OFFSETS_TIMEOUT_S", 0.1)
    never = threading.Event()
    writer = FakeWriter([])
    writer.init()
    hung = writer.producers[0]
    hung.send_offsets_to_transaction = lambda *_: never.wait()  # type: ignore[method-assign]
    writer.produce("t", b"k", b"v")
    with pytest.raises(AbortRequired, match="still blocked"):
        writer.commit([object()], None)  # type: ignore[list-item]
    writer.abort()
    assert "purge" not in hung.calls and "close" not in hung.calls
    assert writer.producers[1].calls == ["init_transactions"]
    never.set()


# -- calls that never return (a broker lost mid-call) ---------------------------------


@pytest.fixture
def short_bounds(monkeypatch: pytest.MonkeyPatch) -> Iterator[threading.Event]:
    """Bounds of a fraction of a second; the event releases every hung fake call at the end."""
    for name in ("HUNG_CALL_GRACE_S", "SEND_OFFSETS_TIMEOUT_S", "CALL_TIMEOUT_S", "INIT_TIMEOUT_S", "BEGIN_BOUND_S",
                 "CLOSE_FLUSH_S"):
        monkeypatch.setattr(transaction, name, 0.1)
    released = threading.Event()
    yield released
    released.set()


def hang(producer: FakeProducer, call: str, released: threading.Event) -> None:
    def blocked(*_: Any) -> None:
        producer.calls.append(call)
        released.wait()

    setattr(producer, call, blocked)


def untouched_since(producer: FakeProducer, call: str) -> bool:
    """Nothing was asked of ``producer`` after its ``call`` hung (no purge, close, abort)."""
    return producer.calls[-1] == call


@pytest.mark.timeout(10)
def test_a_begin_that_never_returns_renews_the_producer(short_bounds: threading.Event) -> None:
    # librdkafka issue 4420: begin_transaction (no timeout) blocked behind a fatal error.
    writer = FakeWriter([])
    writer.init()
    hung = writer.producers[0]
    hang(hung, "begin_transaction", short_bounds)
    with pytest.raises(AbortRequired, match="begin_transaction still blocked"):
        writer.begin()
    writer.abort()
    assert untouched_since(hung, "begin_transaction")
    assert writer.producers[1].calls == ["init_transactions"]
    writer.produce("t", b"k", b"v")
    writer.commit([], None)
    assert writer.producers[1].calls[-1] == "commit_transaction"


@pytest.mark.timeout(10)
def test_an_abort_that_never_returns_renews_the_producer(short_bounds: threading.Event) -> None:
    writer = FakeWriter([{"commit_transaction": KafkaError(KafkaError.ILLEGAL_GENERATION, txn_requires_abort=True)}])
    writer.init()
    hung = writer.producers[0]
    hang(hung, "abort_transaction", short_bounds)
    writer.produce("t", b"k", b"v")
    with pytest.raises(AbortRequired):
        writer.commit([], None)
    writer.abort()
    assert untouched_since(hung, "abort_transaction")
    assert writer.producers[1].calls == ["init_transactions"]


@pytest.mark.timeout(10)
def test_a_commit_that_never_returns_restarts_the_processor(short_bounds: threading.Event) -> None:
    # Whether it committed is unknown: neither a replay nor going on is right, a restart is.
    writer = FakeWriter([])
    writer.init()
    hung = writer.producers[0]
    hang(hung, "commit_transaction", short_bounds)
    writer.produce("t", b"k", b"v")
    with pytest.raises(RestartRequired, match="whether the transaction committed is unknown") as raised:
        writer.commit([], None)
    assert transient(raised.value)  # the runtime starts the processor again on it
    assert not writer.in_transaction
    writer.close()
    assert untouched_since(hung, "commit_transaction")
    assert len(writer.producers) == 1


@pytest.mark.timeout(10)
def test_an_init_that_never_returns_after_a_renewal_restarts_the_processor(short_bounds: threading.Event) -> None:
    # The flaky broker restart: send_offsets hung, the producer was replaced, and the new
    # one's init_transactions must not hold the processor either.
    writer = FakeWriter([])
    writer.init()
    first = writer.producers[0]
    hang(first, "send_offsets_to_transaction", short_bounds)
    writer.produce("t", b"k", b"v")
    with pytest.raises(AbortRequired, match="still blocked"):
        writer.commit([object()], None)  # type: ignore[list-item]
    writer._new_producer = lambda: hung_at_init(writer, short_bounds)  # type: ignore[method-assign]
    with pytest.raises(RestartRequired, match="init_transactions still blocked") as raised:
        writer.abort()
    assert transient(raised.value)
    writer.close()
    second = writer.producers[1]
    assert untouched_since(first, "send_offsets_to_transaction") and untouched_since(second, "init_transactions")


def hung_at_init(writer: FakeWriter, released: threading.Event) -> FakeProducer:
    producer = FakeProducer({})
    hang(producer, "init_transactions", released)
    writer.producers.append(producer)
    return producer


def test_an_init_that_keeps_timing_out_restarts_the_processor_instead_of_stopping_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # A broker away longer than the retry deadline is transient, not a fencing: before, the
    # runtime gave up on the processor for good.
    monkeypatch.setattr(transaction, "RETRY_DEADLINE_S", 0.2)
    monkeypatch.setattr(transaction, "RETRY_BACKOFF_S", 0.01)
    writer = FakeWriter([{"init_transactions": KafkaError(KafkaError._TIMED_OUT, retriable=True)}])
    with pytest.raises(RestartRequired, match="kept failing") as raised:
        writer.init()
    assert transient(raised.value)


def test_a_commit_that_keeps_timing_out_restarts_the_processor_without_an_abort(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Seen in the broker restart: the abort that followed spun for a minute on "conflicting
    # commit_transaction call in progress", and a replay could repeat a commit that went through.
    monkeypatch.setattr(transaction, "RETRY_DEADLINE_S", 0.2)
    monkeypatch.setattr(transaction, "RETRY_BACKOFF_S", 0.01)
    writer = FakeWriter([{"commit_transaction": KafkaError(KafkaError._TIMED_OUT, retriable=True)}])
    writer.init()
    writer.produce("t", b"k", b"v")
    with pytest.raises(RestartRequired, match="kept timing out") as raised:
        writer.commit([], None)
    assert transient(raised.value)
    writer.close()
    producer = writer.producers[0]
    assert producer.calls[-1] == "commit_transaction" and "abort_transaction" not in producer.calls


@pytest.mark.timeout(10)
def test_a_spent_producer_whose_close_never_returns_is_left_behind(
        short_bounds: threading.Event, monkeypatch: pytest.MonkeyPatch) -> None:
    # Seen in the broker restart: the fenced producer's close waited for the broker to return.
    monkeypatch.setattr(transaction, "DISCARD_BOUND_S", 0.1)
    writer = FakeWriter([{"commit_transaction": FENCED}])
    writer.init()
    spent = writer.producers[0]
    hang(spent, "close", short_bounds)
    writer.produce("t", b"k", b"v")
    with pytest.raises(AbortRequired):
        writer.commit([], None)
    writer.abort()
    assert spent.calls[-2:] == ["purge", "close"]
    assert writer.producers[1].calls == ["init_transactions"]


def closed_in_time(producer: FakeProducer, *last: str) -> bool:
    deadline = time.monotonic() + 5.0
    while producer.calls[-len(last):] != list(last) and time.monotonic() < deadline:
        time.sleep(0.01)
    return producer.calls[-len(last):] == list(last)


@pytest.mark.timeout(10)
def test_a_renewed_producer_whose_call_hung_is_purged_and_closed_only_once_that_call_returns(
        short_bounds: threading.Event) -> None:
    # librdkafka frees a blocked call's request objects when its handle is purged or
    # destroyed under it, and the process dies on an assertion.
    writer = FakeWriter([])
    writer.init()
    hung = writer.producers[0]
    hang(hung, "send_offsets_to_transaction", short_bounds)
    writer.produce("t", b"k", b"v")
    with pytest.raises(AbortRequired, match="still blocked"):
        writer.commit([object()], None)  # type: ignore[list-item]
    writer.abort()
    writer.close()
    time.sleep(0.2)
    assert untouched_since(hung, "send_offsets_to_transaction")  # no purge, flush or close while blocked
    short_bounds.set()
    assert closed_in_time(hung, "send_offsets_to_transaction", "purge", "close")


@pytest.mark.timeout(10)
def test_a_producer_whose_commit_hung_is_closed_once_the_commit_returns(short_bounds: threading.Event) -> None:
    writer = FakeWriter([])
    writer.init()
    hung = writer.producers[0]
    hang(hung, "commit_transaction", short_bounds)
    writer.produce("t", b"k", b"v")
    with pytest.raises(RestartRequired):
        writer.commit([], None)
    writer.close()
    time.sleep(0.2)
    assert untouched_since(hung, "commit_transaction")
    short_bounds.set()
    assert closed_in_time(hung, "commit_transaction", "purge", "close")


@pytest.mark.timeout(10)
def test_a_flush_on_close_that_hangs_leaves_the_close_to_its_return(short_bounds: threading.Event) -> None:
    writer = FakeWriter([])
    writer.init()
    producer = writer.producers[0]
    hang(producer, "flush", short_bounds)
    writer.close()  # returns although the flush still blocks
    assert untouched_since(producer, "flush")
    short_bounds.set()
    assert closed_in_time(producer, "flush", "close")
