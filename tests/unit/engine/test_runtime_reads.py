"""The pure parts of asking a runtime: the wire form of a status, the directory's fold and
the announced URL, and a client that finds no runtime answering stops asking."""

from __future__ import annotations

import json
import socket
from datetime import UTC, datetime

from engine.api.runtime_directory import RuntimeEntry, _fold, advertised_url
from engine.api.runtime_reads import RuntimeReads, record_from_wire, record_to_wire
from engine.core.history import FailureDetails, WorkflowStatus
from engine.state.codec import StatusRecord
from engine.state.config import Settings

AT = datetime(2026, 11, 30, 5, 0, 0, 123000, tzinfo=UTC)


def test_a_status_crosses_the_wire_unchanged() -> None:
    record = StatusRecord("i-1", "x1", "chain3", WorkflowStatus.FAILED, AT, AT, "1", None, "",
                          FailureDetails("boom", "ValueError", None), "parent", 9)
    assert record_from_wire(record_to_wire(record)) == record
    assert record_to_wire(None) is None and record_from_wire(None) is None


def test_the_directory_keeps_the_latest_entry_per_process_and_drops_tombstoned_ones() -> None:
    entries: dict[bytes, RuntimeEntry] = {}
    _fold(entries, b"p1", json.dumps({"process_id": "p1", "url": "http://a:1", "started_at_ms": 1}).encode())
    _fold(entries, b"p2", json.dumps({"process_id": "p2", "url": "http://b:1", "started_at_ms": 2}).encode())
    _fold(entries, b"p1", json.dumps({"process_id": "p1", "url": "http://a:2", "started_at_ms": 3}).encode())
    _fold(entries, b"p2", None)
    _fold(entries, b"p3", b"not json")
    assert list(entries.values()) == [RuntimeEntry("p1", "http://a:2", 3)]


def test_the_announced_url_is_the_advertised_one_else_the_listened_address() -> None:
    settings = Settings()
    assert advertised_url(settings, "127.0.0.1", 3500) == "http://127.0.0.1:3500"
    assert advertised_url(settings, "0.0.0.0", 3500) == f"http://{socket.gethostname()}:3500"
    assert advertised_url(Settings(advertised_url="https://wf.example/"), "0.0.0.0", 1) == "https://wf.example"


def test_no_runtime_answering_means_no_answer_and_no_more_asking() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]  # nothing listens once the probe is closed
    reads = RuntimeReads(Settings(runtime_urls=(f"http://127.0.0.1:{closed}",)))
    assert reads.status("i-1") is None
    assert reads._given_up and reads.answers == 0
