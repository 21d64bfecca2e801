"""Put the pieces together and run them on an event loop until SIGTERM."""

from __future__ import annotations

import asyncio
import importlib
import os
import signal
from typing import Any, Callable, Coroutine, Tuple

from .app import FunctionApp, ServedEnv
from .config import ServerConfig
from .loader import load_env
from .reload import forget_modules
from .server import App, Server
from .workers import WorkerPool


def build_function_app(config: ServerConfig) -> Tuple[FunctionApp, WorkerPool]:
    """Import env.py (a failure is kept and served as 503) and build its app."""
    pool = WorkerPool(config.max_threads)

    def rebuild() -> ServedEnv:
        forget_modules(config.env_dir)
        importlib.invalidate_caches()
        return ServedEnv(load_env(config.env_dir), pool, config)

    served = ServedEnv(load_env(config.env_dir), pool, config)
    if not config.reload:
        return FunctionApp(served, pool, eager=config.eager), pool
    app = FunctionApp(served, pool, config.eager, reload_from=config.env_dir, rebuild=rebuild)
    return app, pool


def run_server(config: ServerConfig) -> int:
    """Serve until SIGTERM or SIGINT (or the proxied app exits); return the exit code."""
    if config.app_command:
        from .proxy import ProxyApp

        return _run(config, ProxyApp(config))
    app, pool = build_function_app(config)
    try:
        return _run(config, app)
    finally:
        pool.shutdown()


def _run(config: ServerConfig, app: App) -> int:
    async def serve() -> int:
        loop = asyncio.get_running_loop()
        stop: asyncio.Future[int] = loop.create_future()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, _resolve, stop, 0)
        return await Server(config, app).serve(stop)

    try:
        return _run_loop(_loop_factory(), serve())
    finally:
        # Already on the way out: a repeated SIGTERM must not turn exit code 0 into -15.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    """uvloop when it is importable (and not turned off with RAYFINE_LOOP=asyncio)."""
    if os.environ.get("RAYFINE_LOOP", "auto") == "asyncio":
        return asyncio.new_event_loop
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop
    return uvloop.new_event_loop  # type: ignore[no-any-return]


def _run_loop(
    factory: Callable[[], asyncio.AbstractEventLoop], main: Coroutine[Any, Any, int]
) -> int:
    """``asyncio.run(main)`` on a loop from ``factory`` (``loop_factory`` is new in 3.12)."""
    loop = factory()
    try:
        asyncio.set_event_loop(loop)
        return loop.run_until_complete(main)
    finally:
        try:
            tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for task in tasks:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            asyncio.set_event_loop(None)
            loop.close()


def _resolve(stop: asyncio.Future[int], code: int) -> None:
    if not stop.done():
        stop.set_result(code)
