"""``rayfine call`` and ``rayfine methods``: talk to a detached environment."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from ..api import attach
from ._util import (
    RAW,
    add_json_option,
    add_runtime_option,
    age,
    json_arg,
    json_object,
    positive_float,
    print_json,
    print_table,
    status,
    typed_value,
)


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    call = sub.add_parser(
        "call",
        parents=[common],
        formatter_class=RAW,
        help="call a method of a running environment",
        description="Call METHOD of an environment started with `rayfine run` (or `rayfine dev`)\n"
        "and print the result.\n\n"
        "examples:\n"
        "  rayfine call demo evaluate --arg answer=Paris --arg n=3\n"
        '  rayfine call demo evaluate --args-json \'{"answer": "Paris", "n": 3}\' --json\n\n'
        "--arg k=v reads v by the parameter's annotation: for a `str` parameter v is the\n"
        'text as given (12 stays "12"); otherwise v is JSON (3, true, [1,2], {"a":1},\n'
        '"quoted") and falls back to the raw text (Paris).',
    )
    call.add_argument(
        "name", metavar="NAME_OR_ID", help="container name, env id or container-id prefix"
    )
    call.add_argument(
        "method", metavar="METHOD", help="method name (`rayfine methods NAME` lists them)"
    )
    call.add_argument(
        "--arg",
        metavar="K=V",
        dest="pairs",
        action="append",
        type=json_arg,
        default=[],
        help="keyword argument, value parsed as JSON (repeatable; wins over --args-json)",
    )
    call.add_argument(
        "--args-json",
        metavar="OBJECT",
        type=json_object,
        default={},
        help="keyword arguments as one JSON object",
    )
    call.add_argument(
        "--timeout",
        metavar="S",
        type=positive_float,
        help="seconds the call may take (default: no limit)",
    )
    call.add_argument(
        "--session",
        metavar="ID",
        help="call the Actor of this session (`rayfine sessions NAME --open` makes one)",
    )
    add_runtime_option(call, "only look for environments of this runtime", "any")
    call.add_argument("--json", action="store_true", help="print the result as compact JSON")
    call.set_defaults(func=cmd_call)

    sessions = sub.add_parser(
        "sessions",
        parents=[common],
        formatter_class=RAW,
        help="list, open or close the sessions of a running environment",
        description="List the sessions (independent Actor instances) of an environment started\n"
        "with `rayfine run`; --open makes one (constructor arguments as for `call`),\n"
        "--close ID ends one.",
    )
    sessions.add_argument(
        "name", metavar="NAME_OR_ID", help="container name, env id or container-id prefix"
    )
    action = sessions.add_mutually_exclusive_group()
    action.add_argument("--open", action="store_true", help="open a session; print its id")
    action.add_argument("--close", metavar="ID", help="close the session ID")
    sessions.add_argument(
        "--arg",
        metavar="K=V",
        dest="pairs",
        action="append",
        type=json_arg,
        default=[],
        help="--open: constructor keyword argument, value parsed as JSON (repeatable)",
    )
    add_runtime_option(sessions, "only look for environments of this runtime", "any")
    add_json_option(sessions)
    sessions.set_defaults(func=cmd_sessions)

    methods = sub.add_parser(
        "methods",
        parents=[common],
        help="list the methods of a running environment",
        description="List the methods of an environment started with `rayfine run`.",
    )
    methods.add_argument(
        "name", metavar="NAME_OR_ID", help="container name, env id or container-id prefix"
    )
    add_runtime_option(methods, "only look for environments of this runtime", "any")
    add_json_option(methods)
    methods.set_defaults(func=cmd_methods)


def cmd_call(args: argparse.Namespace) -> int:
    env = attach(args.name, args.runtime)
    info = {m.name: m for m in env.list_methods()}.get(args.method)
    annotations = {p.name: p.annotation for p in info.params} if info else {}
    typed = {key: typed_value(raw, annotations.get(key)) for key, raw in args.pairs}
    kwargs = {**args.args_json, **typed}
    target = env.existing_session(args.session) if args.session else env
    result = target.call_method(args.method, (), kwargs, args.timeout)
    if args.json:
        print_json(result, compact=True)
    elif isinstance(result, str):
        print(result)
    else:
        print_json(result)
    return 0


def cmd_sessions(args: argparse.Namespace) -> int:
    env = attach(args.name, args.runtime)
    if args.open:
        # The constructor's annotations are not listed: a value is JSON when it parses.
        kwargs = {key: typed_value(raw, None) for key, raw in args.pairs}
        print(env.session(**kwargs).id)
        return 0
    if args.close:
        env.existing_session(args.close).close()
        return 0
    listed = env.sessions()
    if args.json:
        print_json(listed)
    elif listed:
        print_table(
            ["SESSION", "CALLS", "IN FLIGHT", "IDLE FOR", "EXPIRES AFTER"],
            [
                [
                    s["id"],
                    s.get("calls", 0),
                    s.get("in_flight", 0),
                    age(s.get("last_used")),
                    f"{s.get('idle_timeout', 0):g}s idle",
                ]
                for s in listed
            ],
        )
    else:
        status(f"rayfine: {env.name} has no open sessions")
    return 0


def cmd_methods(args: argparse.Namespace) -> int:
    env = attach(args.name, args.runtime)
    methods = sorted(env.list_methods(), key=lambda m: m.name)
    if args.json:
        print_json([dataclasses.asdict(m) for m in methods])
        return 0
    for info in methods:
        tags = ", ".join(
            t
            for t in ("async" if info.is_async else "", info.kind if info.kind != "actor" else "")
            if t
        )
        print(f"{info.name}{info.signature}" + (f"  [{tags}]" if tags else ""))
        for line in (info.doc or "(no docstring)").strip().splitlines():
            print(f"    {line.rstrip()}" if line.strip() else "")
    if not methods:
        status(f"rayfine: {env.name} exposes no methods")
    return 0
