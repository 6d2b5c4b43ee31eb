"""Log records that name what they are about: human lines by default, JSON with ``KWF_LOG_FORMAT=json``.

The processes bind the instance, workflow and activity a piece of work is about
(``bound``, or the ``for_instance_step`` decorator); every record logged meanwhile, by the
runtime or by workflow and activity code, carries them. The JSON format writes one object
a line: ``time``, ``level``, ``logger``, ``message``, then ``instance_id``, ``workflow``,
``activity`` and ``trace_id`` where they apply, and ``exception`` for a traceback.
"""

from __future__ import annotations

import contextvars
import functools
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

from engine.core.history import ExecutionStarted

HUMAN_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
FORMATS = ("human", "json")
CONTEXT_FIELDS = ("instance_id", "workflow", "activity")

_context: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar("kwf_log_context", default=None)
F = TypeVar("F", bound=Callable[..., Any])


@contextmanager
def bound(**fields: str | None) -> Iterator[None]:
    """Records logged inside the block carry ``fields`` (those not None) as well."""
    current = _context.get()
    merged = dict(current) if current else {}
    merged.update({k: v for k, v in fields.items() if v is not None})
    token = _context.set(merged)
    try:
        yield
    finally:
        _context.reset(token)


def context() -> dict[str, str]:
    """The fields bound now (a copy)."""
    return dict(_context.get() or {})


def for_instance_step(step: F) -> F:
    """Decorates the orchestrator's ``_step(self, batch, store, instance_id, proposed, now)``:
    binds the instance, and the workflow when the step starts it."""

    @functools.wraps(step)
    def bound_step(self: Any, batch: Any, store: Any, instance_id: str, proposed: Any, *rest: Any) -> Any:
        first = proposed[0].event if proposed else None
        workflow = first.name if isinstance(first, ExecutionStarted) else None
        with bound(instance_id=instance_id, workflow=workflow):
            return step(self, batch, store, instance_id, proposed, *rest)

    return bound_step  # type: ignore[return-value]


class ContextFilter(logging.Filter):
    """Copies the bound fields and the current trace ID onto each record (as attributes)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in (_context.get() or {}).items():
            if not hasattr(record, name):
                setattr(record, name, value)
        if not hasattr(record, "trace_id"):
            from engine.observability.tracing import current_trace_id

            trace_id = current_trace_id()
            if trace_id:
                record.trace_id = trace_id
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object a line (see the module docstring)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace(
                "+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in (*CONTEXT_FIELDS, "trace_id"):
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def log_format() -> str:
    """``KWF_LOG_FORMAT``: ``human`` (the default) or ``json``."""
    chosen = os.environ.get("KWF_LOG_FORMAT", "human").strip().lower() or "human"
    if chosen not in FORMATS:
        raise ValueError(f"KWF_LOG_FORMAT must be one of {', '.join(FORMATS)}, got {chosen!r}")
    return chosen


def configure_logging(level: int | str = logging.WARNING, *, stream: Any = None, fmt: str | None = None) -> None:
    """Set up the root logger once for a process, in ``fmt`` (default: ``KWF_LOG_FORMAT``)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter() if (fmt or log_format()) == "json" else logging.Formatter(HUMAN_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
