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

Rules are chosen with :data:`DEFAULT_RULES` (every rule but ``multiple_definitions``,
which is opt-in: tutorials rebind names on purpose), ``select``/``extend-select``/
``ignore`` (see :func:`resolve_rules`), and silenced per cell with a comment
``# nb-smoke: ignore`` (every rule) or ``# nb-smoke: ignore[rule, ...]`` (see
:func:`cell_suppressions`). Each rule is documented in ``docs/lint.md``; the precision of
the default set is measured by ``benchmarks/lint_precision.py``.
"""

from __future__ import annotations

import io
import re
import tokenize
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field

from ..analysis import CellAnalysis, analyze_cell, resolve_calls
from ..determinism import scan_notebook
from ..verdicts import Finding, Verdict

_HOME_PATH = re.compile(
    r"^(?:/home/[^/\s]+|/Users/[^/\s]+|/root|[A-Za-z]:[\\/]+Users[\\/]+[^\\/\s]+)(?:[\\/]|$)"
)


#: Every rule the lint knows, by name (the verdict names of :mod:`jupyter_repro.verdicts`).
RULES: tuple[str, ...] = (
    Verdict.OUT_OF_ORDER.value,
    Verdict.NEVER_RUN.value,
    Verdict.HIDDEN_STATE.value,
    Verdict.UNDEFINED_NAME.value,
    Verdict.MULTIPLE_DEFINITIONS.value,
    Verdict.HOME_PATH.value,
    Verdict.UNSEEDED_RANDOM.value,
    Verdict.UNTRUSTED_PICKLE.value,
)
#: Rules that run unless configured otherwise; ``multiple_definitions`` is opt-in.
DEFAULT_RULES: frozenset[str] = frozenset(RULES) - {Verdict.MULTIPLE_DEFINITIONS.value}
#: ``select = ["ALL"]`` selects every rule.
ALL = "ALL"


class RuleError(ValueError):
    """A rule name that does not exist, in ``select``/``ignore``/``extend-select``."""


def resolve_rules(
    select: Iterable[str] | None = None,
    ignore: Iterable[str] = (),
    extend_select: Iterable[str] = (),
) -> frozenset[str]:
    """The rules to run, as ruff combines them: ``select`` (default :data:`DEFAULT_RULES`)
    replaces the set, ``extend_select`` adds to it, ``ignore`` removes from it.

    Raises:
        RuleError: for a name that is not in :data:`RULES` (nor ``ALL``), naming it and
            listing the known rules.
    """

    def names(values: Iterable[str]) -> set[str]:
        out: set[str] = set()
        for value in values:
            if value == ALL:
                out |= set(RULES)
            elif value in RULES:
                out.add(value)
            else:
                raise RuleError(f"unknown rule {value!r} (rules: {', '.join(RULES)}, {ALL})")
        return out

    rules = set(DEFAULT_RULES) if select is None else names(select)
    rules |= names(extend_select)
    rules -= names(ignore)
    return frozenset(rules)


_SUPPRESS = re.compile(r"#\s*nb-smoke:\s*ignore\b(?:\[([^\]]*)\])?", re.IGNORECASE)


@dataclass(frozen=True)
class LintOutcome:
    """What :func:`lint_cells` found: the findings kept, and notes about the comments.

    Attributes:
        findings: findings of the selected rules that no comment silences, ordered by
            cell index then rule name.
        notes: ``(cell index, message)`` for suppression comments naming unknown rules.
        suppressed: how many findings a comment silenced.
    """

    findings: list[Finding] = field(default_factory=list)
    notes: list[tuple[int, str]] = field(default_factory=list)
    suppressed: int = 0


def cell_suppressions(source: str) -> tuple[frozenset[str] | None, list[str]]:
    """Rules silenced in one cell by ``# nb-smoke: ignore`` comments.

    Returns ``(rules, unknown)``: ``rules`` is None when nothing is silenced, the set of
    every rule (:data:`RULES`) for a bare ``# nb-smoke: ignore``, else the named rules;
    ``unknown`` lists names in brackets that are not rules. Only comments count (Python's
    tokenizer finds them); a cell it cannot tokenize (IPython syntax) is searched line by
    line for the comment after a ``#``.
    """
    comments: list[str] = []
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type == tokenize.COMMENT:
                comments.append(tok.string)
    except (tokenize.TokenError, IndentationError, SyntaxError):
        comments = [line[line.index("#") :] for line in source.splitlines() if "#" in line]
    rules: set[str] | None = None
    unknown: list[str] = []
    for comment in comments:
        for match in _SUPPRESS.finditer(comment):
            rules = rules if rules is not None else set()
            if match.group(1) is None:
                rules |= set(RULES)
                continue
            for name in (n.strip() for n in match.group(1).split(",")):
                if not name:
                    continue
                if name in RULES:
                    rules.add(name)
                elif name == ALL:
                    rules |= set(RULES)
                else:
                    unknown.append(name)
    return (frozenset(rules) if rules is not None else None), unknown


def lint_cells(nb: Mapping, rules: Collection[str] | None = None) -> LintOutcome:
    """Findings of the chosen ``rules`` (default :data:`DEFAULT_RULES`), minus those
    silenced by ``# nb-smoke: ignore`` comments in their cell."""
    chosen = DEFAULT_RULES if rules is None else frozenset(rules)
    cells = list(nb.get("cells", []))
    silenced: dict[int, frozenset[str]] = {}
    notes: list[tuple[int, str]] = []
    for i, cell in enumerate(cells):
        if cell.get("cell_type") != "code":
            continue
        names, unknown = cell_suppressions(_source(cell))
        if names is not None:
            silenced[i] = names
        for name in unknown:
            notes.append(
                (i, f"`# nb-smoke: ignore[{name}]` names no rule (rules: {', '.join(RULES)})")
            )
    kept: list[Finding] = []
    suppressed = 0
    for finding in lint_notebook(nb):
        rule = finding.verdict.value
        if rule not in chosen:
            continue
        if rule in silenced.get(finding.cell_index, ()):
            suppressed += 1
            continue
        kept.append(finding)
    return LintOutcome(kept, notes, suppressed)


def lint_notebook(nb: Mapping) -> list[Finding]:
    """All static findings of every rule for a notebook, ordered by cell index then verdict
    name, before rule selection and inline suppression (see :func:`lint_cells`)."""
    cells = list(nb.get("cells", []))
    code = [
        (i, c) for i, c in enumerate(cells) if c.get("cell_type") == "code" and _source(c).strip()
    ]
    analyses = {i: analyze_cell(_source(c)) for i, c in code}
    findings: list[Finding] = []
    findings += check_execution_order(cells, analyses)
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


def _resolved_reads(analyses: Mapping[int, CellAnalysis]) -> dict[int, frozenset[str]]:
    """Each cell's reads, including the globals read by the functions it calls."""
    functions: dict[str, frozenset[str]] = {}
    out: dict[int, frozenset[str]] = {}
    for i in sorted(analyses):
        a = analyses[i]
        if a.syntax_error is not None:
            continue
        out[i] = resolve_calls(a, functions)
        functions.update(a.function_reads)
    return out


def check_execution_order(
    cells: list, analyses: Mapping[int, CellAnalysis] | None = None
) -> list[Finding]:
    """``out_of_order`` where saved counts decrease; ``never_run`` for gaps between runs.

    A never-run cell is reported only when the saved counts prove it did not run and it
    matters to the saved outputs: the executed cells just above and below it carry
    consecutive counts (``[6]`` then ``[7]``: nothing ran in between; a gap such as
    ``[6]`` then ``[8]`` may be this very cell, its count cleared since), and it binds,
    changes or deletes a name that an executed cell below it reads (a re-import of a
    module an executed cell above already imported does not count). A cell left unrun on
    purpose (an interactive-backend demo, a slow download) whose names nothing below
    reads is not reported.
    """
    if analyses is None:
        analyses = {
            i: analyze_cell(_source(c))
            for i, c in enumerate(cells)
            if c.get("cell_type") == "code" and _source(c).strip()
        }
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
        reads = _resolved_reads(analyses)
        ran = {i for i, _n in executed}
        for i, c in code:
            if not (first < i < last and _count(c) is None and _source(c).strip()):
                continue
            a = analyses.get(i)
            if a is None or a.syntax_error is not None:
                continue
            above = [n for j, n in executed if j < i][-1]
            below = next(n for j, n in executed if j > i)
            if below != above + 1:
                continue  # a count is missing between them: this cell may have run then
            imported_above = set().union(
                *(analyses[j].imports for j in ran if j < i and j in analyses)
            )
            effects = (a.defines - (a.imports & imported_above)) | a.mutates | a.deletes
            reader = next(
                (
                    (j, name)
                    for j in sorted(ran)
                    if j > i
                    for name in sorted(effects & reads.get(j, frozenset()))
                ),
                None,
            )
            if reader is None:
                continue
            j, name = reader
            findings.append(
                Finding(
                    Verdict.NEVER_RUN,
                    i,
                    f"code cell never executed (the cells around it ran as [{above}] and "
                    f"[{below}]); it sets `{name}`, which executed cell {j} below reads: "
                    "the saved outputs below it did not see it",
                    cell_id=_cell_id(c),
                    names=(name,),
                    related_cells=(j,),
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
            if star_above or a.star_import:
                continue  # `from m import *` or `%run` above may bind it: nothing is known
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
            else:
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
