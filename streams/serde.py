"""Avro single-object encoding with fastavro.

Every record starts with the two marker bytes 0xC3 0x01 and the 8-byte little-endian
CRC-64-AVRO fingerprint of its writer schema, then the schemaless Avro body. A reader
keeps every writer schema it knows by fingerprint, so a record written with an older
version of a schema decodes into the newest one (Avro schema resolution).
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import fastavro
from fastavro.schema import fingerprint, load_schema, to_parsing_canonical_form

MAGIC = b"\xc3\x01"
HEADER_SIZE = 10


class SerdeError(ValueError):
    """A record could not be encoded or decoded; the message says which and why."""


def schema_fingerprint(schema: Any) -> bytes:
    """The 8-byte little-endian CRC-64-AVRO fingerprint of a parsed schema."""
    # fastavro gives the spec's little-endian byte order already, as hex.
    return bytes.fromhex(fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO"))


class AvroSerde:
    """Encodes records with one reader schema; decodes any known writer version of it.

    Args:
        schema: The parsed (or plain dict) schema records are written and read with.
        older: Earlier versions of the same schema that records may have been written with.
    """

    def __init__(self, schema: Any, older: Iterable[Any] = ()) -> None:
        self.schema = fastavro.parse_schema(schema) if isinstance(schema, dict) else schema
        self.name = self.schema["name"] if isinstance(self.schema, dict) else str(self.schema)
        self.fingerprint = schema_fingerprint(self.schema)
        self._header = MAGIC + self.fingerprint
        self._writers: dict[bytes, Any] = {self.fingerprint: self.schema}
        for version in older:
            parsed = fastavro.parse_schema(version) if isinstance(version, dict) else version
            self._writers[schema_fingerprint(parsed)] = parsed

    def encode(self, record: dict[str, Any]) -> bytes:
        """Encode one record; raises SerdeError if it does not match the schema."""
        out = io.BytesIO()
        out.write(self._header)
        try:
            fastavro.schemaless_writer(out, self.schema, record)
        except (ValueError, TypeError, KeyError, AttributeError) as err:
            raise SerdeError(f"cannot encode {self.name}: {err}") from err
        return out.getvalue()

    def decode(self, data: bytes | None) -> dict[str, Any]:
        """Decode one record written with this schema or a known older version of it."""
        if data is None:
            raise SerdeError(f"cannot decode {self.name}: the record has no value (a tombstone)")
        if len(data) < HEADER_SIZE or data[:2] != MAGIC:
            raise SerdeError(
                f"cannot decode {self.name}: not Avro single-object encoding "
                f"(expected marker c301, got {data[:2].hex() or 'nothing'})"
            )
        writer = self._writers.get(data[2:HEADER_SIZE])
        if writer is None:
            raise SerdeError(
                f"cannot decode {self.name}: unknown schema fingerprint {data[2:HEADER_SIZE].hex()}; "
                "the writer used a schema version this reader does not know"
            )
        try:
            body = io.BytesIO(data)
            body.seek(HEADER_SIZE)
            # Only unions of several records (the history event kinds) come back as (name, record).
            record = fastavro.schemaless_reader(
                body, writer, self.schema, return_record_name=True, return_record_name_override=True
            )
        except Exception as err:  # fastavro raises many kinds on garbage bodies
            raise SerdeError(f"cannot decode {self.name}: corrupt body ({type(err).__name__}: {err})") from err
        if body.tell() != len(data):
            raise SerdeError(f"cannot decode {self.name}: {len(data) - body.tell()} trailing bytes after the record")
        return record  # type: ignore[return-value]


def load_named_schema(folder: Path, full_name: str) -> Any:
    """Load ``<folder>/<full_name>.avsc``, resolving named types from sibling files."""
    path = folder / f"{full_name}.avsc"
    if not path.exists():
        raise SerdeError(f"no schema file {path}")
    return load_schema(str(path))


def read_schema_json(path: Path) -> dict[str, Any]:
    """Read one .avsc file as plain JSON (for older versions kept beside the current one)."""
    return json.loads(path.read_text())
