"""JSON encoding of user values: workflow and activity inputs, results, outputs and event data.

Dataclasses and plain objects encode as JSON objects tagged with ``OBJECT_MARKER`` and
decode to objects with attribute access (``types.SimpleNamespace``), so workflow code can
write ``job.is_healthy = True`` on a value that crossed the wire. Untagged JSON objects stay
plain dicts. ``coerce`` turns a decoded value into the dataclass or pydantic model a
function parameter is annotated with.

``check_size`` is the one payload limit (``KWF_MAX_PAYLOAD_BYTES``), applied at every door
where a payload enters history: the client, the HTTP API, the commands topic, the pub/sub
bridge, the inbox itself, activity results, workflow outputs and child-workflow inputs.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import inspect
import json
import types
import typing
from collections.abc import Callable
from typing import Any

OBJECT_MARKER = "__kwf_object__"
"""Key tagging a JSON object that was encoded from a dataclass or plain object; its value is the class name."""


class PayloadTooLarge(ValueError):
    """An input, event, result or output is larger than ``KWF_MAX_PAYLOAD_BYTES``."""


def check_size(text: str | bytes | None, what: str, limit: int) -> None:
    """Refuse a payload (JSON text, or its UTF-8 bytes) larger than ``limit`` bytes.

    Args:
        text: The payload; None is empty.
        what: What it is, for the message: ``"input"``, ``"event data"``, ``"output"``...
        limit: ``Settings.max_payload_bytes``.

    Raises:
        PayloadTooLarge: Naming what, its size and the limit.
    """
    size = 0 if text is None else len(text) if isinstance(text, bytes) else len(text.encode())
    if size > limit:
        raise PayloadTooLarge(f"the {what} is {size} bytes of JSON; the limit is {limit} bytes (KWF_MAX_PAYLOAD_BYTES)")


def encode(value: Any) -> str | None:
    """Encode a user value as JSON text; None stays None.

    Raises:
        TypeError: The value (or something inside it) has no JSON form.
    """
    if value is None:
        return None
    return json.dumps(value, default=_to_json, separators=(",", ":"), ensure_ascii=False)


def decode(text: str | None) -> Any:
    """Decode JSON text written by ``encode`` (or any JSON); None stays None.

    Raises:
        ValueError: The text is not valid JSON.
    """
    if text is None:
        return None
    return json.loads(text, object_hook=_from_json)


def coerce(value: Any, annotation: Any) -> Any:
    """Convert a decoded value to the type a parameter is annotated with, where that is possible.

    Dataclasses are built from a dict or an attribute object (nested fields coerced by their
    own annotations); pydantic models are validated from one; ``X | None`` and ``list[X]``
    coerce their members. Any other annotation leaves the value as it is.

    Raises:
        TypeError: The value lacks a field the dataclass requires.
        ValueError: A pydantic model rejects the value.
    """
    if value is None or annotation is None or annotation is inspect.Parameter.empty or annotation is Any:
        return value
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType:
        members = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        return coerce(value, members[0]) if len(members) == 1 else value
    if origin is list and isinstance(value, list):
        args = typing.get_args(annotation)
        return [coerce(item, args[0]) for item in value] if args else value
    if not isinstance(annotation, type):
        return value
    try:
        if isinstance(value, annotation):
            return value
    except TypeError:  # special forms that refuse isinstance checks
        return value
    mapping = _as_mapping(value)
    if mapping is None:
        return value
    if dataclasses.is_dataclass(annotation):
        hints = _type_hints(annotation)
        kwargs = {
            f.name: coerce(mapping[f.name], hints.get(f.name))
            for f in dataclasses.fields(annotation)
            if f.init and f.name in mapping
        }
        return annotation(**kwargs)
    validate = getattr(annotation, "model_validate", None)
    if callable(validate):
        return validate(mapping)
    return value


def input_annotation(fn: Callable[..., Any]) -> Any:
    """The annotation of the input parameter (the second positional one) of a workflow or activity.

    String annotations (``from __future__ import annotations``) are resolved with
    ``typing.get_type_hints``; one that cannot be resolved counts as no annotation.
    """
    try:
        params = [
            p
            for p in inspect.signature(fn).parameters.values()
            if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        ]
    except (TypeError, ValueError):
        return None
    if len(params) < 2:
        return None
    param = params[1]
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # unresolvable forward references: fall back to the raw annotation
        hints = {}
    annotation = hints.get(param.name, param.annotation)
    if annotation is inspect.Parameter.empty or isinstance(annotation, str):
        return None
    return annotation


def _type_hints(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except Exception:  # unresolvable forward references: coerce nested fields no further
        return {}


def _as_mapping(value: Any) -> dict[str, Any] | None:
    if isinstance(value, dict):
        return value
    if isinstance(value, types.SimpleNamespace):
        return vars(value)
    return None


def _to_json(value: Any) -> Any:
    model_dump = getattr(value, "model_dump", None)
    if callable(model_dump) and not isinstance(value, type):
        return model_dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        body = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
        return {OBJECT_MARKER: type(value).__name__, **body}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, set | frozenset):
        return list(value)
    attributes = getattr(value, "__dict__", None)
    if isinstance(attributes, dict) and not callable(value):
        body = {key: item for key, item in attributes.items() if not key.startswith("_")}
        return {OBJECT_MARKER: type(value).__name__, **body}
    raise TypeError(
        f"cannot encode a {type(value).__name__} as JSON; pass JSON types, dataclasses, pydantic models "
        "or plain objects"
    )


def _from_json(obj: dict[str, Any]) -> Any:
    if OBJECT_MARKER in obj:
        obj.pop(OBJECT_MARKER)
        return types.SimpleNamespace(**obj)
    return obj
