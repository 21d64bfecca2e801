"""Build hook: pin Rayfine's sibling distributions to this build's own version.

The four distributions are released together at one version, read from
``rayfine_core/src/rayfine_core/__init__.py``.  Requirements listed under
``[tool.hatch.metadata.hooks.custom]`` in pyproject.toml may say ``{version}``;
this hook fills it in, so no version number is written twice
(``tests/test_packaging.py`` checks the built metadata).  Building a wheel
from an sdist takes the already filled-in values from its PKG-INFO.
"""

from __future__ import annotations

from typing import Any

from hatchling.metadata.plugin.interface import MetadataHookInterface


class SiblingPins(MetadataHookInterface):
    def update(self, metadata: dict[str, Any]) -> None:
        version = metadata["version"]

        def fill(requirements: list[str]) -> list[str]:
            return [requirement.replace("{version}", version) for requirement in requirements]

        if "dependencies" in self.config:
            metadata["dependencies"] = fill(self.config["dependencies"])
        if "optional-dependencies" in self.config:
            extras = self.config["optional-dependencies"]
            metadata["optional-dependencies"] = {name: fill(reqs) for name, reqs in extras.items()}
