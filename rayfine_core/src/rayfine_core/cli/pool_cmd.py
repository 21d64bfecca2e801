"""``rayfine pool status`` and ``rayfine pool limits``: pools and host-wide limits, seen from a shell.

Pools live inside the processes that made them.  What another process can
see: the status file each live pool keeps in the user's private run root
(ready, starting, in use, failures, last error; see
:mod:`~rayfine_core.pool.statusfile`), and the containers the engine holds
with a ``rayfine.pool`` label, whose owner may be gone (SIGKILL: orphans
that ``rayfine stop --orphans`` removes).
"""

from __future__ import annotations

import argparse
import collections
import sys
from typing import Any

from .. import errors
from ..environment import hostlimits
from ..plugins.manager import available_runtimes, get_runtime
from ..pool import statusfile
from ..pool.settings import KIND_LABEL, POOL_LABEL
from ..runtime import labels, reaper
from ._util import (
    RAW,
    add_json_option,
    add_runtime_option,
    default_runtime,
    print_json,
    print_table,
    status,
)

LIMITS_HELP = """\
host-wide limits (per user, honoured by every Rayfine process; see `rayfine pool limits`):
  RAYFINE_HOST_MAX_STARTS   starts in flight at once (default: 2 x CPUs)
  RAYFINE_HOST_MAX_RUNNING  running environments (default: 1024; 0: no limit)
  RAYFINE_HOST_START_RATE   starts per second, spaced evenly (default: no limit)
  RAYFINE_HOST_WAIT         seconds a start waits for a slot before CapacityError (default: 300)
"""


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    pool = sub.add_parser(
        "pool",
        parents=[common],
        formatter_class=RAW,
        help="show warm pools, replica sets and host-wide limits",
        description="Pools live in the Python processes that made them (rayfine_core.load_pool,"
        " load_replicas).\nThese commands show them from outside.",
        epilog=LIMITS_HELP,
    )
    commands = pool.add_subparsers(dest="pool_command", metavar="COMMAND", title="commands")
    show = commands.add_parser(
        "status",
        parents=[common],
        formatter_class=RAW,
        help="live pools of this user, and their containers",
        description="For each live pool of this user: its process, ready / starting / in-use\n"
        "environments, failed starts and the last error; then the containers the engine\n"
        "holds with a rayfine.pool label, by pool and owner (`owner gone`: orphans that\n"
        "`rayfine stop --orphans` removes).",
    )
    show.add_argument("name", metavar="NAME", nargs="?", help="only the pool of this name")
    add_runtime_option(show, "count the containers of this runtime")
    show.add_argument(
        "--all-runtimes", action="store_true", help="count the containers of every runtime"
    )
    show.add_argument(
        "--no-containers", action="store_true", help="skip the engine (status files only)"
    )
    add_json_option(show)
    show.set_defaults(func=cmd_status)
    limits = commands.add_parser(
        "limits",
        parents=[common],
        formatter_class=RAW,
        help="host-wide limits on starts and how much of them is in use",
        description="The limits in force for this shell's settings, and the slots held now by\n"
        "every Rayfine process of this user (with their pids).",
        epilog=LIMITS_HELP,
    )
    add_json_option(limits)
    limits.set_defaults(func=cmd_limits)
    pool.set_defaults(func=lambda args: _usage(pool))


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


# -- status -----------------------------------------------------------------------------------


def cmd_status(args: argparse.Namespace) -> int:
    pools = [r for r in statusfile.read_all() if args.name in (None, r.get("name"))]
    containers = [] if args.no_containers else _pool_containers(args)
    if args.name:
        containers = [c for c in containers if c["pool"] == args.name]
    if args.json:
        print_json({"pools": pools, "containers": containers})
        return 0
    if pools:
        print_table(
            ["POOL", "KIND", "PID", "IMAGE", "READY", "STARTING", "IN USE", "FAILED", "LAST ERROR"],
            [_pool_row(r) for r in pools],
        )
    else:
        status("rayfine: no live pools" + (f" named {args.name}" if args.name else ""))
    if containers:
        print()
        print_table(
            ["POOL", "KIND", "RUNTIME", "OWNER", "CONTAINERS"],
            [
                [c["pool"], c["kind"], c["runtime"], c["owner"], _counts(c["statuses"])]
                for c in containers
            ],
        )
    return 0


def _pool_row(record: dict[str, Any]) -> list[Any]:
    ready = f"{record.get('ready')}/{record.get('target')}"
    error = record.get("last_error") or "-"
    if record.get("retry_in") is not None:
        error += f" (retry in {record['retry_in']:.0f}s)"
    return [
        record.get("name"),
        record.get("kind"),
        record.get("pid"),
        record.get("image"),
        ready,
        record.get("starting"),
        record.get("in_use"),
        record.get("failed"),
        error,
    ]


def _pool_containers(args: argparse.Namespace) -> list[dict[str, Any]]:
    names = available_runtimes() if args.all_runtimes else [args.runtime or default_runtime()]
    groups: dict[tuple[str, str, str, str], collections.Counter[str]] = {}
    for name in names:
        try:
            records = get_runtime(name).list_containers(reaper.owned_by(name))
        except errors.RayfineError as exc:
            status(f"rayfine: warning: skipping runtime {name}: {str(exc).splitlines()[0]}")
            continue
        for record in records:
            pool = record.labels.get(POOL_LABEL)
            if not pool:
                continue
            owner = (
                f"pid {record.labels.get(labels.PID, '?')}"
                if reaper.owner_alive(record)
                else "owner gone"
            )
            key = (pool, record.labels.get(KIND_LABEL, "?"), name, owner)
            groups.setdefault(key, collections.Counter())[record.status] += 1
    return [
        {"pool": p, "kind": k, "runtime": r, "owner": o, "statuses": dict(counts)}
        for (p, k, r, o), counts in sorted(groups.items())
    ]


def _counts(statuses: dict[str, int]) -> str:
    return ", ".join(f"{n} {state}" for state, n in sorted(statuses.items()))


# -- limits -----------------------------------------------------------------------------------


def cmd_limits(args: argparse.Namespace) -> int:
    limits = hostlimits.current()
    usage = {u.kind: u for u in hostlimits.usage()}
    rows = [
        _limit_row(
            "starts in flight", usage.get(hostlimits.STARTS), limits.max_starts, "MAX_STARTS"
        ),
        _limit_row("running", usage.get(hostlimits.RUNNING), limits.max_running, "MAX_RUNNING"),
        [
            "start rate",
            f"{limits.start_rate:g}/s" if limits.start_rate else "no limit",
            "",
            "RAYFINE_HOST_START_RATE",
        ],
        ["wait for a slot", f"{limits.wait:g} s", "", "RAYFINE_HOST_WAIT"],
    ]
    if args.json:
        print_json(
            {
                "max_starts": limits.max_starts,
                "max_running": limits.max_running,
                "start_rate": limits.start_rate,
                "wait": limits.wait,
                "usage": {
                    kind: {"taken": u.taken, "limit": u.limit, "holders": u.holders}
                    for kind, u in usage.items()
                },
            }
        )
        return 0
    print_table(["LIMIT", "IN USE / LIMIT", "HELD BY", "SET WITH"], rows)
    return 0


def _limit_row(what: str, usage: Any, limit: int, variable: str) -> list[str]:
    if usage is None:
        return [what, "no limit", "", f"RAYFINE_HOST_{variable}"]
    holders = ", ".join(f"pid {pid} ({n})" for pid, n in sorted(usage.holders.items()))
    return [what, f"{usage.taken}/{limit}", holders or "-", f"RAYFINE_HOST_{variable}"]
