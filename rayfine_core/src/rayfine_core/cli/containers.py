"""``rayfine run``, ``ps``, ``logs`` and ``stop``: environments that outlive the command."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .. import errors
from ..api import load_env
from ..environment import rundir, statefiles
from ..plugins.manager import available_runtimes, get_runtime
from ..runtime import labels, reaper
from ..runtime.types import ContainerRecord
from ._util import (
    RAW,
    add_env_options,
    add_json_option,
    add_runtime_option,
    age,
    default_runtime,
    env_file_vars,
    from_host_env,
    positive_float,
    print_json,
    print_table,
    status,
)
from .targets import Target, detached_targets, resolve


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    run = sub.add_parser(
        "run",
        parents=[common],
        formatter_class=RAW,
        help="start an environment that keeps running",
        description="Start a container from IMAGE and leave it running after this command exits.\n"
        "Reach it later with `rayfine call NAME ...`; stop it with `rayfine stop NAME`.",
    )
    run.add_argument("image", metavar="IMAGE", help="an image built by `rayfine build`")
    run.add_argument("--name", help="container name (default: rayfine-<image>-<id>)")
    add_env_options(run)
    add_runtime_option(run)
    run.add_argument(
        "--env-type", choices=["function_based", "http_based"], help="override the image's label"
    )
    run.add_argument("--mem-limit", metavar="SIZE", help="memory cap, e.g. 512m or 2g")
    run.add_argument("--cpu-limit", metavar="CPUS", type=float, help="number of CPUs, e.g. 0.5")
    run.add_argument("--pids-limit", metavar="N", type=int, help="maximum number of processes")
    run.add_argument(
        "--network", metavar="MODE", help="engine network mode; 'none' cuts the container off"
    )
    run.add_argument(
        "--port",
        metavar="PORT",
        type=int,
        help="serve on this 127.0.0.1 port instead of a Unix socket",
    )
    run.add_argument(
        "--start-timeout",
        metavar="S",
        type=positive_float,
        default=60.0,
        help="seconds to wait for the server to answer (default: 60)",
    )
    run.set_defaults(func=cmd_run)

    ps = sub.add_parser(
        "ps",
        parents=[common],
        help="list Rayfine containers",
        description="List the containers Rayfine started (label rayfine.owner=rayfine), running or"
        " not, on every installed runtime that answers (or only --runtime's).",
    )
    add_runtime_option(ps, "list only this runtime's containers", "every runtime that answers")
    ps.add_argument(
        "--all-runtimes", action="store_true", help="the default; kept for older scripts"
    )
    add_json_option(ps)
    ps.set_defaults(func=cmd_ps)

    logs = sub.add_parser(
        "logs",
        parents=[common],
        help="show a container's output",
        description="Print the output of a Rayfine container (by name, env id or id prefix).",
    )
    logs.add_argument("name", metavar="NAME", help="container name, env id or container-id prefix")
    logs.add_argument(
        "-f",
        "--follow",
        action="store_true",
        help="keep printing new output until Ctrl-C or the container stops",
    )
    logs.add_argument(
        "--tail",
        metavar="N",
        type=int,
        default=100,
        help="lines of past output to show (default: 100)",
    )
    add_runtime_option(logs, "runtime of a container that was not started by `rayfine run`")
    logs.set_defaults(func=cmd_logs)

    stop = sub.add_parser(
        "stop",
        parents=[common],
        formatter_class=RAW,
        help="stop and remove environments",
        description="Stop and remove Rayfine containers, and forget their state files.\n"
        "Containers not started by Rayfine are refused (exit code 1).",
    )
    stop.add_argument(
        "names", metavar="NAME", nargs="*", help="container name, env id or container-id prefix"
    )
    stop.add_argument(
        "--all",
        action="store_true",
        help="stop every environment `rayfine run` recorded in this user's state directory"
        " (containers owned by a running Python process are left to it)",
    )
    stop.add_argument(
        "--orphans",
        action="store_true",
        help="stop the containers on this host whose owning process is gone (never detached ones)",
    )
    add_runtime_option(stop, "runtime of containers that were not started by `rayfine run`")
    stop.set_defaults(func=cmd_stop)


# -- run ------------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    env_vars = env_file_vars(args.env_file)
    env_vars.update(from_host_env(args.env, "Environment variable"))
    runtime = args.runtime or default_runtime()
    status(f"rayfine: starting {args.image} on {runtime}")
    env = load_env(
        args.image,
        container_name=args.name,
        http_port=args.port,
        env_vars=env_vars,
        env_type=args.env_type,
        runtime=runtime,
        start_timeout=args.start_timeout,
        mem_limit=args.mem_limit,
        cpu_limit=args.cpu_limit,
        pids_limit=args.pids_limit,
        network=args.network,
        labels={labels.DETACHED: "1"},
    )
    env.detach()
    print(f"name:      {env.name}")
    print(f"env id:    {env.id}")
    print(f"container: {env.handle.id[:12]}")
    print(f"endpoint:  {env.handle.endpoint}")
    status(
        f"rayfine: call it with `rayfine call {env.name} METHOD --arg k=v`; stop it with `rayfine stop {env.name}`"
    )
    return 0


# -- ps -------------------------------------------------------------------------------


def cmd_ps(args: argparse.Namespace) -> int:
    names = [args.runtime] if args.runtime else available_runtimes()
    records: list[ContainerRecord] = []
    answered: list[str] = []
    silent: list[str] = []
    for name in names:
        try:
            records += get_runtime(name).list_containers(reaper.owned_by(name))
        except errors.RayfineError as exc:
            if args.runtime:
                raise
            silent.append(f"{name} ({str(exc).splitlines()[0]})")
            continue
        answered.append(name)
    if silent and (args.verbose or not answered):
        status(f"rayfine: not listed: {'; '.join(silent)}")
    if not answered:
        return 1
    rows = [_ps_row(r) for r in sorted(records, key=lambda r: (r.runtime, -(r.created or 0)))]
    if args.json:
        print_json(rows)
    elif rows:
        print_table(
            ["NAME", "CONTAINER ID", "IMAGE", "STATUS", "RUNTIME", "TYPE", "AGE", "OWNER"],
            [
                [
                    r["name"],
                    r["id"][:12],
                    r["image"],
                    r["status"],
                    r["runtime"],
                    r["env_type"] or "-",
                    age(r["created"]),
                    r["owner"],
                ]
                for r in rows
            ],
        )
    else:
        status(f"rayfine: no Rayfine containers on {', '.join(answered)}")
    return 0


def _ps_row(record: ContainerRecord) -> dict[str, Any]:
    lbl = record.labels
    detached = lbl.get(labels.DETACHED) == "1"
    return {
        "name": record.name,
        "id": record.id,
        "image": record.image,
        "status": record.status,
        "runtime": record.runtime,
        "env_type": lbl.get(labels.ENV_TYPE),
        "env_id": lbl.get(labels.ENV_ID),
        "created": record.created,
        "detached": detached,
        "owner": "detached"
        if detached
        else f"pid {lbl.get(labels.PID, '?')}@{lbl.get(labels.HOST, '?')}",
    }


# -- logs -----------------------------------------------------------------------------


def cmd_logs(args: argparse.Namespace) -> int:
    if args.tail < 0:
        raise errors.ValidationError(f"--tail must be 0 or more, got {args.tail}.")
    target = resolve(args.name, args.runtime)
    if not args.follow:
        text = target.runtime.logs(target.id, args.tail)
        sys.stdout.write(text if not text or text.endswith("\n") else text + "\n")
        return 0
    for line in target.runtime.follow_logs(target.id, args.tail):
        sys.stdout.write(line)
        sys.stdout.flush()
    return 0


# -- stop -----------------------------------------------------------------------------


def cmd_stop(args: argparse.Namespace) -> int:
    if sum(map(bool, (args.names, args.all, args.orphans))) != 1:
        raise errors.ValidationError(
            "Name the environments to stop, or pass --all or --orphans (only one of these)."
        )
    if args.orphans:
        runtime = get_runtime(args.runtime or default_runtime())
        removed = reaper.reap(runtime, rundir.forget, statefiles.is_detached)
        for record in removed:
            print(record.name)
        if not removed:
            status("rayfine: no orphaned containers")
        return 0
    if args.all:
        targets = detached_targets(args.runtime)
        if not targets:
            status("rayfine: no detached environments to stop")
    else:
        targets = [
            resolve(name, args.runtime) for name in args.names
        ]  # all found before any is stopped
    for target in targets:
        _stop(target)
    return 0


def _stop(target: Target) -> None:
    gone = target.runtime.health(target.id).status == "removed"
    target.runtime.stop(target.id)
    if target.detached is not None:
        statefiles.forget(target.detached)
    else:
        path = rundir.path_of(target.env_id or "")
        if path is not None:
            rundir.remove(path)
    print(f"{target.name}" + (" (was already gone; forgot it)" if gone else ""))
