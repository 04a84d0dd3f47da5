"""Search spaces: a YAML file in Optuna's own words, or a ``space.py`` defining
``def space(trial) -> dict`` (define-by-run, so conditional parameters are plain ``if``s).

YAML (one mapping, each name a parameter of the notebook's parameters cell)::

    C:        {type: float, low: 1.0e-3, high: 10.0, log: true}
    max_iter: {type: int, low: 100, high: 400, step: 100}
    solver:   {type: categorical, choices: [lbfgs, saga]}
    seed:     0                       # a plain value: fixed in every trial

The keys are the arguments of Optuna's ``suggest_float`` / ``suggest_int`` /
``suggest_categorical`` (``low``, ``high``, ``log``, ``step``, ``choices``), so the
meaning of each is Optuna's. Everything is checked before any trial starts.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ReproError

#: ``type:`` values and the keys each accepts (besides ``type``).
KINDS: dict[str, tuple[set[str], set[str]]] = {
    # kind: (required keys, optional keys)
    "float": ({"low", "high"}, {"log", "step"}),
    "int": ({"low", "high"}, {"log", "step"}),
    "categorical": ({"choices"}, set()),
}


@dataclass(frozen=True)
class Dimension:
    """One searched parameter of a YAML space: ``kind`` is float, int or categorical."""

    name: str
    kind: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple[Any, ...] = ()

    def suggest(self, trial: Any) -> Any:
        """Ask ``trial`` (an ``optuna.Trial``) for this parameter's value."""
        if self.kind == "categorical":
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(
                self.name, int(self.low), int(self.high), step=int(self.step or 1), log=self.log
            )
        return trial.suggest_float(
            self.name, float(self.low), float(self.high), step=self.step, log=self.log
        )

    def grid(self) -> list[Any]:
        """Every value of this dimension, for ``--sampler grid``.

        Raises:
            ReproError: a float without ``step``, or a log-scaled dimension (no finite grid).
        """
        if self.kind == "categorical":
            return list(self.choices)
        if self.log or (self.kind == "float" and self.step is None):
            raise ReproError(
                f"--sampler grid: '{self.name}' has no finite set of values "
                "(give a float a step, drop log, or use type: categorical)"
            )
        step = self.step or 1
        count = math.floor((self.high - self.low) / step + 1e-9) + 1
        values = [self.low + i * step for i in range(count)]
        return [int(v) for v in values] if self.kind == "int" else values


@dataclass
class SearchSpace:
    """A loaded space: ``suggest(trial)`` gives one trial's parameter values.

    Attributes:
        source: the file it came from (for messages).
        dimensions: YAML dimensions (empty for a ``space.py``).
        fixed: YAML names given a plain value (the same in every trial).
        function: the ``space(trial)`` of a ``space.py`` (None for YAML).
    """

    source: str
    dimensions: list[Dimension] = field(default_factory=list)
    fixed: dict[str, Any] = field(default_factory=dict)
    function: Callable[[Any], Mapping[str, Any]] | None = None

    def suggest(self, trial: Any) -> dict[str, Any]:
        """The values to inject for ``trial`` (searched and fixed).

        Raises:
            ReproError: a ``space(trial)`` that does not return a mapping of names.
        """
        if self.function is None:
            values = {d.name: d.suggest(trial) for d in self.dimensions}
            return {**self.fixed, **values}
        values = self.function(trial)
        if not isinstance(values, Mapping) or not all(isinstance(k, str) for k in values):
            raise ReproError(
                f"{self.source}: space(trial) must return a dict of parameter names to "
                f"values, not {type(values).__name__}"
            )
        return dict(values)

    def grid(self) -> dict[str, list[Any]]:
        """The search space of Optuna's ``GridSampler``.

        Raises:
            ReproError: a ``space.py`` (its dimensions are not known in advance), or a
                dimension without a finite set of values.
        """
        if self.function is not None:
            raise ReproError(f"{self.source}: --sampler grid needs a YAML space")
        return {d.name: d.grid() for d in self.dimensions}

    def names(self, probes: int = 64, seed: int = 0) -> set[str]:
        """Every parameter name this space can produce.

        A YAML space knows them; a ``space.py`` is called ``probes`` times on trials of a
        throw-away in-memory study with a random sampler, so names behind conditions
        (``units_2`` only when ``layers >= 2``) are seen too. This runs the user's
        function, but never the notebook.

        Raises:
            ReproError: ``space(trial)`` raised or returned something other than a dict.
        """
        if self.function is None:
            return {d.name for d in self.dimensions} | set(self.fixed)
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
        found: set[str] = set()
        for _ in range(probes):
            trial = study.ask()
            try:
                found |= set(self.suggest(trial))
            except ReproError:
                raise
            except Exception as exc:
                raise ReproError(
                    f"{self.source}: space(trial) raised {type(exc).__name__}: {exc}"
                ) from None
            study.tell(trial, 0.0)
        return found


def _dimension(path: str, name: str, spec: Mapping[str, Any]) -> Dimension:
    kind = spec.get("type")
    if kind not in KINDS:
        raise ReproError(f"{path}: '{name}': type must be one of {', '.join(KINDS)}, not {kind!r}")
    required, optional = KINDS[kind]
    keys = set(spec) - {"type"}
    missing, extra = required - keys, keys - required - optional
    if missing:
        raise ReproError(f"{path}: '{name}' ({kind}) needs {', '.join(sorted(missing))}")
    if extra:
        raise ReproError(f"{path}: '{name}' ({kind}) does not take {', '.join(sorted(extra))}")
    if kind == "categorical":
        choices = spec["choices"]
        if not isinstance(choices, list) or not choices:
            raise ReproError(f"{path}: '{name}': choices must be a non-empty list")
        return Dimension(name, kind, choices=tuple(choices))
    low, high, step, log = spec["low"], spec["high"], spec.get("step"), spec.get("log", False)
    numbers = [v for v in (low, high, step) if v is not None]
    if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in numbers):
        raise ReproError(f"{path}: '{name}': low, high and step must be numbers")
    if kind == "int" and any(not isinstance(v, int) for v in numbers):
        raise ReproError(f"{path}: '{name}' (int): low, high and step must be integers")
    if not isinstance(log, bool):
        raise ReproError(f"{path}: '{name}': log must be true or false")
    if low > high:
        raise ReproError(f"{path}: '{name}': low ({low}) is above high ({high})")
    if log and (low <= 0 or step is not None):
        raise ReproError(f"{path}: '{name}': log needs low > 0 and no step (Optuna's rule)")
    if step is not None and step <= 0:
        raise ReproError(f"{path}: '{name}': step must be positive")
    return Dimension(name, kind, low, high, log, step)


def load_space(path: str | Path) -> SearchSpace:
    """Read ``--space``: a ``.yaml``/``.yml`` mapping or a ``.py`` defining ``space(trial)``.

    Raises:
        ReproError: a missing file, bad YAML, an unknown ``type``, missing or extra keys,
            a ``.py`` that fails to import or has no callable ``space``.
    """
    p = Path(path)
    if not p.is_file():
        raise ReproError(f"{p}: no such file (--space)")
    if p.suffix == ".py":
        spec = importlib.util.spec_from_file_location(f"_jrepro_space_{p.stem}", p)
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            raise ReproError(f"{p}: cannot import: {type(exc).__name__}: {exc}") from None
        function = getattr(module, "space", None)
        if not callable(function):
            raise ReproError(f"{p}: defines no function space(trial) -> dict")
        return SearchSpace(str(p), function=function)
    if p.suffix not in (".yaml", ".yml"):
        raise ReproError(f"{p}: --space takes a .yaml/.yml file or a .py file")
    from ..parameters import load_yaml_file

    data = load_yaml_file(p)
    if not isinstance(data, dict) or not data:
        raise ReproError(f"{p}: a space must be a non-empty mapping of parameter names")
    space = SearchSpace(str(p))
    for name, value in data.items():
        if isinstance(value, Mapping) and "type" in value:
            space.dimensions.append(_dimension(str(p), str(name), value))
        else:
            space.fixed[str(name)] = value
    if not space.dimensions:
        raise ReproError(f"{p}: no searched parameter (give one a type: float/int/categorical)")
    return space
