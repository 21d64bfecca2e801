"""``rayfine plugins`` and ``rayfine doctor``: what is installed, and whether it works."""

from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path
from typing import Any, Optional

from .. import __version__, errors
from ..build.builder import base_image
from ..environment.statefiles import list_detached, state_dir
from ..plugins.manager import get_manager, get_runtime
from ._util import RAW, add_json_option, print_json, print_table


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    cmd = sub.add_parser(
        "plugins",
        parents=[common],
        help="list installed runtimes and broken plugins",
        description="List the installed runtime plugins, and plugins that failed to load with why.",
    )
    add_json_option(cmd)
    cmd.set_defaults(func=cmd_plugins)

    cmd = sub.add_parser(
        "doctor",
        parents=[common],
        formatter_class=RAW,
        help="check that environments can be built and run",
        description="Check every installed runtime (engine reachable, base image present) and this host\n"
        "(Python, the server's wheel cache).  Each problem comes with a 'fix:' line.\n"
        "Exit code 0 if at least one runtime is fully usable, else 1.",
    )
    add_json_option(cmd)
    cmd.set_defaults(func=cmd_doctor)


# -- plugins --------------------------------------------------------------------------


def cmd_plugins(args: argparse.Namespace) -> int:
    manager = get_manager()
    runtimes = [
        {
            "runtime": name,
            "plugin": e.plugin,
            "distribution": e.distribution,
            "description": e.spec.description,
        }
        for name, e in sorted(manager.runtime_registry().items())
    ]
    servers = [
        {
            "server": name,
            "plugin": e.plugin,
            "distribution": e.distribution,
            "description": e.spec.description,
        }
        for name, e in sorted(manager.server_registry().items())
    ]
    failed = dict(manager.load_errors)
    if args.json:
        print_json({"runtimes": runtimes, "servers": servers, "failed": failed})
        return 0
    if runtimes:
        print_table(
            ["RUNTIME", "PLUGIN", "DISTRIBUTION", "DESCRIPTION"],
            [[r["runtime"], r["plugin"], r["distribution"], r["description"]] for r in runtimes],
        )
    else:
        print("No runtimes installed: pip install 'rayfine-core[docker]' (or [podman]).")
    if servers:
        print()
        print_table(
            ["SERVER (in images)", "PLUGIN", "DISTRIBUTION", "DESCRIPTION"],
            [[r["server"], r["plugin"], r["distribution"], r["description"]] for r in servers],
        )
    else:
        print("\nNo in-image server installed: pip install rayfine-server.")
    if failed:
        print("\nPlugins that failed to load:")
        for name, reason in sorted(failed.items()):
            print(f"  {name}: {reason}")
    return 0


# -- doctor ---------------------------------------------------------------------------


def _check(name: str, ok: bool, detail: str, fix: Optional[str] = None) -> dict[str, Any]:
    return {"check": name, "ok": ok, "detail": detail, "fix": None if ok else fix}


def cmd_doctor(args: argparse.Namespace) -> int:
    host = _host_checks()
    runtimes = [
        _runtime_checks(name, entry)
        for name, entry in sorted(get_manager().runtime_registry().items())
    ]
    usable = [r["runtime"] for r in runtimes if r["usable"]]
    report = {
        "host": host,
        "runtimes": runtimes,
        "failed_plugins": dict(get_manager().load_errors),
        "usable_runtimes": usable,
    }
    if args.json:
        print_json(report)
    else:
        _print_report(report)
    return 0 if usable else 1


def _host_checks() -> list[dict[str, Any]]:
    image = base_image()
    source = (
        "from RAYFINE_BASE_IMAGE"
        if os.environ.get("RAYFINE_BASE_IMAGE")
        else "default; set RAYFINE_BASE_IMAGE to change"
    )
    checks = [
        _check("python", True, f"{platform.python_version()} ({sys.executable})"),
        _check("platform", True, f"{platform.platform()} {platform.machine()}"),
        _check("rayfine", True, f"rayfine-core {__version__}"),
        _check("base image", True, f"{image} ({source})"),
        _wheels_check(),
    ]
    detached = list_detached()
    checks.append(_check("detached envs", True, f"{len(detached)} recorded in {state_dir()}"))
    return checks


def _wheels_check() -> dict[str, Any]:
    from ..build.wheelhouse import wheels_dir

    try:
        path = wheels_dir()
    except OSError as exc:
        return _check(
            "server wheels",
            False,
            f"cannot read the server's lock file: {exc}",
            "reinstall rayfine-server: pip install 'rayfine-core[server]'",
        )
    if (path / ".complete").exists():
        count = len(list(path.glob("*.whl")))
        return _check("server wheels", True, f"{count} wheels cached in {path}")
    return _check(
        "server wheels",
        False,
        f"not cached yet ({path})",
        "the first `rayfine build` of a function-based env downloads them (needs a package index);"
        " offline, copy a filled cache into $RAYFINE_CACHE_DIR/wheels",
    )


def _runtime_checks(name: str, entry: Any) -> dict[str, Any]:
    result: dict[str, Any] = {
        "runtime": name,
        "distribution": entry.distribution,
        "checks": [],
        "usable": False,
    }
    checks = result["checks"]
    try:
        rt = get_runtime(name)
        version = rt.version()
    except errors.RayfineError as exc:
        checks.append(_check("engine", False, str(exc).splitlines()[0], _fix_from(str(exc))))
        return result
    checks.append(_check("engine", True, f"reachable, version {version}"))
    image = base_image()
    try:
        rt.image_labels(image)
        checks.append(_check("base image", True, f"{image} is present"))
    except errors.ImageNotFoundError:
        checks.append(
            _check("base image", False, f"{image} is not in {name}", base_image_fix(name, image))
        )
    except errors.RayfineError as exc:
        checks.append(
            _check("base image", False, str(exc).splitlines()[0], "check the engine's image store")
        )
    result["usable"] = all(c["ok"] for c in checks)
    return result


def base_image_fix(runtime: str, image: str) -> str:
    """What to do about a missing base image, naming only commands and files that exist here."""
    fixes = [f"pull it ({_pull_hint(runtime, image)})"]
    script = repo_script("make-base-image.sh")
    if script is not None:
        fixes.append(f"build one offline with `bash {script}`")
    listing = f"`{runtime} images` lists them" if runtime in ("docker", "podman") else "its images"
    fixes.append(f"or set RAYFINE_BASE_IMAGE to an image this engine has ({listing})")
    return ", ".join(fixes)


def repo_script(name: str) -> Optional[Path]:
    """A script of the Rayfine source tree, when running from a checkout (an installed wheel
    has none: its fix lines must not name one)."""
    path = Path(__file__).resolve().parents[4] / "scripts" / name
    return path if path.is_file() else None


def _pull_hint(runtime: str, image: str) -> str:
    if runtime in ("docker", "podman"):
        return f"`{runtime} pull {image}`"
    return f"with the tools of the engine behind the {runtime!r} runtime"


def _fix_from(message: str) -> str:
    """Engine errors already say what to do (``... Start it (e.g. ...)``); reuse that advice."""
    for marker in (" Start it", " Install", " Set "):
        if marker in message:
            return message[message.index(marker) + 1 :].splitlines()[0]
    return "start the engine, or check its socket/URL settings"


def _print_report(report: dict[str, Any]) -> None:
    print("host")
    _print_checks(report["host"])
    for runtime in report["runtimes"]:
        state = "usable" if runtime["usable"] else "NOT usable"
        print(f"\n{runtime['runtime']} ({runtime['distribution']}): {state}")
        _print_checks(runtime["checks"])
    for name, reason in sorted(report["failed_plugins"].items()):
        print(f"\nplugin {name}: failed to load: {reason}")
        print("  fix: reinstall or uninstall that plugin's distribution")
    usable = report["usable_runtimes"]
    print(
        f"\n{'OK: usable runtimes: ' + ', '.join(usable) if usable else 'PROBLEM: no runtime is usable'}"
    )


def _print_checks(checks: list[dict[str, Any]]) -> None:
    for check in checks:
        mark = "ok " if check["ok"] else "!! "
        print(f"  {mark}{check['check']:<14} {check['detail']}")
        if check["fix"]:
            print(f"     {'':<14} fix: {check['fix']}")
