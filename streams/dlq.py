"""The dead-letter contract: the headers every record sent to a dead-letter topic carries.

Whichever door refused a record (a processor that cannot decode its input, the activity
worker that cannot decode a task, the pub/sub bridge that finds no instance), the record
goes out with its original key, value and headers, plus these (all UTF-8):

=============================  ==============================================================
``streams.error``              what was wrong (cut to ``ERROR_MAX_CHARS``)
``streams.error.type``         the error's type, e.g. ``SerdeError``, ``MalformedCommand``
``streams.source.topic``       where the record was: topic,
``streams.source.partition``   partition
``streams.source.offset``      and offset
=============================  ==============================================================

``schemas/README.md`` documents the same table for readers in other languages.
"""

from __future__ import annotations

from collections.abc import Sequence

from streams.handler import Headers

ERROR = "streams.error"
ERROR_TYPE = "streams.error.type"
SOURCE_TOPIC = "streams.source.topic"
SOURCE_PARTITION = "streams.source.partition"
SOURCE_OFFSET = "streams.source.offset"
HEADER_NAMES = (ERROR, ERROR_TYPE, SOURCE_TOPIC, SOURCE_PARTITION, SOURCE_OFFSET)
# Error texts can be long (schema dumps); the header carries the start of it.
ERROR_MAX_CHARS = 2000


def dead_letter_headers(error: str, error_type: str, topic: str, partition: int, offset: int,
                        original: Sequence[tuple[str, bytes | None]] | None = None) -> Headers:
    """The headers of a dead letter: the record's own (``original``) followed by the contract's.

    Args:
        error: Why the record was refused; its text may quote the record, so it belongs
            here and not in a log line.
        error_type: A short name for the kind of failure (the exception's class name).
        topic: The topic the refused record was read from.
        partition: Its partition.
        offset: Its offset.
        original: The refused record's own headers, kept in front.
    """
    return list(original or []) + [
        (ERROR, error[:ERROR_MAX_CHARS].encode()),
        (ERROR_TYPE, error_type.encode()),
        (SOURCE_TOPIC, topic.encode()),
        (SOURCE_PARTITION, str(partition).encode()),
        (SOURCE_OFFSET, str(offset).encode()),
    ]
