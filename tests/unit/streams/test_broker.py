"""The local broker's pure parts."""

from __future__ import annotations

import base64
import uuid

import pytest

from streams import broker


def test_a_cluster_id_never_starts_with_a_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    # 0xf8 as the first byte encodes to "-" in URL-safe base64: the storage tool would take it for an option.
    draws = iter([uuid.UUID(bytes=b"\xf8" + b"\x00" * 15), uuid.UUID(bytes=b"\x01" * 16)])
    monkeypatch.setattr(broker.uuid, "uuid4", lambda: next(draws))
    assert base64.urlsafe_b64encode(b"\xf8").decode().startswith("-")
    cid = broker.cluster_id()
    assert not cid.startswith("-") and len(cid) == 22
