"""Small helpers shared by the server tests (fixtures live in conftest.py)."""

from __future__ import annotations

from typing import Any, Dict, Optional

import httpx


def call(
    client: Any, method: str, *args: object, timeout: Optional[float] = None, **kwargs: object
) -> httpx.Response:
    """POST one call and return the response."""
    body: Dict[str, Any] = {"method": method, "args": list(args), "kwargs": kwargs}
    if timeout is not None:
        body["timeout"] = timeout
    return client.post("/call", json=body)


def error_of(response: httpx.Response) -> dict:
    """The ``error`` object of an error response."""
    return response.json()["error"]
