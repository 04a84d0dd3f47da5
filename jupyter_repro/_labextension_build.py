"""Build step for the JupyterLab extension, run by ``pip install`` (hatch-jupyter-builder).

``pyproject.toml`` names :func:`build` as hatch-jupyter-builder's build function. It runs
in the isolated build environment, so it imports only the standard library and
``hatch_jupyter_builder`` (and ``jupyter_repro/__init__.py`` must stay that light).

The extension is built whenever it can be: a checkout with ``labextension/`` and Node.js
gets it, prebuilt into the wheel. Where it cannot be built — a source copy without
``labextension/`` (as pre-commit's tests make), or a machine without Node.js (a
pre-commit hook environment) — the wheel is made without it and the build says why, so
that nb-smoke and ``%track`` install anyway. A build that starts and fails still fails.
"""

from __future__ import annotations

import shutil
import sys
import warnings
from pathlib import Path
from typing import Any

BUILT = Path("jupyter_repro") / "labextension"
ENSURED = (BUILT / "static" / "style.js", BUILT / "package.json")


def build(target_name: str, version: str, path: str = "labextension", **kwargs: Any) -> None:
    """Build the extension into ``jupyter_repro/labextension`` (or explain why not)."""
    source = Path(path)
    if not (source / "package.json").is_file():
        return _skip(f"{source / 'package.json'} is not in this source tree")
    if shutil.which("node") is None:
        return _skip("Node.js (`node`) is not on PATH")
    from hatch_jupyter_builder import npm_builder

    npm_builder(target_name, version, path=path, **kwargs)
    missing = [str(p) for p in ENSURED if not p.exists()]
    if missing:
        raise RuntimeError(f"the JupyterLab extension build did not produce {missing}")


def _skip(reason: str) -> None:
    message = (
        f"jupyter_repro: building without the JupyterLab extension: {reason}. "
        "nb-smoke and %track work; for the badges in JupyterLab, install from a wheel or "
        "build with Node.js available (docs/labextension.md)."
    )
    print(message, file=sys.stderr)
    warnings.warn(message, stacklevel=2)
