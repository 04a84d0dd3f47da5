"""The environment coordinate: python, platform and installed packages.

Never records environment variable values (they hold tokens and passwords), nor paths
under the user's home beyond the interpreter itself.
"""

from __future__ import annotations

import functools
import platform
import sys
from importlib import metadata
from typing import Any


@functools.lru_cache(maxsize=1)
def environment_fingerprint() -> dict[str, Any]:
    """Python version and implementation, platform, and ``{package: version}``.

    Cached per process: a batch worker computes it once for all of its runs.
    """
    packages: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata.get("Name")
        if name:
            packages[name.lower()] = dist.version
    return {
        "python_version": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "python_executable": sys.executable,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "packages": dict(sorted(packages.items())),
    }
