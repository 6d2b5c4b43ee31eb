"""An input record as a consumer hands it out, for processor tests without a broker."""

from __future__ import annotations


class FakeMessage:
    """Offset ``offset`` of partition ``partition`` of topic ``in``, with value ``v{offset}``."""

    def __init__(self, offset: int, partition: int = 0) -> None:
        self._partition, self._offset = partition, offset

    def error(self) -> None:
        return None

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def topic(self) -> str:
        return "in"

    def key(self) -> bytes:
        return b"k"

    def value(self) -> bytes:
        return f"v{self._offset}".encode()

    def timestamp(self) -> tuple[int, int]:
        return (0, 0)

    def headers(self) -> None:
        return None
