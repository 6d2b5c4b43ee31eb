"""Per-key running totals with the changelog as the truth.

Input: increments keyed by account, as JSON (``{"amount": 5}``) or Avro single-object
encoding of ``Increment``. State: the total per key. Each increment emits the new total
(ASCII decimal) to the changelog and to the output topic; ``apply_changelog`` writes it
to the store, so a lost store is rebuilt from the changelog alone.

    KWF_BOOTSTRAP_SERVERS=127.0.0.1:9092 python -m examples.running_totals \\
        --input totals.in --changelog totals.changelog --output totals.out --dlq totals.dlq \\
        --group totals --state-dir .kwf/state --process-id host-1
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from streams.kafka_config import client_settings
from streams.processor import Batch, Processor, ProcessorConfig, run_until_signal
from streams.serde import MAGIC, AvroSerde, SerdeError
from streams.store import PartitionStore, StoreBatch

INCREMENT_SCHEMA = {
    "type": "record",
    "name": "Increment",
    "namespace": "examples",
    "fields": [{"name": "amount", "type": "long"}],
}


def encode_total(total: int) -> bytes:
    return str(total).encode()


class RunningTotals:
    """The handler: decode increments, add them up per key, emit the totals."""

    def __init__(self, output_topic: str) -> None:
        self.output_topic = output_topic
        self.avro = AvroSerde(INCREMENT_SCHEMA)

    def decode(self, topic: str, key: bytes | None, value: bytes | None) -> int:
        if key is None:
            raise SerdeError("an increment needs the account as its record key")
        if value is None:
            raise SerdeError("an increment needs a value")
        if value[:2] == MAGIC:
            amount = self.avro.decode(value)["amount"]
        else:
            try:
                # Text, not bytes: json.loads would first sniff the encoding of bytes.
                amount = json.loads(value.decode())["amount"]
            except (ValueError, TypeError, KeyError) as err:
                raise SerdeError(f"not a JSON increment ({type(err).__name__}: {err})") from err
        if type(amount) is not int:
            raise SerdeError(f"amount must be an integer, got {type(amount).__name__}")
        return amount

    def process(self, batch: Batch) -> None:
        # The store shows totals as of the last commit; this batch's own updates live here.
        totals: dict[bytes, int] = {}
        store_get = batch.store.get
        emit = batch.emit
        emit_changelog = batch.emit_changelog
        output = self.output_topic
        for record in batch.records:
            key = record.key
            assert key is not None  # decode refuses records without a key
            total = totals.get(key)
            if total is None:
                stored = store_get(key)
                total = 0 if stored is None else int(stored)
            total += record.value
            totals[key] = total
            value = encode_total(total)
            emit_changelog(key, value, total)
            emit(output, key, value)

    def apply_changelog(
        self, store_batch: StoreBatch, store: PartitionStore, key: bytes | None, value: bytes | None, decoded: Any
    ) -> None:
        if key is None:
            return
        if value is None:
            store_batch.delete(key)
        else:
            store_batch.put(key, value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m examples.running_totals", description=__doc__.split("\n")[0])
    parser.add_argument("--input", required=True)
    parser.add_argument("--changelog", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--dlq", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--process-id", required=True)
    parser.add_argument("--session-timeout-ms", type=int, default=6000)
    parser.add_argument("--transaction-timeout-ms", type=int, default=60000)
    parser.add_argument("--max-batch-records", type=int, default=500)
    parser.add_argument("--standby-replicas", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    config = ProcessorConfig(
        group_id=args.group,
        input_topic=args.input,
        changelog_topic=args.changelog,
        dlq_topic=args.dlq,
        state_dir=args.state_dir,
        process_id=args.process_id,
        client=client_settings(),
        session_timeout_ms=args.session_timeout_ms,
        transaction_timeout_ms=args.transaction_timeout_ms,
        max_batch_records=args.max_batch_records,
        standby_replicas=args.standby_replicas,
    )
    run_until_signal(Processor(config, RunningTotals(args.output)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
