"""A client process for the fault-injection tests: load an env, report it, wait to be killed.

Usage: python fault_client.py RUNTIME IMAGE
Prints one JSON line {"env_id", "name"} once the environment answers a call.
"""

from __future__ import annotations

import json
import sys
import time

import rayfine_core as rf


def main() -> None:
    runtime, image = sys.argv[1], sys.argv[2]
    env = rf.load_env(image, runtime=runtime)
    env.add(1)
    print(json.dumps({"env_id": env.id, "name": env.name}), flush=True)
    time.sleep(600)


if __name__ == "__main__":
    main()
