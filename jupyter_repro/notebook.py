"""Reading notebooks safely: ``.ipynb`` through nbformat, text notebooks through jupytext.

This is the one place where bad input becomes a clear error: every function here raises
:class:`~jupyter_repro.errors.NotebookReadError` with a short cause, never a JSON or
nbformat traceback. Nothing here writes to the files it reads.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import NotebookReadError

if TYPE_CHECKING:  # nbformat (and jsonschema under it) is imported on first read, so
    from nbformat import NotebookNode  # a command's parser stays fast (docs/batch.md)

#: Extensions jupytext reads as notebooks when named explicitly or with ``--jupytext``.
TEXT_NOTEBOOK_SUFFIXES = (".py", ".md")


def read_notebook(path: str | Path) -> NotebookNode:
    """Read a notebook (``.ipynb``, or a jupytext ``.py``/``.md``) as nbformat v4.

    Returns:
        A validated-enough ``NotebookNode`` with ``cells`` and ``metadata``; code cells
        always have ``outputs``, ``execution_count`` and ``metadata`` keys.

    Raises:
        NotebookReadError: missing file, a folder, empty file, binary file, invalid JSON,
            a JSON document that is not a notebook, or an unsupported nbformat version.
    """
    p = Path(path)
    if not p.exists():
        raise NotebookReadError(p, "no such file")
    if p.is_dir():
        raise NotebookReadError(p, "is a folder, not a notebook")
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise NotebookReadError(p, f"cannot read: {exc.strerror or exc}") from None
    if not raw.strip():
        raise NotebookReadError(p, "empty file")
    if b"\x00" in raw[:8192]:
        raise NotebookReadError(p, "binary file, not a notebook")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise NotebookReadError(p, f"not UTF-8 text (byte {exc.start})") from None
    if p.suffix.lower() in TEXT_NOTEBOOK_SUFFIXES:
        return _read_text_notebook(p, text)
    return _read_ipynb(p, text)


def _read_ipynb(p: Path, text: str) -> NotebookNode:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise NotebookReadError(
            p, f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None
    except RecursionError:  # [[[[...]]]] thousands deep: no notebook is shaped so
        raise NotebookReadError(p, "JSON nested too deeply to be a notebook") from None
    if not isinstance(data, dict) or ("cells" not in data and "worksheets" not in data):
        raise NotebookReadError(p, "JSON but not a notebook (no 'cells')")
    major = data.get("nbformat")
    if not isinstance(major, int):
        raise NotebookReadError(p, "not a notebook: missing or non-integer 'nbformat'")
    if major not in (3, 4):
        raise NotebookReadError(p, f"unsupported nbformat {major} (supported: 3, 4)")
    if isinstance(data.get("cells"), list):
        for index, cell in enumerate(data["cells"]):
            _check_cell(p, index, cell)
    import nbformat

    try:
        with warnings.catch_warnings():
            # e.g. MissingIDFieldWarning: ids are added in memory; the file is not touched
            warnings.simplefilter("ignore")
            nb = nbformat.reads(text, as_version=4)
    except RecursionError:
        raise NotebookReadError(p, "JSON nested too deeply to be a notebook") from None
    except Exception as exc:  # nbformat raises a zoo of types for malformed documents
        raise NotebookReadError(p, f"malformed notebook: {_first_line(exc)}") from None
    if not isinstance(nb.get("cells"), list):
        raise NotebookReadError(p, "malformed notebook: 'cells' is not a list")
    for index, cell in enumerate(nb.cells):
        _check_cell(p, index, cell)
        _normalise_cell(cell)
    return nb


def _check_cell(p: Path, index: int, cell: object) -> None:
    if not isinstance(cell, dict) or "cell_type" not in cell:
        raise NotebookReadError(p, f"malformed notebook: cell {index} has no cell_type")
    if not isinstance(cell.get("metadata", {}), dict):
        raise NotebookReadError(p, f"malformed notebook: cell {index} metadata is not a mapping")
    source = cell.get("source", "")
    if not isinstance(source, str) and not (
        isinstance(source, list) and all(isinstance(line, str) for line in source)
    ):
        raise NotebookReadError(p, f"malformed notebook: cell {index} source is not text")


def _read_text_notebook(p: Path, text: str) -> NotebookNode:
    import jupytext

    fmt = "md" if p.suffix.lower() == ".md" else "py:percent"
    try:
        nb = jupytext.reads(text, fmt=fmt)
    except Exception as exc:  # jupytext's parse errors have no common base class
        raise NotebookReadError(p, f"cannot read as a jupytext notebook: {_first_line(exc)}")
    for cell in nb.cells:
        _normalise_cell(cell)
    return nb


def _normalise_cell(cell: dict) -> None:
    cell.setdefault("metadata", {})
    if isinstance(cell.get("source"), list):
        cell["source"] = "".join(cell["source"])
    cell.setdefault("source", "")
    if cell.get("cell_type") == "code":
        cell.setdefault("outputs", [])
        cell.setdefault("execution_count", None)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def is_jupytext_text_notebook(path: Path) -> bool:
    """Whether a ``.py``/``.md`` file looks like a jupytext notebook.

    Rule: a ``.py`` file with a jupytext header or ``# %%`` cell markers; a ``.md`` file
    with a YAML header holding ``jupyter:`` metadata. Plain scripts and READMEs are not
    notebooks, so a folder search with ``--jupytext`` does not pick them up.
    """
    try:
        head = path.read_text(encoding="utf-8", errors="replace")[:20000]
    except OSError:
        return False
    if path.suffix.lower() == ".py":
        return "jupytext:" in head or any(line.startswith("# %%") for line in head.splitlines())
    if path.suffix.lower() == ".md":
        return head.startswith("---") and "\njupyter:" in head
    return False


def discover_notebooks(paths: Iterable[str | Path], jupytext: bool = False) -> Iterator[Path]:
    """Expand files and folders into notebook paths, in a stable order.

    Folders are searched recursively for ``*.ipynb`` (and, with ``jupytext=True``, for
    jupytext ``.py``/``.md`` notebooks), skipping ``.ipynb_checkpoints`` and hidden
    folders. A path named explicitly is always yielded, even if missing or malformed, so
    that the caller reports it as bad input rather than dropping it silently.
    """
    seen: set[Path] = set()
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found = []
            for root, dirs, files in os.walk(p):
                dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != "__pycache__")
                for name in files:
                    f = Path(root) / name
                    if name.endswith(".ipynb") or (
                        jupytext
                        and f.suffix.lower() in TEXT_NOTEBOOK_SUFFIXES
                        and is_jupytext_text_notebook(f)
                    ):
                        found.append(f)
            candidates = sorted(found)
        else:
            candidates = [p]
        for f in candidates:
            key = f.resolve() if f.exists() else f
            if key not in seen:
                seen.add(key)
                yield f


def cell_label(index: int | None, execution_count: int | None) -> str:
    """How every report names a cell: ``cell 3 [In 7]``, ``cell 3`` for a cell never run
    (index first, 0-based among all cells, as papermill), or ``injected parameters cell``."""
    if index is None:
        return "injected parameters cell"
    if execution_count is None:
        return f"cell {index}"
    return f"cell {index} [In {execution_count}]"


def cell_tags(cell: dict) -> list[str]:
    """The cell's tags (``metadata.tags``), tolerating malformed metadata."""
    tags = cell.get("metadata", {}).get("tags", [])
    return [t for t in tags if isinstance(t, str)] if isinstance(tags, list) else []


def kernelspec_name(nb: NotebookNode) -> str | None:
    """The notebook's ``metadata.kernelspec.name``, or None when it has none."""
    spec = nb.get("metadata", {}).get("kernelspec") or {}
    name = spec.get("name") if isinstance(spec, dict) else None
    return name if isinstance(name, str) and name else None


def notebook_language(nb: NotebookNode) -> str:
    """The notebook's language, lower-case (``python`` when nothing says otherwise)."""
    md = nb.get("metadata", {})
    for source in (md.get("kernelspec") or {}, md.get("language_info") or {}):
        lang = source.get("language") if isinstance(source, dict) else None
        if not lang and isinstance(source, dict):
            lang = source.get("name") if source is md.get("language_info") else None
        if isinstance(lang, str) and lang:
            return lang.lower()
    return "python"


def first_lines(source: str, n: int = 2, width: int = 80) -> str:
    """The first ``n`` non-blank lines of a cell, each cut to ``width`` characters."""
    lines = [line.rstrip() for line in source.splitlines() if line.strip()][:n]
    return " | ".join(line if len(line) <= width else line[: width - 1] + "…" for line in lines)


def without_outputs(nb: NotebookNode) -> NotebookNode:
    """A copy of ``nb`` whose code cells have no outputs and no execution counts.

    What a fresh run starts from: papermill stores the notebook it was given in the
    executed notebook's metadata (``metadata.papermill.input_path``), so a notebook
    handed over with its saved outputs would carry them (secrets printed once, a 200 MB
    plot) into every run's artifacts. ``nb`` is not modified.
    """
    import copy

    out = copy.deepcopy(nb)
    for cell in out.get("cells", []):
        if cell.get("cell_type") == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
    return out
