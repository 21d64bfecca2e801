"""Entry point of the ``example`` plugin (group ``rayfine``): a runtime and two hooks.

* ``rayfine_runtimes`` declares the ``example`` runtime (see :mod:`.runtime`);
* ``rayfine_start`` marks every container the example runtime starts with a
  label and an environment variable: changing a request is what this hook
  is for, so the runtime itself need not know;
* ``rayfine_call`` is a call tracer: a wrapper that times every call, on
  any runtime, and keeps the last few in :data:`TRACE`.

Nothing heavy is imported here.
"""

from __future__ import annotations

import collections
import logging
import time
from typing import Any, Deque, Generator, Iterator

from rayfine_core import CallInfo, RuntimeSpec, StartRequest, hookimpl

LABEL = "example.wrapped"
ENV_VAR = "EXAMPLE_WRAPPED"
TRACE: Deque[tuple[str, str, float, str]] = collections.deque(maxlen=1000)
"""(env id, method, seconds, outcome) of the latest calls."""
log = logging.getLogger("rayfine_example_runtime")


@hookimpl
def rayfine_runtimes() -> Iterator[RuntimeSpec]:
    from .runtime import ExampleRuntime

    yield RuntimeSpec(
        name="example",
        factory=ExampleRuntime,
        description="Example third-party plugin: docker, with containers labelled example.wrapped=1",
    )


@hookimpl
def rayfine_start(request: StartRequest, runtime: str) -> None:
    if runtime == "example":
        request.labels[LABEL] = "1"
        request.env[ENV_VAR] = "1"


@hookimpl(wrapper=True)
def rayfine_call(call: CallInfo) -> Generator[None, Any, Any]:
    started = time.perf_counter()
    outcome = "error"
    try:
        result = yield
        outcome = "ok"
        return result
    finally:
        elapsed = time.perf_counter() - started
        TRACE.append((call.env_id, call.method, elapsed, outcome))
        log.debug("%s.%s: %s in %.1f ms", call.env_id, call.method, outcome, elapsed * 1000)
