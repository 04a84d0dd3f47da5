"""nb-smoke's options in one frozen dataclass: defaults live here and nowhere else."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Literal

Mode = Literal["script", "kernel"]

#: Cell tags that mean "do not run this cell" (nbmake's, and ours).
SKIP_TAGS = ("skip-execution", "nb-smoke-skip")
#: Cell tag that means "this cell may raise" (nbval/nbmake/nbclient convention).
RAISES_TAG = "raises-exception"


@dataclass(frozen=True)
class SmokeOptions:
    """Everything that changes how nb-smoke checks notebooks.

    Attributes:
        mode: ``script`` (a fresh IPython process per notebook, the default) or ``kernel``
            (a fresh Jupyter kernel through nbclient).
        kernel_name: kernelspec for kernel mode; None means the notebook's own.
        jobs: notebooks run at once (default: the CPU count).
        timeout: seconds per notebook before it is killed with its children (None: none).
        fast: run every ``%timeit``/``%%timeit`` statement once (``--fast``).
        full_timeit: run every one in full (``--full-timeit``). Without either, a
            statement runs once only where :mod:`jupyter_repro.smoke.timeit_rule` finds
            that nothing a later cell can observe depends on how many times it ran.
        strict: lint findings and tag warnings are failures, not warnings.
        lint: run the static checks before executing.
        lint_only: run only the static checks, execute nothing.
        parameters: overrides for the ``parameters`` cell, already parsed.
        allow_unknown: allow names the parameters cell does not define.
        jupytext: also pick up jupytext ``.py``/``.md`` notebooks in folders.
        check_outputs: compare fresh outputs with the saved ones (nbval's rules).
        repeat: run each notebook this many times and report cells whose outputs differ.
        sanitize_with: an nbval sanitizer file (regex/replace pairs) for comparisons.
        mlflow: log each run to MLflow exactly as ``jupyter-repro batch`` logs a run.
        tracking_uri: MLflow store (default: ``MLFLOW_TRACKING_URI``, else the project's
            sqlite store, as for batch).
        experiment: MLflow experiment (default: the notebook's name).
        rules: lint rules to run (names from :data:`jupyter_repro.smoke.lint.RULES`);
            None means the default set, :data:`jupyter_repro.smoke.lint.DEFAULT_RULES`.
    """

    mode: Mode = "script"
    kernel_name: str | None = None
    jobs: int = field(default_factory=lambda: os.cpu_count() or 1)
    timeout: float | None = 600.0
    fast: bool = False
    full_timeit: bool = False
    strict: bool = False
    lint: bool = True
    lint_only: bool = False
    parameters: dict[str, Any] = field(default_factory=dict)
    allow_unknown: bool = False
    jupytext: bool = False
    check_outputs: bool = False
    repeat: int = 1
    sanitize_with: str | None = None
    mlflow: bool = False
    tracking_uri: str | None = None
    experiment: str | None = None
    rules: frozenset[str] | None = None
