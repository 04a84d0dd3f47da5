"""The papermill ``parameters`` cell: find it, read its names and defaults, parse values.

One value parser serves every command (``nb-smoke -p``, ``jupyter-repro batch -p``,
``-f params.yaml`` and ``--grid`` files), so a value means the same thing everywhere:

===================  ============================  =====================================
text                 value                          why
===================  ============================  =====================================
``1e-3``             ``0.001`` (float)             Python literal / YAML 1.2 float
``-1``               ``-1`` (int)
``null`` / ``None``  ``None``                      YAML 1.2 null / Python literal
``true`` / ``True``  ``True``
``[16, 16]``         ``[16, 16]`` (list)           papermill issue #396 injects a string
``{"seed": 1}``      ``{"seed": 1}`` (dict)
``"007"``            ``"007"`` (str)               quotes keep a string a string
``no``               ``"no"`` (str)                YAML 1.1 (PyYAML) would say False
``2026-11-30``       ``"2026-11-30"`` (str)        no implicit dates
anything else        the text itself (str)
===================  ============================  =====================================

Rule: try a Python literal (``ast.literal_eval``), then a YAML 1.2 document (ruamel.yaml,
so ``1e-3`` is a float, unlike PyYAML, see yaml/pyyaml#173); dates and timestamps stay
the strings they were written as; if neither parses, the text is a string.
"""

from __future__ import annotations

import argparse
import ast
import copy
import datetime as _dt
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ParameterError, ReproError
from .notebook import cell_tags

PARAMETERS_TAG = "parameters"
INJECTED_TAG = "injected-parameters"


def add_override_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the parameter options every command shares, with one meaning and help text:
    ``-p/--parameter NAME VALUE`` (repeatable, typed by :func:`parse_value`),
    ``-f/--parameters-file FILE.yaml`` (a YAML 1.2 mapping) and ``--allow-unknown``.

    Read them back with :func:`overrides` (``args.parameter``, ``args.parameters_file``,
    ``args.allow_unknown``).
    """
    parser.add_argument(
        "-p",
        "--parameter",
        nargs=2,
        action="append",
        default=[],
        metavar=("NAME", "VALUE"),
        help="override a parameters-cell value (typed: 1e-3, [16, 16], null); repeatable",
    )
    parser.add_argument(
        "-f",
        "--parameters-file",
        metavar="FILE.yaml",
        help="parameter overrides from a YAML 1.2 mapping (-p wins)",
    )
    parser.add_argument(
        "--allow-unknown",
        action="store_true",
        help="run even if a name is not assigned by the parameters cell, or there is none "
        "(logged runs are flagged)",
    )


def overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The overrides of :func:`add_override_arguments`' options: the ``-f`` file's
    mapping, then each ``-p`` (a later one wins).

    Raises:
        ReproError: the ``-f`` file cannot be read or is not a mapping.
    """
    params: dict[str, Any] = {}
    if args.parameters_file:
        params.update(load_parameters_file(args.parameters_file))
    for name, value in args.parameter:
        params[name] = parse_value(value)
    return params


def parse_value(text: str) -> Any:
    """Parse one command-line parameter value with the table in this module's docstring.

    Never raises: text that is neither a Python literal nor YAML is returned unchanged.
    """
    stripped = text.strip()
    if not stripped:
        return text
    try:
        return ast.literal_eval(stripped)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        pass
    try:
        value = _yaml().load(stripped)
    except Exception:  # ruamel raises many parser/scanner error types
        return text
    if isinstance(value, (str, int, float, bool, list, dict)) or value is None:
        try:
            return _plain(value, stripped)
        except _Cycle:  # "&a [1, *a]": not a value anyone means; keep the text
            return text
    return text


#: Deepest nesting accepted in a parameters or grid file (a value nested deeper is not a
#: parameter anyone writes; it is a crafted file heading for a RecursionError).
MAX_YAML_DEPTH = 100


class _Cycle(Exception):
    """A YAML alias refers to a node that contains it (``k: &a [1, *a]``)."""


def _plain(value: Any, original: str | None = None, _open: tuple[int, ...] = ()) -> Any:
    """Turn ruamel containers into plain Python, dates into their text.

    Raises:
        _Cycle: a container contains itself (a self-referencing anchor), or nesting is
            deeper than :data:`MAX_YAML_DEPTH`.
    """
    if isinstance(value, Mapping | list):
        if id(value) in _open:
            raise _Cycle("an anchor refers to itself (e.g. k: &a [1, *a])")
        if len(_open) >= MAX_YAML_DEPTH:
            raise _Cycle(f"nested deeper than {MAX_YAML_DEPTH} levels")
        inner = (*_open, id(value))
        if isinstance(value, Mapping):
            return {
                str(k) if isinstance(k, _dt.date) else k: _plain(v, None, inner)
                for k, v in value.items()
            }
        return [_plain(v, None, inner) for v in value]
    if isinstance(value, (_dt.date, _dt.datetime)):
        return original if original is not None else value.isoformat()
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    return value


def _yaml():
    from ruamel.yaml import YAML

    yaml = YAML(typ="safe", pure=True)
    yaml.version = (1, 2)
    # YAML 1.2's core schema has no timestamps: keep dates as the text the user wrote.
    yaml.constructor.add_constructor(
        "tag:yaml.org,2002:timestamp", lambda loader, node: loader.construct_scalar(node)
    )
    return yaml


def load_yaml_file(path: str | Path) -> Any:
    """Read a YAML 1.2 file (parameters or grid) into plain Python values.

    Raises:
        ReproError: the file is missing or is not valid YAML (message names the file).
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ReproError(f"{p}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ReproError(f"{p}: cannot read: {exc}") from None
    try:
        data = _yaml().load(text)
    except Exception as exc:
        raise ReproError(yaml_error_line(p, exc)) from None
    try:
        return _plain(data)
    except _Cycle as exc:
        raise ReproError(f"{p}: invalid YAML: {exc}") from None


def yaml_error_line(path: str | Path, exc: BaseException) -> str:
    """One line for a YAML error: ``FILE:LINE:COL: invalid YAML: PROBLEM (CONTEXT at L:C)``.

    ``LINE``/``COL`` (1-based, as editors count) are where ruamel.yaml found the problem
    (its ``MarkedYAMLError.problem_mark``, 0-based); the context (for example "while
    parsing a flow sequence") is where the construct it belongs to started. An error with
    no position (not a ``MarkedYAMLError``) gives ``FILE: invalid YAML: MESSAGE``.
    """
    problem = getattr(exc, "problem", None)
    mark = getattr(exc, "problem_mark", None)
    if problem and mark is not None:
        where = f"{path}:{mark.line + 1}:{mark.column + 1}"
        text = " ".join(str(problem).split())
        context = getattr(exc, "context", None)
        if context:
            cmark = getattr(exc, "context_mark", None)
            at = f" started at {cmark.line + 1}:{cmark.column + 1}" if cmark is not None else ""
            text += f" ({' '.join(str(context).split())}{at})"
        return f"{where}: invalid YAML: {text}"
    first = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    return f"{path}: invalid YAML: {first[0] if first else type(exc).__name__}"


def load_parameters_file(path: str | Path) -> dict[str, Any]:
    """Read ``-f params.yaml``: a mapping of parameter names to values.

    Raises:
        ReproError: missing file, invalid YAML, or a document that is not a mapping.
    """
    data = load_yaml_file(path)
    if data is None:
        return {}
    if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
        raise ReproError(f"{path}: a parameters file must be a mapping of names to values")
    return data


@dataclass(frozen=True)
class ParameterInfo:
    """One name assigned by the parameters cell.

    Attributes:
        name: the variable name.
        default_source: the right-hand side as written (``0.1``, ``[8, 8]``, ``os.cpu_count()``).
        default: the value if the right-hand side is a literal, else None.
        has_literal_default: whether ``default`` is meaningful.
    """

    name: str
    default_source: str
    default: Any = None
    has_literal_default: bool = False

    @property
    def type_name(self) -> str | None:
        """The default's type name, or None when the default is not a literal."""
        return type(self.default).__name__ if self.has_literal_default else None


def find_parameters_cell(nb: Mapping) -> int | None:
    """Index of the first code cell tagged ``parameters`` (papermill's rule), or None."""
    for index, cell in enumerate(nb.get("cells", [])):
        if cell.get("cell_type") == "code" and PARAMETERS_TAG in cell_tags(cell):
            return index
    return None


def parameters_cell_names(source: str) -> dict[str, ParameterInfo]:
    """Names and defaults assigned at the top level of a parameters cell, in order.

    Parses the code with ``ast`` (not regular expressions), so tuple targets, annotations,
    comments and multi-line values all work. IPython syntax is transformed first.
    A cell that does not parse gives an empty mapping.
    """
    from .analysis import _safe_transform, parse_cell

    tree = parse_cell(source)
    if isinstance(tree, SyntaxError):
        return {}
    code = _safe_transform(source)
    out: dict[str, ParameterInfo] = {}
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign):
            targets, value = stmt.targets, stmt.value
        elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
            targets, value = [stmt.target], stmt.value
        else:
            continue
        segment = ast.get_source_segment(code, value) or ""
        for target in targets:
            names = _target_names(target)
            for name in names:
                literal, ok = _literal(value) if len(names) == 1 else (None, False)
                out[name] = ParameterInfo(name, segment, literal, ok)
    return out


def _target_names(target: ast.expr) -> list[str]:
    if isinstance(target, ast.Name):
        return [target.id]
    if isinstance(target, (ast.Tuple, ast.List)):
        return [n for elt in target.elts for n in _target_names(elt)]
    return []


def _literal(node: ast.expr) -> tuple[Any, bool]:
    try:
        return ast.literal_eval(node), True
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None, False


def notebook_parameters(nb: Mapping) -> dict[str, ParameterInfo]:
    """The parameters cell's names and defaults; empty if there is no such cell."""
    index = find_parameters_cell(nb)
    if index is None:
        return {}
    return parameters_cell_names(nb["cells"][index].get("source", ""))


def validate_parameters(
    path: str | Path, nb: Mapping, params: Mapping[str, Any], allow_unknown: bool = False
) -> list[str]:
    """Check parameter overrides against the notebook before anything runs.

    Returns:
        Warnings, one line each: a value whose type differs from the default's type.

    Raises:
        ParameterError: a value has no Python literal to inject (field case G05), the
            notebook has no ``parameters`` cell, or a name is not assigned by it (papermill only warns, and the notebook's own assignment then silently
            wins: papermill issue #245). ``allow_unknown=True`` turns both into warnings.
    """
    warnings: list[str] = []
    if not params:
        return warnings
    for name, value in params.items():
        try:
            python_literal(value)
        except ValueError as exc:
            raise ParameterError(path, f"parameter '{name}': {exc}") from None
    if find_parameters_cell(nb) is None:
        message = (
            "has no cell tagged 'parameters': injected values would go above the notebook's "
            "own assignments, which would silently overwrite them"
        )
        if not allow_unknown:
            raise ParameterError(path, message + " (tag one, or pass --allow-unknown)")
        warnings.append(f"{path}: {message}; injecting at the top (--allow-unknown)")
        return warnings
    known = notebook_parameters(nb)
    unknown = [name for name in params if name not in known]
    if unknown:
        names = ", ".join(sorted(known)) or "none"
        message = (
            f"unknown parameter{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(repr(n) for n in unknown)}; the parameters cell defines: {names}"
        )
        if not allow_unknown:
            raise ParameterError(path, message, unknown=unknown, known=sorted(known))
        warnings.append(f"{path}: {message} (--allow-unknown)")
    for name, value in params.items():
        info = known.get(name)
        if info is None or not info.has_literal_default or info.default is None:
            continue
        if not _same_kind(info.default, value):
            warnings.append(
                f"{path}: parameter '{name}' gets a {type(value).__name__} ({value!r}) "
                f"but its default is a {info.type_name} ({info.default_source})"
            )
    return warnings


def _same_kind(default: Any, value: Any) -> bool:
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(default, bool) and isinstance(value, bool)
    if isinstance(default, (int, float)) and isinstance(value, (int, float)):
        return not (isinstance(default, int) and isinstance(value, float))
    if isinstance(default, (list, tuple)) and isinstance(value, (list, tuple)):
        return True
    return type(default) is type(value) or value is None


def python_literal(value: Any) -> str:
    """Python source that evaluates to exactly ``value`` (same types, nested too).

    Replaces papermill's ``PythonTranslator`` for injection: it falls back to ``str()``
    for tuples and sets (papermill issue #586: ``(-1, 1)`` arrives as the string
    ``"(-1, 1)"``) and quotes every dict key (issue #484: ``{0: 1.0}`` arrives as
    ``{"0": 1.0}``). Field case G05. ``None``, bools, ints, floats (``nan``/``inf`` as
    ``float('nan')``/``float('inf')``), complex, str, bytes, and lists, tuples, sets,
    frozensets and dicts of those are supported.

    Raises:
        ValueError: a value of any other type (it could only be injected as text).
    """
    if value is None or isinstance(value, (bool, int, str, bytes)):
        return repr(value)
    if isinstance(value, float):
        if value != value:
            return "float('nan')"
        if value in (float("inf"), float("-inf")):
            return "float('inf')" if value > 0 else "-float('inf')"
        return repr(value)
    if isinstance(value, complex):
        if any(x != x or x in (float("inf"), float("-inf")) for x in (value.real, value.imag)):
            return f"complex({python_literal(value.real)}, {python_literal(value.imag)})"
        return repr(value)
    if type(value) is list:
        return "[" + ", ".join(python_literal(v) for v in value) + "]"
    if type(value) is tuple:
        items = [python_literal(v) for v in value]
        return "(" + items[0] + ",)" if len(items) == 1 else "(" + ", ".join(items) + ")"
    if type(value) in (set, frozenset):
        items = sorted(python_literal(v) for v in value)  # stable text for one set
        body = "{" + ", ".join(items) + "}" if items else ""
        if type(value) is frozenset:
            return f"frozenset({body})"
        return body or "set()"
    if type(value) is dict:
        pairs = (f"{python_literal(k)}: {python_literal(v)}" for k, v in value.items())
        return "{" + ", ".join(pairs) + "}"
    raise ValueError(
        f"a {type(value).__name__} ({value!r}) cannot be injected as Python source; give a "
        "literal (number, string, bytes, None, or a list, tuple, set or dict of those)"
    )


def injected_source(params: Mapping[str, Any]) -> str:
    """The injected parameters cell's code: papermill's layout, values as Python literals."""
    lines = ["# Parameters"]
    for name, value in params.items():
        lines.append(f"{name} = {python_literal(value)}")
    return "\n".join(lines) + "\n"


def inject_parameters(nb, params: Mapping[str, Any]):
    """A copy of ``nb`` with an ``injected-parameters`` cell after the parameters cell.

    Uses papermill's own ``parameterize_notebook`` for where the cell goes and the
    notebook metadata, so the notebook runs as ``papermill -p`` would run it, but the
    cell's code comes from :func:`injected_source`: every value evaluates to exactly the
    value given (papermill's translator turns tuples, sets and int dict keys into
    strings). The input is not modified.

    Raises:
        ValueError: a value that has no Python literal (see :func:`python_literal`);
            :func:`validate_parameters` reports those first, naming the notebook.
    """
    import nbformat
    from papermill.parameterize import parameterize_notebook

    if not params:
        return nb
    nb = nbformat.from_dict(copy.deepcopy(dict(nb)))
    nb.metadata.setdefault("papermill", {})
    for cell in nb.cells:  # papermill expects every cell to have a tags list
        tags = cell.setdefault("metadata", {}).setdefault("tags", [])
        if not isinstance(tags, list):
            cell["metadata"]["tags"] = []
    source = injected_source(params)
    out = parameterize_notebook(nb, dict(params), kernel_name="python3", language="python")
    for cell in out.cells:
        if INJECTED_TAG in cell.get("metadata", {}).get("tags", []):
            cell["source"] = source
    return out
