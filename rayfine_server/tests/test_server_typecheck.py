"""Arguments are checked against annotations before any user code runs."""

from __future__ import annotations

import sys

import pytest
from server_helpers import error_of

ENV = """
    from __future__ import annotations

    from typing import Annotated, Any, Dict, List, Literal, NewType, Optional, Tuple, Union
    from typing import TYPE_CHECKING

    if TYPE_CHECKING:
        from somewhere import Unknowable

    UserId = NewType("UserId", int)
    CALLS = []

    class Actor:
        def __init__(self, level: int = 1):
            self.level = level

        def evaluate(self, answers: list[str], weights: Optional[Dict[str, float]] = None) -> int:
            CALLS.append("evaluate")
            return len(answers)

        def step(self, action: str, strength: float = 1.0) -> str:
            return action

    def scalars(i: int, f: float, s: str, b: bool, n: None = None) -> list:
        return [i, f, s, b, n]

    def choose(mode: Literal["fast", "slow"], level: Literal[1, 2] = 1) -> str:
        return mode

    def either(x: Union[int, str], y: Optional[list[int]] = None) -> Any:
        return x

    def shapes(pair: Tuple[int, str], many: tuple[float, ...] = (), table: dict[str, list[int]] = {}
    ):
        return pair

    def loose(a: Any, b: "Unknowable", c: object, d: UserId = 0, e: Annotated[int, "meta"] = 0):
        return [a, c, d, e]

    def implicit_optional(x: int = None) -> Any:
        return x

    def variadic(*numbers: int, **labels: str) -> int:
        return len(numbers) + len(labels)

    def nested(points: List[Tuple[float, float]]) -> int:
        return len(points)
"""


def check(client, method, *args, **kwargs):
    response = client.post("/call", json={"method": method, "args": list(args), "kwargs": kwargs})
    if response.status_code == 200:
        return None
    error = error_of(response)
    assert (response.status_code, error["kind"], error["type"]) == (
        422,
        "invalid_arguments",
        "TypeError",
    ), error
    return error["message"]


@pytest.fixture(scope="module")
def client(serve_shared):
    return serve_shared(ENV).client()


def test_the_example_from_the_review(make_client):
    client = make_client(ENV)
    message = check(client, "evaluate", answers="12")
    assert message.startswith("evaluate() argument 'answers' must be list[str], got str ('12')")
    assert "expected evaluate(answers: list[str]" in message
    assert sys.modules["env"].CALLS == []  # no user code ran


def test_unknown_keyword_suggests_the_right_one(client):
    message = check(client, "step", acton="left")
    assert "unexpected keyword argument 'acton'; did you mean 'action'?" in message


@pytest.mark.parametrize(
    "args, fragment",
    [
        ((1, 2.5, "s", True), None),
        ((1, 2, "s", False), None),  # an int is a fine float
        ((1.0, 2, "s", True), "argument 'i' must be int, got float (1.0)"),
        ((True, 2, "s", True), "argument 'i' must be int, got bool (True)"),
        ((1, "2", "s", True), "argument 'f' must be float, got str ('2')"),
        ((1, 2, 3, True), "argument 's' must be str, got int (3)"),
        ((1, 2, "s", 1), "argument 'b' must be bool, got int (1)"),
        ((1, 2, "s", True, 0), "argument 'n' must be None, got int (0)"),
    ],
)
def test_scalars(client, args, fragment):
    message = check(client, "scalars", *args)
    assert message is None if fragment is None else fragment in message


@pytest.mark.parametrize(
    "method, args, kwargs, fragment",
    [
        ("choose", ["fast"], {}, None),
        ("choose", ["medium"], {}, "must be Literal['fast', 'slow'], got str ('medium')"),
        ("choose", ["slow"], {"level": True}, "got bool (True)"),
        ("either", [3], {}, None),
        ("either", ["x"], {"y": [1, 2]}, None),
        ("either", [1.5], {}, "argument 'x' must be Union[int, str], got float (1.5)"),
        ("either", [1], {"y": [1, "2"]}, "but y[1] is str ('2') (expected int)"),
        ("shapes", [[1, "a"]], {}, None),
        ("shapes", [[1, "a", 3]], {}, "must be Tuple[int, str], got list ([1, 'a', 3])"),
        ("shapes", [[1, 2]], {}, "but pair[1] is int (2) (expected str)"),
        ("shapes", [[1, "a"]], {"many": [1, 2.5]}, None),
        ("shapes", [[1, "a"]], {"many": [1, "x"]}, "but many[1] is str ('x')"),
        ("shapes", [[1, "a"]], {"table": {"k": [1, 2]}}, None),
        ("shapes", [[1, "a"]], {"table": {"k": [1, "2"]}}, "but table['k'][1] is str ('2')"),
        ("shapes", [[1, "a"]], {"table": [1]}, "got list ([1])"),
        ("loose", [{"any": 1}, "anything", [1], 5], {"e": 3}, None),
        ("loose", [1, 2, 3, "not an int"], {}, "argument 'd' must be UserId, got str"),
        ("loose", [1, 2, 3], {"e": "x"}, "argument 'e' must be int, got str"),
        ("implicit_optional", [None], {}, None),
        ("variadic", [1, 2], {"a": "x"}, None),
        ("variadic", [1, "2"], {}, "but numbers[1] is str ('2') (expected int)"),
        ("variadic", [], {"a": 1}, "but labels['a'] is int (1) (expected str)"),
        ("nested", [[[1, 2.5], [3, 4]]], {}, None),
        ("nested", [[[1, 2.5], [3, "4"]]], {}, "but points[1][1] is str ('4') (expected float)"),
        ("evaluate", [["a"]], {"weights": {"x": 1}}, None),
        ("evaluate", [["a"]], {"weights": {"x": "heavy"}}, "but weights['x'] is str ('heavy')"),
    ],
)
def test_containers_unions_literals(client, method, args, kwargs, fragment):
    message = check(client, method, *args, **kwargs)
    assert message is None if fragment is None else fragment in message, message


def test_large_lists_are_checked_quickly(client):
    assert check(client, "evaluate", ["x"] * 200_000) is None
    message = check(client, "evaluate", ["x"] * 100_000 + [7])
    assert "but answers[100000] is int (7)" in message


def test_session_constructor_arguments_are_checked(client):
    response = client.post("/sessions", json={"kwargs": {"level": "high"}})
    assert response.status_code == 422
    assert "Actor() argument 'level' must be int, got str ('high')" in error_of(response)["message"]


@pytest.mark.skipif(sys.version_info < (3, 10), reason="X | Y annotations need Python 3.10")
def test_pep_604_unions(make_client):
    client = make_client("def f(x: int | None = None, y: str | list[str] = ''):\n    return x\n")
    assert check(client, "f", 1, ["a"]) is None
    assert "argument 'x' must be int | None, got str" in check(client, "f", "1")


def test_unresolvable_annotations_leave_only_that_parameter_unchecked(make_client):
    source = "from __future__ import annotations\ndef f(a: Missing, b: int = 0):\n    return b\n"
    client = make_client(source)
    assert check(client, "f", object.__name__, 1) is None
    assert "argument 'b' must be int" in check(client, "f", "x", "1")


def test_methods_still_show_annotations_as_written(client):
    methods = {m["name"]: m for m in client.get("/methods").json()["methods"]}
    assert [p["annotation"] for p in methods["evaluate"]["params"]] == [
        "list[str]",
        "Optional[Dict[str, float]]",
    ]
