"""Parameter sets from ``-p``, ``-f FILE.yaml`` and ``--grid FILE.yaml``.

A grid file (YAML 1.2, so ``1e-3`` is a float) is one of:

- a mapping: each list value is an axis of a cartesian product, each scalar is fixed
  (``lr: [1e-3, 1.0e-2]`` gives two runs; a list *value* is written as a list of lists:
  ``layers: [[8, 8], [16, 16]]``);
- a list of mappings: explicit parameter sets, one run each;
- a mapping with ``grid:`` (a product as above) and/or ``runs:`` (explicit sets): the
  product's points followed by the explicit sets.

Precedence inside one run: ``-f`` file < grid point < ``-p``.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import ReproError
from ..parameters import load_parameters_file, load_yaml_file, parse_value

#: Most runs one grid may expand to; ``$JUPYTER_REPRO_MAX_RUNS`` changes it. A grid of
#: 10 axes of 10 values is 10**10 parameter sets: refused before any is built.
DEFAULT_MAX_RUNS = 10_000
MAX_RUNS_ENV = "JUPYTER_REPRO_MAX_RUNS"


def max_runs() -> int:
    """The grid cap: ``$JUPYTER_REPRO_MAX_RUNS`` when it is a positive integer, else
    :data:`DEFAULT_MAX_RUNS`.

    Raises:
        ReproError: the variable is set but not a positive integer (exit 2).
    """
    text = os.environ.get(MAX_RUNS_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_RUNS
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ReproError(f"${MAX_RUNS_ENV} must be a positive integer, not {text!r}")
    return value


def product(axes: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The cartesian product of ``axes`` (list values vary, scalars are fixed), in order.

    Raises:
        ValueError: an axis is empty, or the product has more points than
            :func:`max_runs` (the message says how many it would have).
    """
    names = list(axes)
    values = [v if isinstance(v, list) else [v] for v in axes.values()]
    if any(len(v) == 0 for v in values):
        empty = [n for n, v in zip(names, values, strict=True) if not v]
        raise ValueError(f"empty list for {', '.join(empty)}: the grid would have no runs")
    size = math.prod(len(v) for v in values)
    cap = max_runs()
    if size > cap:
        shape = " x ".join(str(len(v)) for v in values if len(v) > 1)
        raise ValueError(
            f"the grid would make {size:,} runs ({shape}); the cap is {cap:,} "
            f"(set ${MAX_RUNS_ENV} to change it)"
        )
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*values)]


def grid_from_data(data: Any, source: str = "<grid>") -> list[dict[str, Any]]:
    """Expand a loaded grid document into parameter sets.

    Raises:
        ReproError: the document has none of the shapes in this module's docstring
            (message names ``source`` and what was wrong).
    """

    def bad(why: str) -> ReproError:
        return ReproError(f"{source}: {why}")

    def explicit(items: Any) -> list[dict[str, Any]]:
        if not isinstance(items, list):
            raise bad("'runs' must be a list of mappings")
        for i, item in enumerate(items):
            if not isinstance(item, dict) or not all(isinstance(k, str) for k in item):
                raise bad(f"run {i} is not a mapping of parameter names to values")
        return [dict(item) for item in items]

    if data is None:
        raise bad("empty grid file")
    if isinstance(data, list):
        sets = explicit(data)
    elif isinstance(data, dict):
        if not all(isinstance(k, str) for k in data):
            raise bad("parameter names must be strings")
        if set(data) <= {"grid", "runs"} and data:
            sets = []
            if "grid" in data:
                if not isinstance(data["grid"], dict):
                    raise bad("'grid' must be a mapping of names to lists of values")
                try:
                    sets += product(data["grid"])
                except ValueError as exc:
                    raise bad(str(exc)) from None
            if "runs" in data:
                sets += explicit(data["runs"])
        else:
            try:
                sets = product(data)
            except ValueError as exc:
                raise bad(str(exc)) from None
    else:
        raise bad(f"a grid must be a mapping or a list, not {type(data).__name__}")
    if not sets:
        raise bad("the grid has no runs")
    return sets


def load_grid(path: str | Path) -> list[dict[str, Any]]:
    """Read ``--grid FILE.yaml`` into parameter sets (see this module's docstring)."""
    return grid_from_data(load_yaml_file(path), str(path))


def parse_cli_params(pairs: Sequence[Sequence[str]] | None) -> dict[str, Any]:
    """``-p NAME VALUE`` pairs, each value through the one shared parser."""
    return {name: parse_value(value) for name, value in (pairs or [])}


def parameter_sets(
    cli_pairs: Sequence[Sequence[str]] | None = None,
    params_file: str | Path | None = None,
    grid_file: str | Path | None = None,
) -> list[dict[str, Any]]:
    """Every run's overrides, merged with precedence file < grid point < ``-p``.

    Without a grid there is exactly one run.
    """
    base = load_parameters_file(params_file) if params_file else {}
    cli = parse_cli_params(cli_pairs)
    points = load_grid(grid_file) if grid_file else [{}]
    return [{**base, **point, **cli} for point in points]
