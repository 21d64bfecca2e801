"""``encode_json`` on its own: the hot path's one serialisation."""

from __future__ import annotations

import dataclasses
import datetime
import enum
import json
import pathlib

import pytest
from pydantic import BaseModel
from rayfine_server.encoding import NotSerializableError, encode_json


class Level(enum.IntEnum):
    HIGH = 3


class Point(BaseModel):
    x: int
    tags: frozenset = frozenset()


@dataclasses.dataclass(frozen=True)
class Box:
    point: Point
    when: datetime.time


def decode(value):
    return json.loads(encode_json(value))


def test_native_json_is_compact_utf8():
    assert encode_json({"a": [1, 2.5, None, True, "ü"]}) == '{"a":[1,2.5,null,true,"ü"]}'.encode()


def test_rich_types_nest():
    value = {
        "box": Box(Point(x=1, tags=frozenset({"b", "a"})), datetime.time(1, 2)),
        "levels": {Level.HIGH},
        "paths": (pathlib.PurePosixPath("a/b"),),
    }
    decoded = decode(value)
    assert sorted(decoded["box"]["point"].pop("tags")) == ["a", "b"]  # pydantic's own order
    assert decoded == {
        "box": {"point": {"x": 1}, "when": "01:02:00"},
        "levels": [3],
        "paths": ["a/b"],
    }


def test_unorderable_sets_still_encode():
    assert sorted(decode({1, "a"}), key=str) == [1, "a"]


def test_int_keys_become_strings_like_json_does():
    assert decode({1: "x"}) == {"1": "x"}


@pytest.mark.parametrize(
    "value, type_name",
    [(b"x", "bytes"), (bytearray(b"x"), "bytearray"), (object(), "object"), (Box, "type")],
)
def test_refusals_name_the_type(value, type_name):
    with pytest.raises(NotSerializableError) as info:
        encode_json({"nested": [value]})
    assert info.value.type_name == type_name


def test_cycles_are_refused():
    loop: list = []
    loop.append(loop)
    with pytest.raises(NotSerializableError, match="Circular"):
        encode_json(loop)
