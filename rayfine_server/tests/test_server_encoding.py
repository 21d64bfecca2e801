"""``encode_json`` on its own: the hot path's one serialisation."""

from __future__ import annotations

import collections
import dataclasses
import datetime
import enum
import json
import pathlib

import pytest

from rayfine_server.encoding import NotSerializableError, encode_json
from rayfine_server.jsonlimits import MAX_DEPTH, exceeds_depth, items, structure


class Level(enum.IntEnum):
    HIGH = 3


@dataclasses.dataclass(frozen=True)
class Box:
    point: object
    when: datetime.time


def decode(value):
    return json.loads(encode_json(value))


def test_native_json_is_compact_utf8():
    assert encode_json({"a": [1, 2.5, None, True, "ü"]}) == '{"a":[1,2.5,null,true,"ü"]}'.encode()


def test_rich_types_nest():
    # Only env.py might use pydantic; the server never imports it.
    pydantic = pytest.importorskip("pydantic")

    class Point(pydantic.BaseModel):
        x: int
        tags: frozenset = frozenset()

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


@pytest.mark.parametrize(
    "value, key_type",
    [
        ({1: "a", True: "b"}, "int"),  # noqa: F601 - the finding: it became {"1": "b"}
        ([{"a": {None: 1}}], "NoneType"),
        ({"a": [{"b": {1.5: 2}}]}, "float"),
        ({"a": [(1, {"b": {(1, 2): 3}})]}, "tuple"),
        (collections.OrderedDict({2: 1}), "int"),
        ([{"x": i} for i in range(2000)] + [{7: 1}], "int"),  # the large-value path
    ],
)
def test_non_string_keys_are_refused_naming_the_type(value, key_type):
    with pytest.raises(NotSerializableError) as info:
        encode_json(value)
    assert info.value.type_name == key_type or key_type in str(info.value)


def test_string_subclass_keys_are_fine():
    class Name(str):
        pass

    assert decode({Name("a"): 1}) == {"a": 1}


def test_lone_surrogate_is_refused():
    with pytest.raises(NotSerializableError, match="lone surrogate"):
        encode_json({"text": "bad \udc80 byte"})


def nested(depth: int) -> list:
    value: list = []
    for _ in range(depth - 1):
        value = [value]
    return value


def test_depth_limit_in_results():
    assert decode(nested(MAX_DEPTH))  # exactly at the limit is fine
    for depth in (MAX_DEPTH + 1, 5000, 200_000):
        with pytest.raises(NotSerializableError, match="deeper than"):
            encode_json(nested(depth))


def test_depth_measurement_ignores_brackets_in_strings():
    text = ('{"a": "' + "[" * 5000 + '"}').encode()
    assert not exceeds_depth(text)
    assert exceeds_depth(b"[" * 600 + b"]" * 600)
    assert exceeds_depth(b"[" * 600)  # unclosed brackets nest too
    assert not exceeds_depth(b"]" * 600)
    assert not exceeds_depth(b'["' + b"\\" * 10 + b'"' + b"[]," * 600 + b"1]")


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


def test_structure_outside_strings():
    text = rb'{"a,b": [1, "x\"],{:", {"k": "\\"}], "c": 2}'
    assert structure(text) == b"{:[,,{:}],:}"
    assert structure(b'["' + b"," * 3_000_000 + b'", 1]') == b"[,]"  # strings across windows


def test_items_counts_values_outside_strings():
    assert items(b"[1,2,3]", 100) == 3
    assert items(b'["a,b,c,d", {"k": 1}]', 1) == 4  # [ , { :
    many = b"[" + b'{"k":1},' * 100_000 + b"{}]"
    assert items(many, 1000) == 1 + 100_001 + 100_000 + 100_000
