"""Load ``affine:latest`` and evaluate five SAT tasks in it.

Run from the repository root after ``examples/build_image.py``. An API key
is optional (the example tasks are generated and scored offline); when
``CHUTES_API_KEY`` is set it is passed into the container, never printed.
"""

from __future__ import annotations

import json
import os
import sys

import rayfine_core as rf


def main() -> int:
    runtime = sys.argv[1] if len(sys.argv) > 1 else "docker"
    env_vars = {"CHUTES_API_KEY": os.environ.get("CHUTES_API_KEY", "")}
    with rf.load_env("affine:latest", env_vars=env_vars, runtime=runtime) as env:
        print("methods:", ", ".join(f"{m.name}{m.signature}" for m in env.list_methods()))
        result = env.evaluate(task_type="sat", num_samples=5)
    summary = {k: result[k] for k in ("task_type", "num_samples", "total_score", "average_score")}
    print(json.dumps(summary, indent=2))
    print(f"active environments after the with-block: {rf.list_active_environments()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
