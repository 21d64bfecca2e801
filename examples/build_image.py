"""Build the affine example environment into the image ``affine:latest``.

Run from the repository root: ``.venv/bin/python examples/build_image.py``.
"""

from __future__ import annotations

import sys

import rayfine_core as rf


def main() -> int:
    runtime = sys.argv[1] if len(sys.argv) > 1 else "docker"
    image = rf.build_image_from_env("environments/affine", "affine:latest", runtime=runtime)
    print(f"built affine:latest ({image[:19]}) with the {runtime} runtime")
    return 0


if __name__ == "__main__":
    sys.exit(main())
