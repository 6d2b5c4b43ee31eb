"""User values as JSON: objects keep attribute access, dicts stay dicts, inputs coerce to annotations."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import SimpleNamespace

import pydantic
import pytest

from engine.core.payload import OBJECT_MARKER, coerce, decode, encode, input_annotation


@dataclass
class Point:
    x: int
    y: int


@dataclass
class Shape:
    name: str
    corners: list[Point] = field(default_factory=list)
    center: Point | None = None


class Color(enum.Enum):
    RED = "red"


class Account(pydantic.BaseModel):
    owner: str
    balance: float
    opened: datetime


class Plain:
    def __init__(self) -> None:
        self.label = "plain"
        self._secret = "hidden"


def test_none_stays_none_both_ways() -> None:
    assert encode(None) is None
    assert decode(None) is None
    assert encode([None]) == "[null]"


def test_a_dataclass_decodes_with_attribute_access_and_can_be_changed() -> None:
    text = encode(Point(1, 2))
    assert text == f'{{"{OBJECT_MARKER}":"Point","x":1,"y":2}}'
    value = decode(text)
    assert (value.x, value.y) == (1, 2)
    value.x = 5  # the seed's monitor assigns job.is_healthy
    assert decode(encode(value)) == SimpleNamespace(x=5, y=2)


def test_plain_dicts_stay_dicts() -> None:
    value = decode(encode({"approver": "Jane Doe", "nested": {"a": [1, 2]}}))
    assert value == {"approver": "Jane Doe", "nested": {"a": [1, 2]}}
    assert type(value) is dict


def test_nested_dataclasses_plain_objects_enums_and_times() -> None:
    original = {"shape": Shape("tri", [Point(0, 0)]), "p": Plain(), "c": Color.RED, "t": datetime(2024, 1, 1)}
    value = decode(encode(original))
    assert value["shape"].corners[0].y == 0
    assert value["p"] == SimpleNamespace(label="plain")
    assert value["c"] == "red"
    assert value["t"] == "2024-01-01T00:00:00"


def test_a_pydantic_model_encodes_with_model_dump_json_mode() -> None:
    account = Account(owner="ann", balance=1.5, opened=datetime(2024, 1, 1, tzinfo=UTC))
    assert decode(encode(account)) == {"owner": "ann", "balance": 1.5, "opened": "2024-01-01T00:00:00Z"}


def test_values_without_a_json_form_are_refused() -> None:
    with pytest.raises(TypeError, match="cannot encode a function"):
        encode(lambda: 1)


def test_coerce_builds_dataclasses_from_objects_and_dicts_recursively() -> None:
    shape = coerce(decode(encode(Shape("sq", [Point(1, 1)], Point(0, 0)))), Shape)
    assert shape == Shape("sq", [Point(1, 1)], Point(0, 0))
    assert isinstance(shape.corners[0], Point)
    assert coerce({"x": 3, "y": 4}, Point) == Point(3, 4)
    assert coerce([{"x": 1, "y": 2}], list[Point]) == [Point(1, 2)]
    assert coerce({"x": 1, "y": 2}, Point | None) == Point(1, 2)


def test_coerce_validates_pydantic_models() -> None:
    account = coerce({"owner": "ann", "balance": "2.5", "opened": "2024-01-01T00:00:00Z"}, Account)
    assert isinstance(account, Account) and account.balance == 2.5
    with pytest.raises(pydantic.ValidationError):
        coerce({"owner": "ann"}, Account)


def test_coerce_leaves_other_values_alone() -> None:
    assert coerce(5, int) == 5
    assert coerce("x", Point) == "x"
    assert coerce({"a": 1}, dict) == {"a": 1}
    assert coerce(None, Point) is None


def test_coerce_reports_a_missing_dataclass_field() -> None:
    with pytest.raises(TypeError):
        coerce({"x": 1}, Point)


def takes_point(ctx, p: Point) -> None: ...


def takes_nothing(ctx) -> None: ...


def takes_unresolvable(ctx, p: NoSuchType) -> None: ...  # noqa: F821


def test_input_annotation_resolves_string_annotations() -> None:
    # This module uses `from __future__ import annotations`: every annotation is a string.
    assert takes_point.__annotations__["p"] == "Point"
    assert input_annotation(takes_point) is Point
    assert input_annotation(takes_nothing) is None
    assert input_annotation(takes_unresolvable) is None
