"""The execution record: what ran, when, what it read and wrote, persisted as JSONL.

One line per event, appended with a single ``write`` on a file opened in append mode, so
a killed kernel leaves either a whole line or (at worst, on power loss) a torn last line
without a newline; :func:`read_record` skips such a line, and the next writer first
terminates it, so one bad line never corrupts the ones after it. No ``fsync`` per cell:
the OS has the line as soon as the write returns, which survives a kernel crash, and an
fsync would cost more than the whole tracking budget of a cell.

The folder is created 0700 with a ``.gitignore`` of ``*``, the file 0600: the record
keeps every cell's source, and what a user typed into a cell is theirs alone.

File layout (documented in ``docs/tracking.md``): ``<notebook folder>/.jupyter_repro/
<notebook name>.track.jsonl`` when the kernel knows its notebook, otherwise
``<working folder>/.jupyter_repro/kernel-<pid>-<start time>.track.jsonl``. Each kernel
session starts with a ``session`` line; then one ``execution`` line per tracked run.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Version of the JSONL line format; bumped only for incompatible changes.
RECORD_VERSION = 1
RECORD_DIR = ".jupyter_repro"


@dataclass
class ExecutionEvent:
    """One tracked execution of a cell.

    Attributes:
        seq: position in this kernel session's sequence of tracked runs (1, 2, ...).
        cell_id: the frontend's cell id; when none was sent, the id of the notebook cell
            with the same source, else ``sha1:<hash of source>``.
        cell_id_source: ``"frontend"`` (``cellId`` from the execute request),
            ``"source_match"`` (no ``cellId``: the notebook cell with exactly this source)
            or ``"content_hash"`` (no cell matched: the run looks like a new cell).
        execution_count: the ``In [n]`` number.
        started: wall-clock start, seconds since the epoch.
        duration: seconds the cell took, measured between the hooks.
        source: the raw cell source as the user typed it.
        source_hash: sha1 of ``source``, for cheap comparison with the notebook.
        reads: names (and ``file:<path>`` entries) the cell read, including globals read
            by notebook functions it called.
        defines, deletes, mutates: what static analysis says the cell binds, deletes and
            possibly mutates in place.
        changed: names whose binding or size actually changed, seen in the namespace.
        writes: what the tracker counts as written by this run (used by the verdicts).
        seen: for each read, the ``seq`` of the run that last wrote it when this cell
            started, or None when no tracked run wrote it.
        error: ``"ExceptionName: message"`` when the cell raised, else None.
        missing_name: for a NameError, the name that was not defined.
        unverified: names whose runtime evidence (:mod:`.evidence`) was cut short by the
            per-cell budget: changes seen through other names may be missed for them.
    """

    seq: int
    cell_id: str
    cell_id_source: str
    execution_count: int | None
    started: float
    source: str
    source_hash: str
    duration: float = 0.0
    reads: list[str] = field(default_factory=list)
    defines: list[str] = field(default_factory=list)
    deletes: list[str] = field(default_factory=list)
    mutates: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    writes: list[str] = field(default_factory=list)
    seen: dict[str, int | None] = field(default_factory=dict)
    error: str | None = None
    missing_name: str | None = None
    unverified: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The event as one JSONL object (``"type": "execution"``)."""
        return {"type": "execution", "v": RECORD_VERSION, **self.__dict__}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ExecutionEvent:
        """Rebuild an event from :meth:`to_json` output; unknown keys are ignored."""
        known = cls.__dataclass_fields__
        return cls(**{k: v for k, v in data.items() if k in known})


def record_path(notebook: str | Path | None, cwd: str | Path, started: float) -> Path:
    """Where the record of this kernel session lives (see the module docstring)."""
    if notebook:
        nb = Path(notebook)
        return nb.parent / RECORD_DIR / f"{nb.name}.track.jsonl"
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(started))
    return Path(cwd) / RECORD_DIR / f"kernel-{os.getpid()}-{stamp}.track.jsonl"


def private_folder(folder: Path) -> None:
    """Create the record folder readable by its owner only (0700), with a ``.gitignore``
    of ``*`` so that the record (every cell's source, typed secrets included) is never
    committed by accident. An existing folder is narrowed to 0700 too."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    if folder.stat().st_mode & 0o077:
        folder.chmod(0o700)
    ignore = folder / ".gitignore"
    if not ignore.exists():
        fd = os.open(ignore, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, b"# written by jupyter_repro's %track: its record stays private\n*\n")
        finally:
            os.close(fd)


class RecordWriter:
    """Appends JSON lines to a record file, one ``os.write`` per line.

    The file is opened lazily on the first line, so enabling tracking in a read-only
    folder costs nothing until something is written; a failure to write is remembered in
    :attr:`error` and tracking goes on in memory (the kernel must never break because a
    disk is full).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.error: str | None = None
        self._fd: int | None = None

    def append(self, obj: dict[str, Any]) -> None:
        """Write ``obj`` as one line; never raises."""
        if self.error is not None:
            return
        try:
            if self._fd is None:
                self._open()
            assert self._fd is not None
            os.write(self._fd, _encode(obj))
        except (OSError, TypeError, ValueError) as exc:
            self.error = f"{type(exc).__name__}: {exc}"

    def _open(self) -> None:
        private_folder(self.path.parent)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        stat = os.fstat(fd)
        if stat.st_mode & 0o077:  # an older record, created readable by others
            os.fchmod(fd, 0o600)
        size = stat.st_size
        if size:
            with open(self.path, "rb") as fh:  # terminate a torn last line, if any
                fh.seek(size - 1)
                if fh.read(1) != b"\n":
                    os.write(fd, b"\n")
        self._fd = fd

    def close(self) -> None:
        """Close the file (later appends reopen it)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _encode(obj: dict[str, Any]) -> bytes:
    return (json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n").encode()


def read_record(path: str | Path) -> Iterator[dict[str, Any]]:
    """Yield every well-formed line of a record file, skipping torn or foreign lines.

    What an audit uses after the kernel is gone: ``session`` lines say which kernel and
    notebook, ``execution`` lines (see :meth:`ExecutionEvent.from_json`) say what ran.
    """
    with open(path, "rb") as fh:
        for raw in fh:
            if not raw.endswith(b"\n"):
                return  # torn last line
            try:
                obj = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError):
                continue
            if isinstance(obj, dict) and "type" in obj:
                yield obj


def read_executions(path: str | Path) -> list[ExecutionEvent]:
    """The ``execution`` lines of a record file, in the order they were written."""
    return [ExecutionEvent.from_json(o) for o in read_record(path) if o["type"] == "execution"]
