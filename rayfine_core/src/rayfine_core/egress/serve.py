"""``python -m rayfine_core.egress serve``: the egress proxy as a process of its own.

For environments that outlive the client that started them (``rayfine run``,
``env.detach()``).  It serves one socket and exits when that socket file is
removed or replaced (``rayfine stop`` deletes the run directory), or on
SIGTERM/SIGINT.  It prints ``ready`` on stdout once it accepts connections,
then logs one line per decision on stderr.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from typing import Optional, Sequence

from ..errors import ValidationError
from .limits import ProxyLimits
from .policy import EgressPolicy
from .proxy import EgressProxy
from .resolver import Resolver, StaticResolver, SystemResolver, from_hosts_file

POLL_SECONDS = 0.5


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m rayfine_core.egress")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve one environment's egress socket")
    serve.add_argument("--socket", required=True, help="Unix socket path to listen on")
    serve.add_argument("--env-id", required=True, help="environment id, for logs and stats")
    serve.add_argument(
        "--allow", action="append", default=[], metavar="PATTERN", help="host[:port], *.domain"
    )
    serve.add_argument("--allow-private", action="store_true", help="allow any private address")
    serve.add_argument(
        "--allow-private-net", action="append", default=[], metavar="CIDR", help="allow this range"
    )
    serve.add_argument(
        "--resolve",
        action="append",
        default=[],
        metavar="NAME=ADDR",
        help="answer NAME with ADDR instead of asking DNS (repeatable)",
    )
    serve.add_argument("--max-connections", type=int, default=ProxyLimits.max_connections)
    serve.add_argument("--idle-timeout", type=float, default=ProxyLimits.idle_timeout)
    serve.add_argument("--connect-timeout", type=float, default=ProxyLimits.connect_timeout)
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    return parser


def _resolver(entries: Sequence[str]) -> Resolver:
    hosts = os.environ.get("RAYFINE_EGRESS_HOSTS")
    fallback: Resolver = from_hosts_file(hosts, SystemResolver()) if hosts else SystemResolver()
    if not entries:
        return fallback
    table: dict[str, list[str]] = {}
    for entry in entries:
        name, sep, address = entry.partition("=")
        if not sep or not name or not address:
            raise ValidationError(f"--resolve {entry!r}: expected NAME=ADDRESS")
        table.setdefault(name, []).append(address)
    return StaticResolver(table, fallback=fallback)


def serve(args: argparse.Namespace) -> int:
    """Serve until the socket file goes away or a signal arrives; the exit code."""
    private = True if args.allow_private else tuple(args.allow_private_net)
    policy = EgressPolicy(tuple(args.allow), allow_private=private)
    limits = ProxyLimits(
        max_connections=args.max_connections,
        idle_timeout=args.idle_timeout,
        connect_timeout=args.connect_timeout,
    )
    proxy = EgressProxy(resolver=_resolver(args.resolve), limits=limits)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, lambda *_: stop.set())
    proxy.add(args.socket, policy, args.env_id)
    inode = os.lstat(args.socket).st_ino
    print("ready", flush=True)
    try:
        while not stop.wait(POLL_SECONDS):
            if not _still_ours(args.socket, inode):
                break
    finally:
        stats = proxy.remove(args.socket)
        proxy.close()
        logging.getLogger("rayfine.egress").info(
            "egress env=%s stopped: allowed=%d denied=%d failed=%d bytes_out=%d bytes_in=%d",
            args.env_id,
            stats.allowed,
            stats.denied,
            stats.failed,
            stats.bytes_out,
            stats.bytes_in,
        )
    return 0


def _still_ours(path: str, inode: int) -> bool:
    try:
        return os.lstat(path).st_ino == inode
    except OSError:
        return False


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return serve(args)
    except ValidationError as exc:
        print(f"rayfine egress: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"rayfine egress: cannot serve {args.socket}: {exc}", file=sys.stderr)
        return 1
