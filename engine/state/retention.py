"""How long an ended instance is kept before the runtime purges it (Dapr's ``stateRetentionPolicy``).

Pure: durations in, decisions out. ``KWF_RETENTION_ANY_TERMINAL`` applies to every final
status; ``KWF_RETENTION_COMPLETED``, ``_FAILED`` and ``_TERMINATED`` win over it for theirs.
Unset means keep forever.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from engine.core.history import WorkflowStatus

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
ENV_PREFIX = "KWF_RETENTION_"


def parse_duration(text: str | float | int | timedelta) -> float:
    """Seconds in ``text``: ``90s``, ``15m``, ``12h``, ``7d``, ``1h30m``, ``250ms`` or a number of seconds.

    Raises:
        ValueError: the text is not a non-negative duration.
    """
    if isinstance(text, timedelta):
        seconds = text.total_seconds()
    elif isinstance(text, int | float):
        seconds = float(text)
    else:
        spec = text.strip().lower()
        if re.fullmatch(r"\d+(?:\.\d+)?", spec):
            seconds = float(spec)
        else:
            parts = _DURATION.findall(spec)
            if not parts or "".join(n + u for n, u in parts) != spec:
                raise ValueError(f"{text!r} is not a duration: write it like 90s, 15m, 12h or 7d")
            seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    if seconds < 0:
        raise ValueError(f"{text!r} is negative: a retention is a duration of zero or more")
    return seconds


@dataclass(frozen=True)
class RetentionPolicy:
    """Seconds an instance stays in each final status before it is purged; None keeps it.

    Attributes:
        any_terminal: ``KWF_RETENTION_ANY_TERMINAL``, for every final status.
        completed: ``KWF_RETENTION_COMPLETED``; wins over ``any_terminal``.
        failed: ``KWF_RETENTION_FAILED``; wins over ``any_terminal``.
        terminated: ``KWF_RETENTION_TERMINATED``; wins over ``any_terminal``.
    """

    any_terminal: float | None = None
    completed: float | None = None
    failed: float | None = None
    terminated: float | None = None

    @classmethod
    def of(cls, any_terminal: str | float | timedelta | None = None, completed: str | float | timedelta | None = None,
           failed: str | float | timedelta | None = None,
           terminated: str | float | timedelta | None = None) -> RetentionPolicy:
        """A policy from durations as text (``7d``), seconds or ``timedelta``."""
        def seconds(value: str | float | timedelta | None) -> float | None:
            return None if value is None or value == "" else parse_duration(value)
        return cls(seconds(any_terminal), seconds(completed), seconds(failed), seconds(terminated))

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> RetentionPolicy:
        return cls.of(*(env.get(ENV_PREFIX + name) for name in ("ANY_TERMINAL", "COMPLETED", "FAILED", "TERMINATED")))

    def for_status(self, status: WorkflowStatus) -> float | None:
        """Seconds an instance ended with ``status`` is kept, or None (kept; or not a final status)."""
        specific = {
            WorkflowStatus.COMPLETED: self.completed,
            WorkflowStatus.FAILED: self.failed,
            WorkflowStatus.TERMINATED: self.terminated,
        }
        if status not in specific:
            return None
        chosen = specific[status]
        return self.any_terminal if chosen is None else chosen

    def cutoffs(self, now_ms: int) -> dict[WorkflowStatus, int]:
        """For each final status with a retention: instances that ended before this time (ms) are due."""
        found = {}
        for status in (WorkflowStatus.COMPLETED, WorkflowStatus.FAILED, WorkflowStatus.TERMINATED):
            keep = self.for_status(status)
            if keep is not None:
                found[status] = now_ms - int(keep * 1000)
        return found

    @property
    def enabled(self) -> bool:
        return any(v is not None for v in (self.any_terminal, self.completed, self.failed, self.terminated))

    def merged(self, other: RetentionPolicy) -> RetentionPolicy:
        """This policy with every duration ``other`` sets taking its place."""
        return RetentionPolicy(*(b if b is not None else a for a, b in zip(
            (self.any_terminal, self.completed, self.failed, self.terminated),
            (other.any_terminal, other.completed, other.failed, other.terminated), strict=True)))
