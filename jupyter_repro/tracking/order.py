"""Where the notebook's current cell order comes from, best source first.

1. ``frontend``: the cells a frontend sent over the comm (``docs/protocol.md``);
2. ``file``: the saved notebook, when the kernel knows its path (Jupyter Server sets
   ``JPY_SESSION_NAME``); re-read only when its modification time changes;
3. ``execution_order``: the order in which cells first ran, when nothing else exists.

Whatever the source, the ids in ``deletedCells`` (sent by JupyterLab 4 / Notebook 7 in
every execute request's metadata) are removed, so deletion is known without an extension,
and cells that ran but are not in the source yet (added since the last save) are placed
at the end in the order they first ran.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import NotebookReadError
from ..notebook import read_notebook
from .judge import NotebookCell, NotebookOrder, TrackState
from .record import ExecutionEvent


@dataclass(frozen=True)
class FrontendCell:
    """A cell as a frontend describes it in a ``notebook`` comm message."""

    id: str
    cell_type: str
    source: str


def notebook_path_from_env(
    env: Mapping[str, str] | None = None, cwd: str | None = None
) -> Path | None:
    """The notebook this kernel serves, from ``JPY_SESSION_NAME``, if it is a file here.

    Jupyter Server sets it to the notebook's absolute path (or, in older versions, the
    path relative to the server root; the kernel runs in the notebook's folder, so the
    file name is tried there too).
    """
    env = os.environ if env is None else env
    name = env.get("JPY_SESSION_NAME")
    if not name:
        return None
    path = Path(name)
    if path.is_file():
        return path.resolve()
    local = Path(cwd or os.getcwd()) / path.name
    return local.resolve() if local.is_file() else None


class OrderBook:
    """Keeps the best known notebook order and answers :meth:`current`.

    Attributes:
        frontend_cells: the cells from the last frontend ``notebook`` message, or None.
        notebook_path: the saved notebook, or None.
        deleted: ids of deleted cells (from ``deletedCells`` or the frontend).
        saw_deleted_cells: whether execute requests carry ``deletedCells`` at all.
    """

    def __init__(self, notebook_path: Path | None = None) -> None:
        self.frontend_cells: list[FrontendCell] | None = None
        self.frontend_seq = 0
        self._frontend_version = 0
        self.notebook_path = notebook_path
        self.deleted: set[str] = set()
        self.saw_deleted_cells = False
        self._file_cache: tuple[tuple[float, int], list[tuple[str, int, str]], float] | None = None
        self.file_error: str | None = None
        self._base: tuple[tuple, list[NotebookCell]] | None = None
        self._missing: tuple[tuple, TrackState, list[str]] | None = None
        self._by_source: tuple[tuple, dict[str, str]] | None = None

    def forget_runs(self, next_seq: int = 1) -> None:
        """After ``%track reset``: drop everything derived from the old runs.

        The cells the frontend sent, the saved file and ``deleted`` describe the notebook,
        not the history, so they stay; but the frontend's message is now older than every
        run (``frontend_seq`` is the new state's first seq), and the cache of cells that
        ran but are missing from the source belonged to the old state.
        """
        if self.frontend_cells is not None:
            self.frontend_seq = next_seq
        self._missing = None

    # -- inputs --------------------------------------------------------------------------
    def note_request_metadata(self, meta: Mapping[str, Any] | None) -> None:
        """Take ``deletedCells`` from an execute request's metadata."""
        if not meta or "deletedCells" not in meta:
            return
        self.saw_deleted_cells = True
        deleted = meta.get("deletedCells") or ()
        if isinstance(deleted, (list, tuple)):
            self.deleted.update(str(d) for d in deleted)

    def set_frontend_cells(self, cells: Iterable[FrontendCell], next_seq: int = 1) -> None:
        """The frontend's current cells, in order (replaces what was there).

        ``next_seq`` is the sequence number the next tracked run will get: a cell whose
        last run came before this message and is missing from it was deleted.
        """
        self.frontend_cells = list(cells)
        self.frontend_seq = next_seq
        self._frontend_version += 1
        ids = {c.id for c in self.frontend_cells}
        self.deleted -= ids  # undo / cut-and-paste brings a cell back

    def cell_for_source(self, source: str) -> str | None:
        """The id of the notebook cell whose current source is exactly ``source``, for a
        run that came without a ``cellId`` (a console, an older frontend).

        Looked up in the frontend's cells, else in the saved notebook; deleted cells are
        skipped; when several cells have that very source, the topmost one. None when no
        cell matches (the run then keeps its content-hash id).
        """
        if self.frontend_cells is not None:
            key: tuple = ("frontend", self._frontend_version, len(self.deleted))
            entries = [(c.id, c.source) for c in self.frontend_cells if c.cell_type == "code"]
        elif self.notebook_path is not None:
            saved = self._read_file()
            if saved is None:
                return None
            assert self._file_cache is not None
            key = ("file", self._file_cache[0], len(self.deleted))
            entries = [(cid, src) for cid, _, src in saved[0]]
        else:
            return None
        if self._by_source is None or self._by_source[0] != key:
            index: dict[str, str] = {}
            for cid, src in entries:
                if cid not in self.deleted:
                    index.setdefault(src, cid)
            self._by_source = (key, index)
        return self._by_source[1].get(source)

    # -- output --------------------------------------------------------------------------
    @property
    def source(self) -> str:
        """``frontend``, ``file`` or ``execution_order``: what :meth:`current` is built from."""
        if self.frontend_cells is not None:
            return "frontend"
        if self.notebook_path is not None and self._read_file() is not None:
            return "file"
        return "execution_order"

    def current(self, state: TrackState) -> NotebookOrder:
        """The notebook's code cells now, top to bottom, with their sources when known.

        Cached between calls while nothing it depends on changed, so asking after every
        execution costs a few dictionary lookups, not a pass over the notebook.
        """
        # A cell that ran but is missing from the source was deleted if its last run is
        # older than the source; else it is new (not yet sent or saved) and goes at the end.
        source_newer_than_run: Callable[[ExecutionEvent], bool] = lambda _e: False  # noqa: E731
        if self.frontend_cells is not None:
            key: tuple = ("frontend", self._frontend_version, len(self.deleted))
            if self._base is None or self._base[0] != key:
                base = [
                    NotebookCell(c.id, index, c.source)
                    for index, c in enumerate(self.frontend_cells)
                    if c.cell_type == "code" and c.id not in self.deleted
                ]
                self._base = (key, base)
            cells, source = list(self._base[1]), "frontend"
            frontend_seq = self.frontend_seq
            source_newer_than_run = lambda e: e.seq < frontend_seq  # noqa: E731
        else:
            saved = self._read_file() if self.notebook_path is not None else None
            cells = []
            if saved is not None:
                entries, mtime = saved
                for cid, index, src in entries:
                    if cid in self.deleted:
                        continue
                    event = state.latest.get(cid)
                    # an unsaved edit: the run is newer than the file, so trust the run
                    newer_run = event is not None and event.started > mtime
                    cells.append(NotebookCell(cid, index, None if newer_run else src))
                source = "file"
                source_newer_than_run = lambda e: e.started < mtime  # noqa: E731
                key = ("file", mtime, len(self.deleted))
            else:
                source = "execution_order"
                key = ("execution_order", len(self.deleted))
        # first_seq only grows within one state, so its length versions it; the state
        # itself is part of the key (a reset starts another one, whose length starts over)
        known_key = (key, len(state.first_seq))
        missing = self._missing
        if missing is None or missing[0] != known_key or missing[1] is not state:
            known = {c.id for c in cells}
            missing = self._missing = (
                known_key,
                state,
                [
                    cid
                    for cid in sorted(state.first_seq, key=state.first_seq.__getitem__)
                    if cid not in known and cid not in self.deleted
                ],
            )
        extra = [cid for cid in missing[2] if not source_newer_than_run(state.latest[cid])]
        start = max((c.index for c in cells), default=-1) + 1
        placed = source == "execution_order"  # there, order of first run *is* the order
        cells.extend(NotebookCell(cid, start + k, None, placed) for k, cid in enumerate(extra))
        return NotebookOrder(tuple(cells), source)

    def _read_file(self) -> tuple[list[tuple[str, int, str]], float] | None:
        path = self.notebook_path
        assert path is not None
        try:
            st = path.stat()
        except OSError as exc:
            self.file_error = str(exc)
            return None
        key = (st.st_mtime, st.st_size)
        if self._file_cache is not None and self._file_cache[0] == key:
            return self._file_cache[1], self._file_cache[2]
        try:
            nb = read_notebook(path)
        except NotebookReadError as exc:
            self.file_error = str(exc)
            return None
        entries = [
            (str(cell.get("id")), index, cell.source)
            for index, cell in enumerate(nb.cells)
            if cell.cell_type == "code" and cell.get("id")
        ]
        self._file_cache = (key, entries, st.st_mtime)
        self.file_error = None
        return entries, st.st_mtime
