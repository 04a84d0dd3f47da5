"""Metrics a notebook records with :func:`jupyter_repro.record`, and reading them back.

Like scrapbook's ``glue``, ``record`` displays the value under a custom mimetype, so it
travels inside the executed notebook itself: nothing but the notebook is needed to find
it again, and a notebook run outside a batch still works (the display is invisible).
"""

from __future__ import annotations

import math
import numbers
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: The mimetype of a recorded metric in a ``display_data`` output.
METRIC_MIMETYPE = "application/vnd.jupyter-repro.metric+json"


class TrialPruned(Exception):
    """Raised by :func:`record` inside a ``jupyter-repro tune`` trial when Optuna's pruner
    stops the trial: the notebook stops at that cell and the trial ends PRUNED.

    Not an error of the notebook: do not catch it (``docs/tune.md``).
    """


@dataclass(frozen=True)
class RecordedMetric:
    """One recorded value: name, value, step (0 if not given), timestamp in milliseconds."""

    name: str
    value: float
    step: int
    timestamp: int
    cell_index: int | None = None


def record(
    name: str, value: float, step: int | None = None, timestamp: float | None = None
) -> dict[str, Any]:
    """Record metric ``name`` = ``value`` from inside a notebook.

    ``jupyter-repro batch`` logs every recorded value to the run's MLflow metrics (same
    step/timestamp semantics as ``mlflow.log_metric``; ``timestamp`` in seconds since the
    epoch, default now). Outside a kernel it only returns the record.

    Inside a ``jupyter-repro tune`` trial, a value of the study's metric recorded with a
    ``step`` is also reported to Optuna as an intermediate value (``docs/tune.md``).

    Raises:
        TypeError: ``name`` is not a non-empty string, or ``value`` is not a real number.
        ValueError: ``step`` is negative.
        TrialPruned: in a tune trial, the pruner stopped the trial at this step.
    """
    if not isinstance(name, str) or not name:
        raise TypeError("jupyter_repro.record: name must be a non-empty string")
    if isinstance(value, bool):
        raise TypeError(f"jupyter_repro.record: value for {name!r} must be a number, not bool")
    if not isinstance(value, (int, float)):
        try:
            value = float(value)  # numpy scalars
        except (TypeError, ValueError):
            raise TypeError(
                f"jupyter_repro.record: value for {name!r} must be a number, "
                f"not {type(value).__name__}"
            ) from None
    if step is not None and (
        isinstance(step, bool) or not isinstance(step, numbers.Integral) or step < 0
    ):
        raise ValueError(f"jupyter_repro.record: step for {name!r} must be an int >= 0")
    payload = {
        "name": name,
        "value": float(value),
        "step": int(step or 0),
        "timestamp": int((time.time() if timestamp is None else float(timestamp)) * 1000),
    }
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:  # pragma: no cover - IPython is a dependency
        return payload
    if get_ipython() is not None:
        shown = dict(payload)
        if math.isnan(shown["value"]) or math.isinf(shown["value"]):
            shown["value"] = repr(shown["value"])  # JSON has no NaN/inf
        display({METRIC_MIMETYPE: shown}, raw=True)
    if step is not None:
        from .tune.channel import report

        report(name, payload["value"], payload["step"])
    return payload


def read_metrics(nb: Mapping) -> list[RecordedMetric]:
    """Every value recorded with :func:`record` in an executed notebook, in output order."""
    found: list[RecordedMetric] = []
    for index, cell in enumerate(nb.get("cells", [])):
        for output in cell.get("outputs", []) if cell.get("cell_type") == "code" else []:
            data = output.get("data") or {}
            item = data.get(METRIC_MIMETYPE)
            if not isinstance(item, Mapping):
                continue
            try:
                value = float(item["value"])
                found.append(
                    RecordedMetric(
                        str(item["name"]),
                        value,
                        int(item.get("step", 0)),
                        int(item.get("timestamp", 0)),
                        index,
                    )
                )
            except (KeyError, TypeError, ValueError):
                continue
    return found
