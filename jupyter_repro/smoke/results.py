"""What nb-smoke found, as plain data: the terminal, JSON and JUnit reports render this.

The JSON form (``to_json``) is documented in ``docs/report-schema.md`` and versioned by
``REPORT_SCHEMA_VERSION``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..notebook import cell_label
from ..outputs import OutputDifference
from ..verdicts import Finding

REPORT_SCHEMA_VERSION = 1

#: Notebook statuses, worst last.
PASSED, FAILED, TIMED_OUT, ERROR = "passed", "failed", "timed_out", "error"


@dataclass
class CellFailure:
    """The first cell that failed, with everything a reader needs to find it.

    Attributes:
        cell_index: 0-based index in the notebook; None for the injected parameters cell.
        cell_id: nbformat cell id, when the notebook has ids.
        execution_count: the saved ``In [N]`` label of the cell, if any.
        first_lines: the cell's first non-blank lines, joined by `` | ``.
        ename: exception class name (``NameError``, ``StdinNotImplementedError``...).
        evalue: exception message.
        line: 1-based line within the cell, when known.
        traceback: plain-text traceback (no ANSI colours), possibly cut.
        output: what the cell printed before failing (stdout and stderr), possibly cut.
        source_line: the cell's source line where it failed, when ``line`` is known.
    """

    cell_index: int | None
    cell_id: str | None
    execution_count: int | None
    first_lines: str
    ename: str
    evalue: str
    line: int | None = None
    traceback: str = ""
    output: str = ""
    source_line: str = ""

    @property
    def label(self) -> str:
        """``cell 3 [In 7]``, or ``injected parameters cell``."""
        return cell_label(self.cell_index, self.execution_count)

    def to_json(self) -> dict[str, Any]:
        return {
            "cell_index": self.cell_index,
            "cell_id": self.cell_id,
            "execution_count": self.execution_count,
            "first_lines": self.first_lines,
            "ename": self.ename,
            "evalue": self.evalue,
            "line": self.line,
            "traceback": self.traceback,
            "output": self.output,
            "source_line": self.source_line,
        }


@dataclass
class Notice:
    """A warning that is not a lint verdict (a tag that did not hold, a missing kernel).

    Attributes:
        kind: machine name, e.g. ``raises_exception_did_not_raise``,
            ``kernelspec_not_installed``, ``parameter_type``.
        message: one line for humans.
        cell_index: the cell it is about, if any.
        strict: whether ``--strict`` turns it into a failure.
    """

    kind: str
    message: str
    cell_index: int | None = None
    strict: bool = True

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "message": self.message, "cell_index": self.cell_index}


@dataclass
class NotebookResult:
    """The verdict on one notebook.

    Attributes:
        path: as given on the command line (or found in a folder).
        status: ``passed``, ``failed``, ``timed_out`` or ``error`` (unreadable input,
            missing kernel: the notebook could not be checked).
        mode: ``script``, ``kernel`` or ``lint`` (with ``--lint-only``).
        seconds: wall time spent on this notebook.
        failure: the first failing cell, for ``failed`` and ``timed_out``.
        error: one line for ``error`` (names the file and the cause).
        findings: static lint findings.
        notices: other warnings.
        cells_run: code cells that finished.
        output: everything the run printed, per cell, keyed by cell index (as a string).
        output_differences: with ``--check-outputs``, cells whose fresh outputs differ
            from the saved ones.
        nondeterministic: with ``--repeat N``, cells whose outputs differ between runs,
            first in notebook order first, each with its probable cause.
        mlflow_run_id: with ``--mlflow``, the MLflow run this check was logged as.
        timeit_shortened: ``%timeit``/``%%timeit`` calls run once (by default only where
            :mod:`jupyter_repro.smoke.timeit_rule` finds it safe; every one with ``--fast``).
        timeit_full: ``%timeit``/``%%timeit`` calls run in full, as a kernel runs them.
    """

    path: str
    status: str = PASSED
    mode: str = "script"
    seconds: float = 0.0
    failure: CellFailure | None = None
    error: str | None = None
    findings: list[Finding] = field(default_factory=list)
    notices: list[Notice] = field(default_factory=list)
    cells_run: int = 0
    output: dict[str, str] = field(default_factory=dict)
    strict_failed: bool = False
    output_differences: list[OutputDifference] = field(default_factory=list)
    nondeterministic: list[dict[str, Any]] = field(default_factory=list)
    mlflow_run_id: str | None = None
    timeit_shortened: int = 0
    timeit_full: int = 0
    #: Fresh outputs per spec position (nbformat shape); not part of the JSON report.
    cell_outputs: dict[int, list[dict[str, Any]]] = field(default_factory=dict, repr=False)
    #: ``(name, mimetype, saved value, fresh value)`` of differing images.
    image_pairs: list[tuple[str, str, str, str]] = field(default_factory=list, repr=False)

    @property
    def ok(self) -> bool:
        return self.status == PASSED and not self.strict_failed

    @property
    def final_status(self) -> str:
        """The status reports show: ``failed`` for a pass with warnings under --strict."""
        return FAILED if self.strict_failed and self.status == PASSED else self.status

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "status": self.final_status,
            "mode": self.mode,
            "seconds": round(self.seconds, 3),
            "cells_run": self.cells_run,
            "failure": self.failure.to_json() if self.failure else None,
            "error": self.error,
            "findings": [f.to_json() for f in self.findings],
            "notices": [n.to_json() for n in self.notices],
            "output": self.output,
            "output_differences": [d.to_json() for d in self.output_differences],
            "nondeterministic": self.nondeterministic,
            "mlflow_run_id": self.mlflow_run_id,
            "timeit_shortened": self.timeit_shortened,
            "timeit_full": self.timeit_full,
        }


@dataclass
class SmokeReport:
    """All notebooks of one nb-smoke call."""

    results: list[NotebookResult] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def exit_code(self) -> int:
        """0 all passed, 1 something failed, 2 some input could not be checked."""
        if any(r.status == ERROR for r in self.results):
            return 2
        if any(not r.ok for r in self.results):
            return 1
        return 0

    def counts(self) -> dict[str, int]:
        out = {PASSED: 0, FAILED: 0, TIMED_OUT: 0, ERROR: 0}
        for r in self.results:
            out[r.final_status] += 1
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "schema_version": REPORT_SCHEMA_VERSION,
            "tool": "nb-smoke",
            "seconds": round(self.seconds, 3),
            "summary": self.counts(),
            "exit_code": self.exit_code,
            "notebooks": [r.to_json() for r in self.results],
        }
