"""Static hygiene checks on a saved notebook: no execution, milliseconds per notebook.

Each check returns :class:`~jupyter_repro.verdicts.Finding` objects with the shared verdict
vocabulary, so nb-smoke's lint, ``%track`` and the JupyterLab extension say the same thing:

- ``out_of_order``: an executed cell whose saved execution count is lower than the count
  of the executed cell above it (it ran before that cell); or a cell that reads a name
  defined only in a cell below it.
- ``never_run``: a non-empty code cell with no execution count between executed cells.
- ``hidden_state``: a cell that reads a name no cell defines, whose saved outputs show it
  ran without error (the value came from kernel state that no code holds any more).
- ``undefined_name``: the same, for a cell with no sign of having run (a clean run fails).
- ``multiple_definitions``: a name assigned in several cells and read by another cell, so
  the value read depends on which of them ran last. Repeated identical imports are fine.
- ``home_path``: a string literal that is an absolute path into a user's home folder.
- ``unseeded_random``: a random generator used with no seed set earlier in the notebook
  (rules in :mod:`jupyter_repro.determinism`), naming the call.
- ``untrusted_pickle``: ``pickle.load``/``joblib.load``/``torch.load`` of a file the
  notebook does not write itself (unpickling runs code; check a checksum first).

Names bound by ``from m import *`` or ``%run`` cannot be known: after such a cell, names
read from nowhere are not reported.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Mapping

from ..analysis import CellAnalysis, analyze_cell, resolve_calls
from ..determinism import scan_notebook
from ..verdicts import Finding, Verdict

_HOME_PATH = re.compile(
    r"^(?:/home/[^/\s]+|/Users/[^/\s]+|/root|[A-Za-z]:[\\/]+Users[\\/]+[^\\/\s]+)(?:[\\/]|$)"
)


def lint_notebook(nb: Mapping) -> list[Finding]:
    """All static findings for a notebook, ordered by cell index then verdict name."""
    cells = list(nb.get("cells", []))
    code = [
        (i, c) for i, c in enumerate(cells) if c.get("cell_type") == "code" and _source(c).strip()
    ]
    analyses = {i: analyze_cell(_source(c)) for i, c in code}
    findings: list[Finding] = []
    findings += check_execution_order(cells)
    findings += check_names(cells, analyses)
    findings += check_home_paths(cells, analyses)
    findings += check_determinism(cells)
    return sorted(findings, key=lambda f: (f.cell_index, f.verdict.value))


def _source(cell: Mapping) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else str(src)


def _cell_id(cell: Mapping) -> str | None:
    cid = cell.get("id")
    return cid if isinstance(cid, str) else None


def _count(cell: Mapping) -> int | None:
    n = cell.get("execution_count")
    return n if isinstance(n, int) else None


def check_execution_order(cells: list) -> list[Finding]:
    """``out_of_order`` where saved counts decrease; ``never_run`` for gaps between runs."""
    findings: list[Finding] = []
    code = [(i, c) for i, c in enumerate(cells) if c.get("cell_type") == "code"]
    executed = [(i, _count(c)) for i, c in code if _count(c) is not None]
    prev: tuple[int, int] | None = None
    for i, n in executed:
        if prev is not None and n < prev[1]:
            findings.append(
                Finding(
                    Verdict.OUT_OF_ORDER,
                    i,
                    f"execution count [{n}] is lower than [{prev[1]}] of cell {prev[0]} above: "
                    "this cell ran before that one",
                    cell_id=_cell_id(cells[i]),
                    related_cells=(prev[0],),
                )
            )
        prev = (i, n)
    if executed:
        first, last = executed[0][0], executed[-1][0]
        for i, c in code:
            if first < i < last and _count(c) is None and _source(c).strip():
                findings.append(
                    Finding(
                        Verdict.NEVER_RUN,
                        i,
                        "code cell never executed, between executed cells "
                        f"{first} and {last}: the saved outputs below it did not see it",
                        cell_id=_cell_id(c),
                    )
                )
    return findings


def _ran_cleanly(cell: Mapping) -> bool:
    if _count(cell) is None:
        return False
    return not any(o.get("output_type") == "error" for o in cell.get("outputs", []))


def check_names(cells: list, analyses: Mapping[int, CellAnalysis]) -> list[Finding]:
    """Names read before any cell above defines them, and names defined in several cells."""
    findings: list[Finding] = []
    definers: dict[str, list[int]] = defaultdict(list)
    for i, a in analyses.items():
        for name in a.defines:
            definers[name].append(i)
    functions: dict[str, frozenset[str]] = {}
    defined_above: set[str] = set()
    deleted_by: dict[str, int] = {}
    star_above = False
    readers: dict[str, list[int]] = defaultdict(list)
    for i in sorted(analyses):
        a = analyses[i]
        if a.syntax_error is not None:
            continue
        reads = resolve_calls(a, functions)
        for name in sorted(reads):
            readers[name].append(i)
            if name in defined_above:
                continue
            below = [j for j in definers.get(name, []) if j > i]
            if below:
                findings.append(
                    Finding(
                        Verdict.OUT_OF_ORDER,
                        i,
                        f"reads `{name}`, defined only by cell {below[0]} below: "
                        "a top-to-bottom run fails here",
                        cell_id=_cell_id(cells[i]),
                        names=(name,),
                        related_cells=tuple(below),
                    )
                )
            elif name in deleted_by:
                findings.append(
                    Finding(
                        Verdict.UNDEFINED_NAME,
                        i,
                        f"reads `{name}`, deleted by cell {deleted_by[name]} above: "
                        "NameError in a clean run",
                        cell_id=_cell_id(cells[i]),
                        names=(name,),
                        related_cells=(deleted_by[name],),
                    )
                )
            elif not star_above and not a.star_import:
                ran = _ran_cleanly(cells[i])
                findings.append(
                    Finding(
                        Verdict.HIDDEN_STATE if ran else Verdict.UNDEFINED_NAME,
                        i,
                        (
                            f"reads `{name}`, which no cell defines; its saved outputs came "
                            "from state that no code in the notebook creates"
                            if ran
                            else f"reads `{name}`, which no cell defines: NameError in a clean run"
                        ),
                        cell_id=_cell_id(cells[i]),
                        names=(name,),
                    )
                )
        defined_above |= a.defines
        defined_above -= a.deletes
        for name in a.deletes:
            deleted_by[name] = i
        for name in a.defines:
            deleted_by.pop(name, None)
        functions.update(a.function_reads)
        star_above = star_above or a.star_import
    for name, where in sorted(definers.items()):
        cells_defining = sorted(set(where))
        if len(cells_defining) < 2:
            continue
        if all(name in analyses[i].imports for i in where):
            continue  # an import repeated: the same module whichever ran last
        outside = [r for r in readers.get(name, []) if r not in cells_defining]
        if not outside:
            continue
        for i in cells_defining:
            others = tuple(j for j in cells_defining if j != i)
            findings.append(
                Finding(
                    Verdict.MULTIPLE_DEFINITIONS,
                    i,
                    f"`{name}` is also assigned in cell{'s' if len(others) > 1 else ''} "
                    f"{', '.join(map(str, others))} and read in cell {outside[0]}: "
                    "its value depends on which ran last",
                    cell_id=_cell_id(cells[i]),
                    names=(name,),
                    related_cells=others,
                )
            )
    return findings


def check_home_paths(cells: list, analyses: Mapping[int, CellAnalysis]) -> list[Finding]:
    """String literals that are absolute paths into a user's home folder."""
    findings: list[Finding] = []
    for i, a in sorted(analyses.items()):
        for text in a.strings:
            if _HOME_PATH.match(text.strip()):
                findings.append(
                    Finding(
                        Verdict.HOME_PATH,
                        i,
                        f"absolute path into a home folder: {text.strip()[:80]!r}; "
                        "use a path relative to the notebook",
                        cell_id=_cell_id(cells[i]),
                    )
                )
                break
    return findings


def check_determinism(cells: list) -> list[Finding]:
    """``unseeded_random`` and ``untrusted_pickle``, one finding per cell and kind."""
    sources = [(i, _source(c)) for i, c in enumerate(cells) if c.get("cell_type") == "code"]
    findings: list[Finding] = []
    seen: set[tuple[int, str]] = set()
    for src in scan_notebook(sources):
        if src.kind not in ("unseeded_random", "untrusted_pickle"):
            continue
        if (src.cell_index, src.kind) in seen:
            continue
        seen.add((src.cell_index, src.kind))
        findings.append(
            Finding(
                Verdict(src.kind),
                src.cell_index,
                f"line {src.line}: {src.message}",
                cell_id=_cell_id(cells[src.cell_index]),
                names=(src.call.split("|", 1)[0],),
            )
        )
    return findings
