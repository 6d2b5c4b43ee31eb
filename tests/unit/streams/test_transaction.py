"""What each transactional error leads to: retry the call, abort and replay, or stop."""

from __future__ import annotations

from confluent_kafka import KafkaError

from streams.transaction import TxnAction, classify_error


def test_fencing_stops_the_processor() -> None:
    for code in (KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH):
        assert classify_error(KafkaError(code)) is TxnAction.FATAL


def test_fatal_wins_over_everything_else() -> None:
    error = KafkaError(KafkaError._STATE, fatal=True, retriable=True, txn_requires_abort=True)
    assert classify_error(error) is TxnAction.FATAL


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
