"""The wall clock, at the precision history keeps.

The replay engine never reads it (a workflow sees ``ctx.current_utc_datetime``, taken
from history); the doors that stamp new events do.
"""

from datetime import UTC, datetime


def now_utc() -> datetime:
    """Wall-clock time at millisecond precision, the precision history keeps."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)
