"""What really ran: the record's executions as a script or a notebook, in run order."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import nbformat

from .record import ExecutionEvent


def _stamp(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def script_text(events: Sequence[ExecutionEvent]) -> str:
    """The code that ran, in the order it ran, one ``# %%`` block per execution headed by
    the cell id, ``In [n]``, the time and, when it raised, the exception."""
    parts = [f"# Code executed in this kernel, in execution order ({len(events)} runs).\n"]
    for e in events:
        raised = f" raised {e.error.split(':')[0]}" if e.error else ""
        parts.append(
            f"\n# %% [{e.seq}] cell {e.cell_id} In [{e.execution_count}] at {_stamp(e.started)}"
            f" ({e.duration * 1000:.1f} ms){raised}\n{e.source.rstrip()}\n"
        )
    return "".join(parts)


def export_script(events: Sequence[ExecutionEvent], path: str | Path) -> Path:
    """Write :func:`script_text` to ``path``; returns the path."""
    out = Path(path)
    out.write_text(script_text(events), encoding="utf-8")
    return out


def export_notebook(events: Sequence[ExecutionEvent], path: str | Path) -> Path:
    """Write a notebook with one code cell per execution, in execution order.

    Each cell keeps its ``execution_count``; the original cell id, run time and error go
    in ``metadata.jupyter_repro`` (cell ids must be unique, and a cell may have run twice).
    """
    nb = nbformat.v4.new_notebook()
    for e in events:
        cell = nbformat.v4.new_code_cell(e.source)
        cell.execution_count = e.execution_count
        cell.metadata["jupyter_repro"] = {
            "cell_id": e.cell_id,
            "seq": e.seq,
            "started": _stamp(e.started),
            "duration_s": round(e.duration, 6),
            "error": e.error,
        }
        nb.cells.append(cell)
    out = Path(path)
    nbformat.write(nb, str(out))
    return out
