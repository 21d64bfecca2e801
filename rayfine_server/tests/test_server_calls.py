"""Successful calls, and how their results are encoded."""

from __future__ import annotations

from server_helpers import call, error_of

ENV = """
    import dataclasses
    import datetime
    import enum
    import pathlib
    from typing import List

    try:
        import pydantic
    except ImportError:  # the server does not need it; only this test's env uses it
        pydantic = None

    class Color(enum.Enum):
        RED = "red"

    if pydantic is not None:
        class Score(pydantic.BaseModel):
            name: str
            value: float
            when: datetime.date
    else:
        @dataclasses.dataclass
        class Score:
            name: str
            value: float
            when: datetime.date

    @dataclasses.dataclass
    class Inner:
        tags: set

    @dataclasses.dataclass
    class Sample:
        id: int
        inner: Inner
        items: List[tuple]

    class Actor:
        def __init__(self):
            self.count = 0

        def bump(self, by: int = 1) -> int:
            self.count += by
            return self.count

        async def abump(self, by: int = 1) -> int:
            self.count += by
            return self.count

    def echo(*args, **kwargs):
        return {"args": args, "kwargs": kwargs}

    async def aecho(value):
        return value

    def rich():
        return {
            "model": Score(name="a", value=0.5, when=datetime.date(2024, 1, 2)),
            "dataclass": Sample(1, Inner({3, 1, 2}), [(1, "x")]),
            "set": {"b", "a"},
            "frozenset": frozenset([2, 1]),
            "tuple": (1, (2, 3)),
            "enum": Color.RED,
            "datetime": datetime.datetime(2024, 1, 2, 3, 4, 5),
            "path": pathlib.Path("/data/x.txt"),
            "unicode": "héllo ✓",
            "nested": [None, True, 1.5],
        }

    def returns_bytes():
        return {"payload": b"raw"}

    def returns_object():
        return [1, object()]

    def returns_custom():
        class Opaque:
            pass
        return Opaque()

    def returns_tuple_keys():
        return {(1, 2): "x"}

    def returns_nan():
        return float("nan")

    def returns_int_keys():
        return {1: "a", True: "b"}

    def returns_nested_int_keys():
        return [{"ok": {"inner": {2.5: "x"}}}]

    def returns_surrogate():
        return {"text": "caf\\udce9"}

    def returns_deep():
        value = []
        for _ in range(100_000):
            value = [value]
        return value

    def returns_model_with_int_keys():
        @dataclasses.dataclass
        class Holder:
            table: dict
        return Holder({3: "x"})
"""


def test_actor_keeps_state_across_sync_and_async_methods(make_client):
    client = make_client(ENV)
    assert call(client, "bump").json() == {"result": 1}
    assert call(client, "abump", by=5).json() == {"result": 6}
    assert call(client, "bump", 2).json() == {"result": 8}


def test_module_functions_sync_and_async(shared_client):
    client = shared_client(ENV)
    assert call(client, "echo", 1, "two", k=[3]).json() == {
        "result": {"args": [1, "two"], "kwargs": {"k": [3]}}
    }
    assert call(client, "aecho", {"deep": [1, {"x": None}]}).json() == {
        "result": {"deep": [1, {"x": None}]}
    }


def test_args_and_kwargs_default_to_empty(make_client):
    response = make_client(ENV).post("/call", json={"method": "bump"})
    assert response.json() == {"result": 1}
    response = make_client(ENV).post("/call", json={"method": "echo", "args": None, "kwargs": None})
    assert response.json() == {"result": {"args": [], "kwargs": {}}}


def test_rich_results_are_encoded(shared_client):
    response = call(shared_client(ENV), "rich")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json()["result"] == {
        "model": {"name": "a", "value": 0.5, "when": "2024-01-02"},
        "dataclass": {"id": 1, "inner": {"tags": [1, 2, 3]}, "items": [[1, "x"]]},
        "set": ["a", "b"],
        "frozenset": [1, 2],
        "tuple": [1, [2, 3]],
        "enum": "red",
        "datetime": "2024-01-02T03:04:05",
        "path": "/data/x.txt",
        "unicode": "héllo ✓",
        "nested": [None, True, 1.5],
    }


def test_bytes_are_refused_not_decoded(shared_client):
    response = call(shared_client(ENV), "returns_bytes")
    assert response.status_code == 500
    error = error_of(response)
    assert error["kind"] == "not_serializable"
    assert "bytes" in error["message"] and "returns_bytes" in error["message"]


def test_unserialisable_results_name_the_type(shared_client):
    client = shared_client(ENV)
    error = error_of(call(client, "returns_object"))
    assert error["kind"] == "not_serializable"
    assert "object" in error["message"]
    error = error_of(call(client, "returns_custom"))
    assert "env.returns_custom.<locals>.Opaque" in error["message"]
    error = error_of(call(client, "returns_tuple_keys"))
    assert error["kind"] == "not_serializable"
    assert "tuple" in error["message"]
    assert call(client, "bump").status_code == 200  # still serving


def test_non_string_keys_are_refused_not_silently_merged(shared_client):
    """``{1: 'a', True: 'b'}`` used to arrive as ``{'1': 'b'}``."""
    client = shared_client(ENV)
    for method, key_type in [
        ("returns_int_keys", "int"),
        ("returns_nested_int_keys", "float"),
        ("returns_model_with_int_keys", "int"),
    ]:
        error = error_of(call(client, method))
        assert error["kind"] == "not_serializable", method
        assert f"of type {key_type}" in error["message"]
        assert "keys must be strings" in error["message"]


def test_unencodable_results_leave_the_connection_usable(serve):
    """A lone surrogate or a 100,000-deep list used to poison the keep-alive connection,
    so the next, unrelated call failed with ConnectionReset."""
    server = serve(ENV)
    client = server.client()
    for method, fragment in [("returns_surrogate", "surrogate"), ("returns_deep", "deeper than")]:
        error = error_of(call(client, method))
        assert error["kind"] == "not_serializable"
        assert fragment in error["message"]
        assert call(client, "bump").status_code == 200  # same connection, next call fine


def test_nan_travels_like_python_json(shared_client):
    response = call(shared_client(ENV), "returns_nan")
    assert response.status_code == 200
    assert response.text == '{"result":NaN}'
