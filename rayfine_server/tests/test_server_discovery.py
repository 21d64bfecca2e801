"""Which names env.py exposes, and how ``GET /methods`` describes them."""

from __future__ import annotations

from server_helpers import call, error_of

ENV = '''
    """An environment mixing an Actor and module functions."""
    from os.path import join          # imported: never exposed
    from typing import Optional

    CONSTANT = 3                       # not callable: never exposed

    class Base:
        def inherited(self) -> str:
            """Defined on a base class."""
            return "base"

    class Actor(Base):
        def __init__(self):
            self.prefix = "actor"

        def evaluate(self, task_type: str = "sat", num_samples: int = 1, **kw) -> dict:
            """Score some samples."""
            return {"task_type": task_type, "n": num_samples}

        async def fetch(self, key: str, *, default: Optional[str] = None):
            return default

        @staticmethod
        def static(x):
            return x

        @classmethod
        def klass(cls, y):
            return y

        @property
        def prop(self):
            return 1

        def shared(self):
            return "from actor"

        def _private(self):
            return "hidden"

    def shared():
        return "from function"

    def helper(a, b=[1, 2], c=object()):
        return a

    async def ping():
        return "pong"

    def _hidden():
        return "no"

    class NotAFunction:
        pass
'''


def test_health_counts_methods(shared_client):
    response = shared_client(ENV).get("/health")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "env_type": "function_based",
        "methods": 8,
        "sessions": 0,
        "threads": {"busy": 0, "stuck": 0, "max": 8},
    }


def test_methods_lists_public_actor_methods_and_own_functions(shared_client):
    methods = {m["name"]: m for m in shared_client(ENV).get("/methods").json()["methods"]}
    assert sorted(methods) == [
        "evaluate",
        "fetch",
        "helper",
        "inherited",
        "klass",
        "ping",
        "shared",
        "static",
    ]


def test_method_description_drops_self_and_describes_params(shared_client):
    methods = {m["name"]: m for m in shared_client(ENV).get("/methods").json()["methods"]}
    evaluate = methods["evaluate"]
    assert evaluate["kind"] == "actor"
    assert evaluate["is_async"] is False
    assert evaluate["signature"] == "(task_type: str = 'sat', num_samples: int = 1, **kw) -> dict"
    assert evaluate["doc"] == "Score some samples."
    assert evaluate["params"] == [
        {
            "name": "task_type",
            "kind": "POSITIONAL_OR_KEYWORD",
            "required": False,
            "default": "sat",
            "annotation": "str",
        },
        {
            "name": "num_samples",
            "kind": "POSITIONAL_OR_KEYWORD",
            "required": False,
            "default": 1,
            "annotation": "int",
        },
        {
            "name": "kw",
            "kind": "VAR_KEYWORD",
            "required": False,
            "default": None,
            "annotation": None,
        },
    ]
    fetch = methods["fetch"]
    assert fetch["is_async"] is True
    assert fetch["doc"] is None
    assert [(p["name"], p["kind"], p["required"]) for p in fetch["params"]] == [
        ("key", "POSITIONAL_OR_KEYWORD", True),
        ("default", "KEYWORD_ONLY", False),
    ]


def test_static_and_class_methods_hide_their_first_parameter_correctly(shared_client):
    methods = {m["name"]: m for m in shared_client(ENV).get("/methods").json()["methods"]}
    assert methods["static"]["signature"] == "(x)"
    assert methods["klass"]["signature"] == "(y)"


def test_function_description_and_unencodable_default(shared_client):
    methods = {m["name"]: m for m in shared_client(ENV).get("/methods").json()["methods"]}
    helper = methods["helper"]
    assert helper["kind"] == "function"
    defaults = [p["default"] for p in helper["params"]]
    assert defaults[:2] == [None, [1, 2]]
    assert defaults[2].startswith("<object object at")  # repr when JSON cannot hold it
    assert methods["ping"] == {
        "name": "ping",
        "kind": "function",
        "is_async": True,
        "signature": "()",
        "doc": None,
        "params": [],
    }


def test_actor_wins_over_same_named_function(shared_client):
    client = shared_client(ENV)
    methods = {m["name"]: m for m in client.get("/methods").json()["methods"]}
    assert methods["shared"]["kind"] == "actor"
    assert call(client, "shared").json() == {"result": "from actor"}


def test_inherited_static_and_class_methods_are_callable(shared_client):
    client = shared_client(ENV)
    assert call(client, "inherited").json() == {"result": "base"}
    assert call(client, "static", 5).json() == {"result": 5}
    assert call(client, "klass", y=6).json() == {"result": 6}


def test_hidden_names_are_not_found(shared_client):
    client = shared_client(ENV)
    for name in (
        "join",
        "CONSTANT",
        "NotAFunction",
        "_hidden",
        "_private",
        "prop",
        "__init__",
        "__class__",
        "Actor",
        "missing",
    ):
        response = call(client, name)
        assert response.status_code == 404, name
        error = error_of(response)
        assert error["kind"] == "method_not_found"
        assert "evaluate" in error["message"]  # lists what is available


def test_private_name_message_says_why(shared_client):
    error = error_of(call(shared_client(ENV), "_hidden"))
    assert "private" in error["message"]


def test_imported_name_message_says_why(shared_client):
    error = error_of(call(shared_client(ENV), "join"))
    assert "not a public function defined in env.py" in error["message"]


def test_function_only_env(make_client):
    client = make_client("def add(a: int, b: int) -> int:\n    return a + b\n")
    assert client.get("/health").json()["methods"] == 1
    assert call(client, "add", 2, b=3).json() == {"result": 5}


def test_default_with_broken_repr_does_not_stop_startup(make_client):
    source = (
        "class Weird:\n    def __repr__(self):\n        raise RuntimeError('no repr')\n\n"
        "def f(x=Weird(), y: int = 2):\n    return 1\n"
    )
    methods = make_client(source).get("/methods").json()["methods"]
    assert methods[0]["params"][0]["default"] == "<Weird object>"
    assert methods[0]["signature"] == "(x=<Weird object>, y: int = 2)"


def test_env_with_nothing_to_call_is_healthy_with_zero_methods(make_client):
    client = make_client("import os\nVALUE = 1\n")
    assert client.get("/health").json()["methods"] == 0
    assert "(none)" in error_of(call(client, "anything"))["message"]


POSTPONED = """
from __future__ import annotations


class Actor:
    def evaluate(self, task_type: str = "sat", limit: Optional[int] = None) -> dict[str, float]:
        return {}
"""


def test_postponed_annotations_are_shown_as_written(make_client):
    (method,) = make_client(POSTPONED).get("/methods").json()["methods"]
    assert (
        method["signature"]
        == "(task_type: str = 'sat', limit: Optional[int] = None) -> dict[str, float]"
    )
    assert [p["annotation"] for p in method["params"]] == ["str", "Optional[int]"]
