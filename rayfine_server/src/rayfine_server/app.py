"""The application serving one env.py: ``/health``, ``/methods``, ``/call``.

Plain Starlette: FastAPI would add nothing these three fixed routes use, and
importing it (and pydantic) costs every container start about 0.3 s of CPU.
"""

from __future__ import annotations

import json
import logging
from typing import Awaitable, Callable, Optional

from starlette.applications import Starlette
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .auth import BearerTokenMiddleware
from .call_request import parse_call_request, read_body
from .config import MAX_BODY_BYTES, ServerConfig
from .dispatch import Dispatcher
from .errors import BAD_REQUEST, INTERNAL_ERROR, CallError
from .loader import LoadedEnv, load_env
from .methods import describe_method

ENV_TYPE = "function_based"
ROUTES = "GET /health, GET /methods, POST /call"

logger = logging.getLogger(__name__)


def create_app(config: ServerConfig) -> Starlette:
    """Import env.py from ``config.env_dir`` and build the app serving it.

    A broken env.py does not raise here: every route then answers 503 with
    the ``env_load_failed`` error so the client can show the traceback.
    """
    env = load_env(config.env_dir)
    handlers = {
        CallError: _call_error_handler,
        StarletteHTTPException: _http_error_handler,
        Exception: _internal_error_handler,
    }
    app = Starlette(
        routes=_routes(env, Dispatcher(env, config.max_threads)),
        exception_handlers=handlers,  # type: ignore[arg-type]
    )
    app.state.env = env
    if config.token:
        app.add_middleware(BearerTokenMiddleware, token=config.token)
    return app


def _routes(env: LoadedEnv, dispatcher: Dispatcher) -> list:
    """The three routes; the fixed answers are encoded once, here."""
    failure: Optional[Response] = None
    if env.error is not None:
        # The same prepared answer on every route: nothing else can be served.
        failure = health = methods = env.error.to_response()
    else:
        health = _json_response({"status": "ok", "env_type": ENV_TYPE, "methods": len(env.methods)})
        methods = _json_response({"methods": [describe_method(m) for m in env.methods.values()]})

    async def get_health(request: Request) -> Response:
        """Whether env.py loaded, and how many methods it offers."""
        return health

    async def get_methods(request: Request) -> Response:
        """Every callable method with its signature and docstring."""
        return methods

    async def post_call(request: Request) -> Response:
        """Call one method: ``{"method", "args", "kwargs", "timeout"}`` -> ``{"result"}``."""
        if failure is not None:
            return failure
        call = parse_call_request(await read_body(request, MAX_BODY_BYTES))
        return Response(await dispatcher.call(call), media_type="application/json")

    endpoints: list[tuple[str, str, Callable[[Request], Awaitable[Response]]]] = [
        ("/health", "GET", get_health),
        ("/methods", "GET", get_methods),
        ("/call", "POST", post_call),
    ]
    return [
        Route(path, endpoint, methods=[verb], include_in_schema=False)
        for path, verb, endpoint in endpoints
    ]


def _json_response(payload: object) -> Response:
    """A JSON response whose body is encoded now, not per request."""
    return Response(json.dumps(payload).encode(), media_type="application/json")


async def _call_error_handler(request: Request, exc: CallError) -> Response:
    """Every refusal and failure leaves in the common error shape."""
    return exc.to_response()


async def _http_error_handler(request: Request, exc: StarletteHTTPException) -> Response:
    """Unknown routes and wrong verbs, in the common error shape."""
    message = f"No route {request.method} {request.url.path} ({exc.detail}); routes: {ROUTES}"
    response = CallError(BAD_REQUEST, message, status=exc.status_code).to_response()
    response.headers.update(exc.headers or {})
    return response


async def _internal_error_handler(request: Request, exc: Exception) -> Response:
    """Last resort for bugs in the server itself; the server keeps serving."""
    logger.error("Internal error on %s %s", request.method, request.url.path, exc_info=exc)
    return CallError(INTERNAL_ERROR, f"{type(exc).__name__}: {exc}").to_response()
