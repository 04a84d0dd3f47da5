"""What really ran: the record's executions as a script or a notebook, in run order.

Each file is written to a temporary file beside it and renamed over it, so an export
that fails (disk full, interrupted) never leaves a half-written file behind, and a file
that cannot be written is one :class:`ExportError` naming the path and the cause.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import nbformat

from ..errors import ExportError
from .record import ExecutionEvent

__all__ = ["ExportError", "export_notebook", "export_script", "script_text", "write_atomically"]


def _stamp(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def script_text(events: Sequence[ExecutionEvent], note: str | None = None) -> str:
    """The code that ran, in the order it ran, one ``# %%`` block per execution headed by
    the cell id, ``In [n]``, the time and, when it raised, the exception. ``note`` (e.g.
    that runs are missing) goes in the header."""
    parts = [f"# Code executed in this kernel, in execution order ({len(events)} runs).\n"]
    if note:
        parts.append(f"# {note}\n")
    for e in events:
        raised = f" raised {e.error.split(':')[0]}" if e.error else ""
        parts.append(
            f"\n# %% [{e.seq}] cell {e.cell_id} In [{e.execution_count}] at {_stamp(e.started)}"
            f" ({e.duration * 1000:.1f} ms){raised}\n{e.source.rstrip()}\n"
        )
    return "".join(parts)


def write_atomically(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` through a temporary file in the same folder and
    a rename; raises :class:`ExportError` naming the path and the cause."""
    out = Path(path)
    tmp: Path | None = None
    try:
        try:  # a replaced file keeps its mode; a new one gets what open() would give it
            mode: int | None = out.stat().st_mode & 0o7777
        except FileNotFoundError:
            mode = None
        name = out.parent / f".{out.name}.{uuid.uuid4().hex[:12]}.tmp"
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # minus the umask
        tmp = name
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            if mode is not None:
                os.fchmod(fh.fileno(), mode)
            fh.write(text)
        os.replace(tmp, out)
        tmp = None
    except (OSError, ValueError) as exc:  # ValueError: unencodable text (lone surrogates)
        cause = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ExportError(f"cannot write {out}: {cause}") from exc
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
    return out


def export_script(
    events: Sequence[ExecutionEvent], path: str | Path, note: str | None = None
) -> Path:
    """Write :func:`script_text` to ``path`` atomically; returns the path."""
    return write_atomically(path, script_text(events, note))


def export_notebook(
    events: Sequence[ExecutionEvent], path: str | Path, note: str | None = None
) -> Path:
    """Write a notebook with one code cell per execution, in execution order, atomically.

    Each cell keeps its ``execution_count``; the original cell id, run time and error go
    in ``metadata.jupyter_repro`` (cell ids must be unique, and a cell may have run twice).
    ``note`` (e.g. that runs are missing) goes in the notebook's ``metadata.jupyter_repro``
    and in a first markdown cell.
    """
    nb = nbformat.v4.new_notebook()
    if note:
        nb.metadata["jupyter_repro"] = {"note": note}
        nb.cells.append(nbformat.v4.new_markdown_cell(f"**{note}**"))
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
    return write_atomically(path, nbformat.writes(nb) + "\n")
