"""jupyter_repro: notebook hygiene and reproducibility.

Public API:

- ``load_ipython_extension`` / ``unload_ipython_extension``: ``%load_ext jupyter_repro``
  registers the ``%track`` magic (see ``docs/tracking.md``).
- :mod:`jupyter_repro.verdicts`: the verdict vocabulary shared by every tool.
- :func:`jupyter_repro.smoke.run.smoke_notebooks`: nb-smoke as a function.
- ``record(name, value, step=None, timestamp=None)``: record a metric from a notebook;
  ``jupyter-repro batch`` logs it to the run's MLflow metrics (``docs/batch.md``); in a
  ``jupyter-repro tune`` trial, a value with a ``step`` is reported to Optuna and may
  raise ``TrialPruned`` (``docs/tune.md``).
"""

from __future__ import annotations

from ._version import __version__

__all__ = [
    "TrialPruned",
    "__version__",
    "load_ipython_extension",
    "record",
    "unload_ipython_extension",
]

from .metrics import TrialPruned, record


def load_ipython_extension(ipython):  # pragma: no cover - exercised through real kernels
    """Register ``%track`` on ``ipython`` (called by ``%load_ext jupyter_repro``)."""
    try:
        from .tracking.magic import load_ipython_extension as _load
    except ImportError as exc:  # tracking's dependencies missing in this install
        raise ImportError(f"jupyter_repro: %track is not available: {exc}") from exc
    _load(ipython)


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    """Where the prebuilt JupyterLab extension is (``jupyter labextension develop``)."""
    return [{"src": "labextension", "dest": "jupyter-repro-labextension"}]


def unload_ipython_extension(ipython):  # pragma: no cover - exercised through real kernels
    """Remove ``%track``'s hooks from ``ipython`` (``%unload_ext jupyter_repro``)."""
    try:
        from .tracking.magic import unload_ipython_extension as _unload
    except ImportError:
        return
    _unload(ipython)
