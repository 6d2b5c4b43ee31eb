"""Undecodable input goes to the dead-letter topic with its error and origin; the rest goes on."""

from __future__ import annotations

import json
from pathlib import Path

from totals_harness import ProcessorProcess, TopicReader, TotalsTopics, assert_exactly_once, increments, produce

from examples.running_totals import INCREMENT_SCHEMA
from streams.serde import AvroSerde


def test_poison_records_land_in_the_dlq_and_processing_goes_on(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    topics = TotalsTopics.create(kafka_bootstrap, topic_prefix)
    before, after = increments(50, keys=5, seed=1), increments(50, keys=5, seed=2)
    avro = AvroSerde(INCREMENT_SCHEMA)
    garbage = [(b"acct-0", b"\x00\xffnot json"), (b"acct-0", b'{"amount": "seven"}'), (None, b'{"amount": 1}')]
    records = [(k, json.dumps({"amount": a}).encode()) for k, a in before]
    records += garbage
    records += [(b"acct-avro", avro.encode({"amount": 40}))]
    records += [(k, json.dumps({"amount": a}).encode()) for k, a in after]
    produce(kafka_bootstrap, topics.input, records)
    proc = ProcessorProcess(kafka_bootstrap, topics, f"{topic_prefix}.totals", tmp_path / "state", "p1", tmp_path)
    output = TopicReader(kafka_bootstrap, topics.output)
    dlq = TopicReader(kafka_bootstrap, topics.dlq)
    try:
        proc.start()
        output.wait_for(len(before) + len(after) + 1, alive=proc)
        dlq.wait_for(len(garbage), alive=proc)
        assert_exactly_once(output.by_key, [*before, (b"acct-avro", 40), *after])
        dead = sorted(dlq.records, key=lambda m: m.value())
        assert [(m.key(), m.value()) for m in dead] == sorted(garbage, key=lambda kv: kv[1])
        for message in dead:
            headers = dict(message.headers())
            assert headers["streams.error"]
            assert headers["streams.source.topic"] == topics.input.encode()
            assert int(headers["streams.source.offset"]) >= 0
            assert 0 <= int(headers["streams.source.partition"]) < 8
        assert b"not a JSON increment" in dict(dead[0].headers())["streams.error"]
        assert proc.stop() == 0
    except BaseException:
        print(proc.logs())
        raise
    finally:
        if proc.alive():
            proc.kill()
        output.close()
        dlq.close()
