"""Put the pieces together and run them on an event loop until SIGTERM."""

from __future__ import annotations

import asyncio
import importlib
import signal
from typing import Tuple

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
        return asyncio.run(serve())
    finally:
        # Already on the way out: a repeated SIGTERM must not turn exit code 0 into -15.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _resolve(stop: "asyncio.Future[int]", code: int) -> None:
    if not stop.done():
        stop.set_result(code)
