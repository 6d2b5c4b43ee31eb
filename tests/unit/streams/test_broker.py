"""The local broker's pure parts."""

from __future__ import annotations

import base64
import uuid

import pytest

from streams import broker
from streams.broker import LOWEST_PORT, ephemeral_port_range, free_port_block, ports_outside


def test_a_cluster_id_never_starts_with_a_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    # 0xf8 as the first byte encodes to "-" in URL-safe base64: the storage tool would take it for an option.
    draws = iter([uuid.UUID(bytes=b"\xf8" + b"\x00" * 15), uuid.UUID(bytes=b"\x01" * 16)])
    monkeypatch.setattr(broker.uuid, "uuid4", lambda: next(draws))
    assert base64.urlsafe_b64encode(b"\xf8").decode().startswith("-")
    cid = broker.cluster_id()
    assert not cid.startswith("-") and len(cid) == 22


def test_cluster_ports_avoid_the_ephemeral_range() -> None:
    # A killed node's port inside the range can be taken by a client's outgoing connection.
    starts = ports_outside((32768, 60999), 6)
    assert starts[0] == LOWEST_PORT and 32762 in starts and 32763 not in starts
    assert 60999 not in starts and 61000 in starts and starts[-1] == 65529
    low, high = ephemeral_port_range()
    port = free_port_block(6)
    assert port + 6 <= low or port > high
