"""http-based environments through the client, offline: a real FastAPI app on a loopback port.

The app runs in this process under uvicorn; a test runtime stands in for the
engine (the container "runs" while the app does), and the environment is
reached with ``rayfine_core.attach`` from a state file, so every call goes
through the real client path: the catalogue from ``/openapi.json``, the
argument checks, the http dialect, the transport and the error mapping.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Iterator, List, Optional

import pytest

fastapi = pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")
pydantic = pytest.importorskip("pydantic")

from fastapi import FastAPI, Query  # noqa: E402
from pydantic import BaseModel, ConfigDict, Field  # noqa: E402

import rayfine_core as rf  # noqa: E402
from rayfine_core import (  # noqa: E402
    ContainerRecord,
    ContainerState,
    Endpoint,
    EnvType,
    Runtime,
    RuntimeSpec,
    errors,
    hookimpl,
)
from rayfine_core.environment import statefiles  # noqa: E402
from rayfine_core.plugins import register, unregister  # noqa: E402
from rayfine_core.transport.dialects import route_method_name, type_text  # noqa: E402


class Reset(BaseModel):
    seed: int = Field(0, ge=0)
    difficulty: Optional[str] = None


class Open(BaseModel):
    model_config = ConfigDict(extra="allow")
    a: int


def make_app() -> FastAPI:
    app = FastAPI()

    @app.post("/reset")
    def reset(body: Reset) -> dict:
        """Start an episode."""
        return {"seed": body.seed, "difficulty": body.difficulty}

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok"}

    @app.get("/items/{item_id}")
    def item(item_id: int, q: Optional[str] = None, tags: List[str] = Query([])) -> dict:  # noqa: B008
        return {"item_id": item_id, "q": q, "tags": tags}

    @app.delete("/items/{item_id}")
    def delete_item(item_id: int) -> dict:
        return {"deleted": item_id}

    @app.post("/step")
    def step(action: str, verbose: bool = False) -> dict:  # scalars: query parameters
        return {"action": action, "verbose": verbose}

    @app.post("/echo")
    def echo(body: dict) -> dict:
        return body

    @app.post("/total")
    def total(values: List[int]) -> int:
        return sum(values)

    @app.post("/open")
    def open_fields(body: Open) -> dict:
        return body.model_dump()

    @app.post("/hidden", include_in_schema=False)
    def hidden() -> str:
        return "not in the schema, still callable"

    return app


class LoopbackRuntime(Runtime):
    """The "engine" of an app served in this process: its one container runs while it does."""

    name = "loopback-app"

    def __init__(self) -> None:
        self.running = True

    def build(self, request):  # type: ignore[no-untyped-def]
        raise NotImplementedError

    def image_labels(self, image: str) -> dict[str, str]:
        return {}

    def start(self, request):  # type: ignore[no-untyped-def]
        raise NotImplementedError

    def health(self, container_id: str) -> ContainerState:
        return ContainerState(running=self.running, status="running" if self.running else "exited")

    def logs(self, container_id: str, tail: int = 50) -> str:
        return ""

    def stop(self, container_id: str, timeout: float = 5.0) -> None:
        self.running = False

    def list_containers(self, labels) -> list[ContainerRecord]:  # type: ignore[no-untyped-def]
        return []


class Plugin:
    @hookimpl
    def rayfine_runtimes(self):  # type: ignore[no-untyped-def]
        yield RuntimeSpec(name="loopback-app", factory=LoopbackRuntime)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def env() -> Iterator[rf.Environment]:
    port = free_port()
    config = uvicorn.Config(make_app(), host="127.0.0.1", port=port, log_level="error")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    plugin = register(Plugin(), name="test-loopback-app")
    record = statefiles.Detached(
        path=None,
        name="unit-authoring-http",
        container_id="loopback",
        env_id="loopbackenv1",
        image="loopback:latest",
        runtime="loopback-app",
        env_type=EnvType.HTTP_BASED,
        endpoint=Endpoint(port=port),
        token=None,
        run_dir=None,
        detached_at=time.time(),
    )
    path = statefiles.write(record)
    try:
        yield rf.attach("unit-authoring-http")
    finally:
        path.unlink(missing_ok=True)
        unregister(plugin)
        server.should_exit = True
        thread.join(10)


def test_every_route_is_a_method_with_the_schemas_types(env):
    methods = {m.name: m for m in env.list_methods()}
    assert set(methods) == {
        "reset",
        "health",
        "items_by_item_id",
        "delete_items_by_item_id",
        "step",
        "echo",
        "total",
        "open",
    }
    assert methods["reset"].signature == "(*, seed: int = 0, difficulty: str | None = None)"
    assert methods["items_by_item_id"].verb == "GET"
    assert methods["items_by_item_id"].signature == (
        "(*, item_id: int, q: str | None = None, tags: list[str] = [])"
    )
    assert methods["reset"].doc == "Start an episode."


def test_get_routes_path_and_query_parameters(env):
    assert env.health() == {"status": "ok"}
    assert env.items_by_item_id(item_id=3) == {"item_id": 3, "q": None, "tags": []}
    assert env.items_by_item_id(item_id=3, q="a b/c", tags=["x", "y"]) == {
        "item_id": 3,
        "q": "a b/c",
        "tags": ["x", "y"],
    }
    assert env.delete_items_by_item_id(item_id=5) == {"deleted": 5}
    assert env.step(action="12", verbose=True) == {"action": "12", "verbose": True}


def test_bodies_of_every_shape(env):
    assert env.reset(seed=3) == {"seed": 3, "difficulty": None}
    assert env.echo(a=1, b=[2]) == {"a": 1, "b": [2]}
    assert env.total(body=[1, 2, 3]) == 6
    assert env.open(a=1, b=2) == {"a": 1, "b": 2}  # the model allows extra fields
    assert env.hidden() == "not in the schema, still callable"


def test_misspelt_keywords_are_refused_with_a_suggestion(env):
    with pytest.raises(errors.InvalidArgumentsError) as info:
        env.reset(sed=3)  # pydantic would drop it and run seed 0
    assert "'sed'" in str(info.value) and "did you mean 'seed'" in str(info.value)
    with pytest.raises(errors.InvalidArgumentsError, match="'seed' must be int, got str"):
        env.reset(seed="3")
    with pytest.raises(
        errors.InvalidArgumentsError, match=r"too many positional arguments; expected reset\(\*, "
    ):
        env.reset(3)


def test_a_mistyped_route_lists_the_routes(env):
    with pytest.raises(errors.MethodNotFoundError) as info:
        env.rest(seed=1)
    text = str(info.value)
    assert "no route for rest() (POST /rest)" in text and "did you mean 'reset'" in text
    assert "health (GET /health)" in text and "items_by_item_id (GET /items/{item_id})" in text


def test_the_apps_own_refusal_is_readable(env):
    with pytest.raises(errors.InvalidArgumentsError) as info:
        env.reset(seed=-1)  # a constraint only the app knows
    text = str(info.value)
    assert "seed: Input should be greater than or equal to 0 (got -1)" in text
    assert "expected reset(*, seed: int = 0" in text


@pytest.mark.parametrize(
    "path, name",
    [
        ("/evaluate", "evaluate"),
        ("/env/reset-all", "env_reset_all"),
        ("/items/{item_id}", "items_by_item_id"),
        ("/users/{uid}/posts", "users_by_uid_posts"),
        ("/", None),
    ],
)
def test_route_names(path, name):
    assert route_method_name(path) == name


def test_schema_types():
    doc = {"components": {"schemas": {"Model": {"type": "object"}}}}
    assert type_text({"anyOf": [{"type": "string"}, {"type": "null"}]}, doc) == "str | None"
    assert type_text({"type": "array", "items": {"type": "integer"}}, doc) == "list[int]"
    assert type_text({"enum": ["a", "b"], "type": "string"}, doc) == "Literal['a', 'b']"
    assert type_text({"$ref": "#/components/schemas/Model"}, doc) == "Model"
    assert type_text({"type": "object", "additionalProperties": {"type": "number"}}, doc) == (
        "dict[str, float]"
    )
    assert type_text({"title": "Expected"}, doc) is None  # a title is not a type
