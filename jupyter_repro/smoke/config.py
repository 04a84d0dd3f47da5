"""``[tool.nb-smoke]`` in ``pyproject.toml``: nb-smoke's options, per project.

Which file: for each notebook, the nearest ``pyproject.toml`` with a ``[tool.nb-smoke]``
table, found by walking up from the notebook's folder (as ruff finds ``[tool.ruff]`` and
pytest its rootdir); a ``pyproject.toml`` without the table is passed over. Options that
concern the whole call rather than one notebook (``jobs``, ``quiet``, ``output-format``,
report files) come from the table nearest the current folder, else from the first
notebook's.

Keys: every long command-line option without its dashes (``mode``, ``timeout``, ``jobs``,
``fast``, ``strict``, ``kernel``, ``lint-only``, ``check-outputs``, ``sanitize-with``...),
``select``/``ignore``/``extend-select`` as lists of rule names, ``lint = false`` for
``--no-lint``, and a ``parameters`` table for ``-p NAME VALUE``. Relative file paths are
relative to the ``pyproject.toml``. An option given on the command line wins over the file;
``-p`` values are added to the table's ``parameters``.

A bad file or key raises :class:`ConfigError`: one line naming the file and the key, exit 2.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Mapping
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

from ..errors import ReproError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

TABLE = "nb-smoke"
#: Keys whose value is a file path, resolved against the pyproject.toml's folder.
PATH_KEYS = frozenset({"sanitize_with", "parameters_file", "json", "junit_xml", "sarif"})
#: Rule lists (comma-separated on the command line, TOML arrays in the file).
RULE_KEYS = ("select", "ignore", "extend_select")


class ConfigError(ReproError):
    """``[tool.nb-smoke]`` cannot be used: bad TOML, an unknown key, a wrong value."""


@lru_cache(maxsize=256)
def read_table(pyproject: Path) -> dict[str, Any] | None:
    """The ``[tool.nb-smoke]`` table of one file, or None when it has none.

    Raises:
        ConfigError: the file is not valid TOML, or ``tool.nb-smoke`` is not a table.
    """
    try:
        with open(pyproject, "rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"{pyproject}: cannot read: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{pyproject}: invalid TOML: {exc}") from None
    tool = data.get("tool")
    if not isinstance(tool, dict) or TABLE not in tool:
        return None
    table = tool[TABLE]
    if not isinstance(table, dict):
        raise ConfigError(f"{pyproject}: [tool.{TABLE}] must be a table")
    return table


@lru_cache(maxsize=1024)
def find_config(folder: Path) -> Path | None:
    """The nearest ``pyproject.toml`` with a ``[tool.nb-smoke]`` table, from ``folder`` up."""
    folder = folder.resolve()
    for candidate in (folder, *folder.parents):
        path = candidate / "pyproject.toml"
        if path.is_file() and read_table(path) is not None:
            return path
    return None


def config_for(path: str | Path) -> Path | None:
    """The config file for a notebook (searched from its folder) or a folder."""
    p = Path(path)
    return find_config(p if p.is_dir() else p.parent)


# -- which options the command line gave ------------------------------------------------


def track_explicit(parser: argparse.ArgumentParser) -> None:
    """Make ``parser`` record the ``dest`` of every option given on the command line in
    ``namespace._explicit`` (a set), so the file never overrides them."""
    for action in parser._actions:
        if not action.option_strings or isinstance(action, argparse._HelpAction):
            continue
        action.__class__ = _explicit_class(type(action))


@cache
def _explicit_class(cls: type) -> type:
    def __call__(self, parser, namespace, values, option_string=None):
        explicit = getattr(namespace, "_explicit", None)
        if explicit is None:
            explicit = set()
            namespace._explicit = explicit
        explicit.add(self.dest)
        cls.__call__(self, parser, namespace, values, option_string)

    return type(f"Explicit{cls.__name__}", (cls,), {"__call__": __call__})


def _options_by_key(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    keys: dict[str, argparse.Action] = {}
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        for option in action.option_strings:
            if option.startswith("--"):
                keys[option[2:]] = action
    return keys


def apply_config(
    args: argparse.Namespace,
    table: Mapping[str, Any] | None,
    source: Path | None,
    parser: argparse.ArgumentParser,
) -> argparse.Namespace:
    """A copy of ``args`` with the table's values for every option the command line did
    not give. ``parser`` is the parser that made ``args`` (its options are the keys).

    Raises:
        ConfigError: an unknown key or a value of the wrong type, naming file and key.
    """
    out = argparse.Namespace(**vars(args))
    if not table:
        return out
    explicit: set[str] = getattr(args, "_explicit", set())
    keys = _options_by_key(parser)
    for key, value in table.items():
        where = f"{source}: [tool.{TABLE}] {key}"
        if key == "parameters":
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: must be a table of parameter values")
            given = list(getattr(out, "parameter", []) or [])
            out.parameter = [[k, json.dumps(v)] for k, v in value.items()] + given
            continue
        inverted = False
        action = keys.get(key)
        if action is None and f"no-{key}" in keys:
            action, inverted = keys[f"no-{key}"], True
        if action is None or action.dest == "parameter":
            known = sorted(
                {k.removeprefix("no-") for k in keys if keys[k].dest != "parameter"}
                | {"parameters"}
            )
            raise ConfigError(f"{where}: unknown key (keys: {', '.join(known)})")
        if action.dest in explicit:
            continue
        setattr(out, action.dest, _convert(action, value, inverted, where, source))
    return out


def blame(
    exc: ReproError,
    args: argparse.Namespace,
    table: Mapping[str, Any] | None,
    source: Path | None,
) -> ReproError:
    """An error about an option's value (``--timeout must be positive``), named by file and
    key when the value came from ``table`` (not the command line); else ``exc`` itself."""
    match = re.match(r"--([a-z][a-z-]*) (.*)", str(exc))
    if not match or not table or source is None or match.group(1) not in table:
        return exc
    key = match.group(1)
    if key.replace("-", "_") in getattr(args, "_explicit", set()):
        return exc  # the command line gave it
    return ConfigError(f"{source}: [tool.{TABLE}] {key}: {match.group(2)}")


def _convert(
    action: argparse.Action, value: Any, inverted: bool, where: str, source: Path | None
) -> Any:
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: must be true or false, not {value!r}")
        return value if inverted or action.const else not value
    if action.dest in RULE_KEYS:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where}: must be a list of rule names")
        from .lint import RuleError, resolve_rules

        try:
            resolve_rules(select=value)
        except RuleError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        return ",".join(value)
    kind = action.type
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"{where}: must be an integer, not {value!r}")
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: must be a number, not {value!r}")
        value = float(value)
    if kind is None and not isinstance(value, str):
        raise ConfigError(f"{where}: must be a string, not {value!r}")
    if action.choices is not None and value not in action.choices:
        raise ConfigError(f"{where}: must be one of {', '.join(map(str, action.choices))}")
    if action.dest in PATH_KEYS and source is not None:
        value = str((source.parent / value).resolve())
    return value


__all__ = [
    "ConfigError",
    "apply_config",
    "blame",
    "config_for",
    "find_config",
    "read_table",
    "track_explicit",
]
