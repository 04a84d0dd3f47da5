"""Pure verdict logic: execution record + current notebook order -> per-cell findings.

No IPython, no I/O. :class:`TrackState` folds execution events into the few maps the
verdicts need (the latest run of each cell, the last run that wrote each name), so judging
costs time proportional to the notebook, never to the length of the history.

The rules (every finding names the variables and the other cells):

For the latest run ``e`` of each current cell ``c`` and each name ``n`` it read, let ``W``
be the run that had last written ``n`` when ``e`` started, and ``R`` the nearest cell
above ``c`` whose current source writes ``n`` (binds, deletes or mutates it):

- ``undefined_name``: ``e`` raised NameError.
- ``hidden_state``: ``W``'s cell was deleted, or its current source no longer writes
  ``n``; or no tracked run wrote ``n`` and no current cell writes it (a console). When a
  cell does write it but no tracked run did (set before ``%track on``), there is no
  verdict, and the summary says the state cannot be vouched for.
- ``stale``: a run after ``e`` wrote ``n`` again; or ``W``'s cell is itself flagged
  (transitively: stale through that cell). The finding is *information* when ``n`` is a
  variable (a file outlives the kernel) and no run that wrote ``n`` after ``e`` can change
  what a top-to-bottom run feeds ``c``: each came from a cell *below* ``c`` (a clean run
  runs ``c`` first), or from a cell above ``R`` while ``c`` read ``n`` from ``R``'s run
  (a clean run takes ``n`` from ``R``, which did not run again; had its own inputs
  changed, ``R`` would be flagged and ``c`` stale through it). ``c`` then shows what it
  would show in a clean run; only re-running ``c`` alone would differ (scenarios 2,
  12-14, 16 keep their ``stale``, at that level). Staleness through such a cell is
  information too.
- ``out_of_order``: ``W`` is a cell below ``c``; or ``c``'s own earlier run (a cell re-run
  on its own result); or a cell ``R`` between ``W``'s cell and ``c`` also writes ``n`` and
  did not run between them — in each case a top-to-bottom run gives ``c`` another value.
- ``edited``: ``c``'s source differs from what last ran.
- ``never_run``: a code cell that never ran, between cells that did.
- ``multiple_definitions``: a name bound in several current cells and read by another one;
  reported on each binding cell.

The notebook-level :class:`Summary` says whether the kernel's state equals what a clean
top-to-bottom run would give: no findings other than information
(``multiple_definitions``, see :data:`~jupyter_repro.verdicts.INFORMATION`), every
current cell ran without error, each name's last writer is the last cell in notebook
order that writes it, and no runtime evidence was cut short by its budget (names past it
are *unverified*, never silently trusted). Whenever a shown output may be stale, a
finding stands, so the summary is not consistent.
"""

from __future__ import annotations

import bisect
import os
import re
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from hashlib import sha1
from typing import Any

from ..analysis import analyze_cell, possibly_mutated
from ..verdicts import Finding, Verdict
from .files import FILE_PREFIX
from .record import ExecutionEvent


def source_hash(source: str) -> str:
    """The hash the record and the protocol use to compare sources (sha1, hex)."""
    return sha1(source.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class NotebookCell:
    """One code cell of the notebook as it is now.

    Attributes:
        id: nbformat cell id (or the content-hash id the record used).
        index: 0-based position among all the notebook's cells (markdown included).
        source: current source, or None when unknown (then taken as what last ran).
        placed: False for a cell that ran but is not in the order's source yet (added
            since the last save, say): it is listed at the end, and no verdict that
            depends on its position ("below", "between") is drawn from it.
    """

    id: str
    index: int
    source: str | None = None
    placed: bool = True


@dataclass(frozen=True)
class NotebookOrder:
    """The notebook's current code cells, top to bottom, and where that order came from."""

    cells: tuple[NotebookCell, ...]
    source: str = "execution_order"


class TrackState:
    """Everything the verdicts need, folded from execution events in O(1) per event."""

    def __init__(self) -> None:
        self.events: dict[int, ExecutionEvent] = {}
        self.latest: dict[str, ExecutionEvent] = {}
        self.first_seq: dict[str, int] = {}
        self.last_write: dict[str, int] = {}
        # name -> {cell id: seq of that cell's last run that wrote it}, in seq order: what
        # "changed after this cell ran" asks, bounded by the notebook, not the history
        self.write_log: dict[str, dict[str, int]] = {}
        self.function_reads: dict[str, frozenset[str]] = {}
        self.function_mutates: dict[str, frozenset[int]] = {}
        self.function_global_writes: dict[str, frozenset[str]] = {}
        self.readers: dict[str, set[str]] = {}  # name -> cells whose latest run read it
        # (cell id, source hash) -> everything runs of that code wrote, seen at runtime
        self.code_writes: dict[tuple[str, str], frozenset[str]] = {}
        # names bound to modules now: a module's functions (np.append) do not change it
        self.modules: frozenset[str] = frozenset()
        # the working folder literal paths are resolved against (as the tracker does)
        self.cwd = ""
        self.next_seq = 1
        self._prune_at = 1000

    def apply(self, event: ExecutionEvent) -> None:
        """Fold one finished run into the state (events must come in ``seq`` order)."""
        self.events[event.seq] = event
        previous = self.latest.get(event.cell_id)
        if previous is not None:
            for name in previous.reads:
                self.readers.get(name, set()).discard(event.cell_id)
        for name in event.reads:
            self.readers.setdefault(name, set()).add(event.cell_id)
        self.latest[event.cell_id] = event
        key = (event.cell_id, event.source_hash)
        self.code_writes[key] = self.code_writes.get(key, frozenset()).union(event.writes)
        self.first_seq.setdefault(event.cell_id, event.seq)
        for name in event.writes:
            self.last_write[name] = event.seq
            writers = self.write_log.setdefault(name, {})
            writers.pop(event.cell_id, None)  # re-inserted last: the dict stays in seq order
            writers[event.cell_id] = event.seq
        self.next_seq = max(self.next_seq, event.seq + 1)
        if len(self.events) > self._prune_at:
            self._prune()

    def _prune(self) -> None:
        """Forget runs no verdict can refer to any more, so memory stays proportional to
        the notebook, not to the history (amortised O(1) per run). The record file keeps
        them all."""
        keep = set(self.last_write.values())
        for event in self.latest.values():
            keep.add(event.seq)
            keep.update(s for s in event.seen.values() if s is not None)
        self.events = {seq: e for seq, e in self.events.items() if seq in keep}
        self._prune_at = max(2 * len(self.events), 1000)

    @classmethod
    def from_events(cls, events: Iterable[ExecutionEvent]) -> TrackState:
        """A state from a record's events (e.g. read back with ``read_executions``)."""
        state = cls()
        for event in events:
            state.apply(event)
        return state


@dataclass(frozen=True)
class Summary:
    """Does the kernel state equal a clean top-to-bottom run, and if not, why."""

    consistent: bool
    reasons: tuple[str, ...] = ()
    order_source: str = "execution_order"
    cells: int = 0
    executed: int = 0

    def to_json(self) -> dict[str, Any]:
        """As in ``%track report --json`` and the protocol's ``report`` message."""
        return {
            "consistent": self.consistent,
            "reasons": list(self.reasons),
            "order_source": self.order_source,
            "cells": self.cells,
            "executed": self.executed,
        }


@dataclass(frozen=True)
class TrackReport:
    """The verdicts on a notebook: findings per cell plus the notebook-level summary."""

    findings: tuple[Finding, ...]
    summary: Summary
    order: NotebookOrder
    latest: Mapping[str, ExecutionEvent] = field(default_factory=dict)

    def for_cell(self, cell_id: str) -> list[Finding]:
        """The findings on one cell."""
        return [f for f in self.findings if f.cell_id == cell_id]

    def to_json(self) -> dict[str, Any]:
        """The JSON form shared by ``%track report --json`` and the comm ``report``."""
        cells = []
        for cell in self.order.cells:
            event = self.latest.get(cell.id)
            cells.append(
                {
                    "cell_id": cell.id,
                    "index": cell.index,
                    "execution_count": event.execution_count if event else None,
                    "last_run_seq": event.seq if event else None,
                    "raised": event.error if event else None,
                    "placed": cell.placed,
                    "verdicts": sorted({f.verdict.value for f in self.for_cell(cell.id)}),
                    "flagged": sorted(
                        {f.verdict.value for f in self.for_cell(cell.id) if not f.information}
                    ),
                }
            )
        return {
            "summary": self.summary.to_json(),
            "cells": cells,
            "findings": [f.to_json() for f in self.findings],
        }


@lru_cache(maxsize=4096)
def static_effects(
    source: str, cwd: str = ""
) -> tuple[frozenset[str], frozenset[str], frozenset[str]]:
    """(writes, binds, reads) of a source: what a run of it would write, bind and read.

    ``writes`` covers bindings, deletions, in-place mutations and written files
    (``file:<path>``, literal paths resolved against ``cwd`` as the tracker records
    them); ``binds`` only bindings (for ``multiple_definitions``).
    """
    a = analyze_cell(source)
    files_w = {FILE_PREFIX + os.path.normpath(os.path.join(cwd, p)) for p in a.file_writes}
    files_r = {FILE_PREFIX + os.path.normpath(os.path.join(cwd, p)) for p in a.file_reads}
    binds = frozenset(a.defines - a.imports)
    reads = frozenset(a.reads | a.deletes_existing | files_r)
    return frozenset(a.defines | a.deletes | possibly_mutated(a) | files_w), binds, reads


@lru_cache(maxsize=4096)
def _mutation_only(source: str) -> frozenset[str]:
    """Names the source writes only by changing them in place (``np.append(a, 1)``
    "mutates" ``np`` to the analysis), not by binding or deleting them."""
    a = analyze_cell(source)
    return frozenset(possibly_mutated(a) - a.defines - a.deletes)


@lru_cache(maxsize=4096)
def _effective_writes(
    source: str, runtime: frozenset[str], modules: frozenset[str], cwd: str = ""
) -> frozenset[str]:
    writes = static_effects(source, cwd)[0]
    if modules:  # calling a module's function (np.append, os.remove) changes no binding
        writes = writes - (_mutation_only(source) & modules)
    return writes.union(runtime) if runtime else writes


class _Shown:
    """A ``file:`` name as a message shows it, made only when formatted (see
    :meth:`_Judge.file_label`)."""

    __slots__ = ("judge", "name")

    def __init__(self, judge: _Judge, name: str) -> None:
        self.judge, self.name = judge, name

    def __format__(self, spec: str) -> str:
        return f"file `{self.judge.file_label(self.name)}`"


class _Judge:
    """One judging pass. Indexes over all cells are built only when a rule needs them, so
    judging one cell (:func:`judge_cell`, for the notices) stays cheap."""

    def __init__(self, state: TrackState, order: NotebookOrder) -> None:
        self.state = state
        self.order = order
        self.pos = {cell.id: i for i, cell in enumerate(order.cells)}
        self._effects: dict[int, tuple[str, frozenset[str]]] = {}
        self._writers: dict[str, list[int]] | None = None
        self.findings: list[Finding] = []
        self.flagged: set[str] = set()  # cells with stale / out_of_order / hidden_state
        self.noted: set[str] = set()  # cells whose only such finding is information
        self.untracked: set[str] = set()  # read, set by some cell, but not by a tracked run

    def _cell(self, i: int) -> tuple[str, frozenset[str]]:
        """(current source, names runs of that very code were seen to write) at ``i``.

        The runtime writes (aliases, sizes changed through calls, star imports) count as
        the cell's own effect only while its code is what ran. Computed on first use.
        """
        found = self._effects.get(i)
        if found is None:
            cell = self.order.cells[i]
            event = self.state.latest.get(cell.id)
            src = cell.source if cell.source is not None else event.source if event else ""
            runtime: frozenset[str] = frozenset()
            if event is not None and (cell.source is None or src == event.source):
                runtime = self.state.code_writes.get((cell.id, event.source_hash), runtime)
            found = self._effects[i] = (src, runtime)
        return found

    def source(self, i: int) -> str:
        """The current source of the cell at position ``i`` (what last ran, if unknown)."""
        return self._cell(i)[0]

    def cell_writes(self, i: int) -> frozenset[str]:
        """What the cell at position ``i`` writes: its current source plus runtime effects."""
        return _effective_writes(*self._cell(i), self.state.modules, self.state.cwd)

    @property
    def writers(self) -> dict[str, list[int]]:
        """name -> positions of the cells that write it, top to bottom (built once)."""
        if self._writers is None:
            self._writers = {}
            for i in range(len(self.order.cells)):
                for n in self.cell_writes(i):
                    self._writers.setdefault(n, []).append(i)
        return self._writers

    # -- helpers -------------------------------------------------------------------------
    def label(self, cell_id: str) -> str:
        i = self.pos.get(cell_id)
        event = self.state.latest.get(cell_id)
        count = f" (In [{event.execution_count}])" if event and event.execution_count else ""
        if i is None:
            return f"a deleted cell{count}"
        if not self.order.cells[i].placed:
            return f"a new cell{count}"
        return f"cell #{self.order.cells[i].index + 1}{count}"

    def file_label(self, name: str) -> str:
        """A ``file:`` name as the user wrote it: relative to the working folder."""
        path = name[len(FILE_PREFIX) :]
        cwd = self.state.cwd
        if cwd and path.startswith(os.path.join(cwd, "")):
            rel = path[len(cwd) + 1 :]
            return rel or "."
        return path

    def index_of(self, cell_id: str) -> tuple[int, ...]:
        i = self.pos.get(cell_id)
        return () if i is None else (self.order.cells[i].index,)

    def writes_now(self, cell_id: str, name: str) -> bool:
        """Whether the cell's code as it is now writes ``name`` (False for deleted cells)."""
        i = self.pos.get(cell_id)
        return i is not None and name in self.cell_writes(i)

    def reaching(self, i: int, name: str) -> int | None:
        """Position of the nearest cell above position ``i`` whose source writes ``name``."""
        if self._writers is None and i < 64:  # a short scan beats building the index
            for j in range(i - 1, -1, -1):
                if name in self.cell_writes(j):
                    return j
            return None
        ws = self.writers.get(name)
        if not ws:
            return None
        k = bisect.bisect_left(ws, i)
        return ws[k - 1] if k else None

    def add(self, verdict: Verdict, i: int, message: str, names: Iterable[str] = (),
            related: Iterable[str] = (), information: bool = False) -> None:  # fmt: skip
        cell = self.order.cells[i]
        rel: list[int] = []
        for cid in related:
            rel.extend(self.index_of(cid))
        related_cells = tuple(sorted(set(rel)))
        self.findings.append(
            Finding(verdict, cell.index, message, cell.id, tuple(names), related_cells, information)
        )
        if verdict in (Verdict.STALE, Verdict.OUT_OF_ORDER, Verdict.HIDDEN_STATE):
            (self.noted if information else self.flagged).add(cell.id)

    # -- rules ---------------------------------------------------------------------------
    def run(self) -> TrackReport:
        cells = self.order.cells
        latest = self.state.latest
        _ = self.writers  # judging every cell: one index beats a scan per read
        executed = [i for i, c in enumerate(cells) if c.id in latest and c.placed]
        for i, cell in enumerate(cells):
            event = latest.get(cell.id)
            if event is None:
                if executed and executed[0] < i < executed[-1] and _runs_code(self.source(i)):
                    self.add(Verdict.NEVER_RUN, i, "never ran, but cells above and below it did")
                continue
            self.check_cell(i, event)
        self.propagate()
        self.multiple_definitions()
        return TrackReport(tuple(self.findings), self.summary(), self.order, dict(latest))

    def check_cell(self, i: int, event: ExecutionEvent) -> None:
        """The verdicts on one executed cell that need no other cell's verdicts."""
        if self.order.cells[i].source is not None and self.source(i) != event.source:
            self.add(Verdict.EDITED, i, "source differs from what last ran; re-run it")
        if event.missing_name:
            setters = [p for p in self.writers.get(event.missing_name, ()) if p != i]
            hint = (
                f"; {self.label(self.order.cells[setters[0]].id)} sets it: run that first"
                if setters
                else "; no cell in the notebook sets it"
            )
            self.add(
                Verdict.UNDEFINED_NAME, i,
                f"raised NameError: `{event.missing_name}` is not defined{hint}",
                [event.missing_name], [self.order.cells[p].id for p in setters],
            )  # fmt: skip
        self.check_reads(i, event)

    def check_reads(self, i: int, e: ExecutionEvent) -> None:
        me = self.order.cells[i].id
        for name in e.reads:  # kept sorted by the tracker
            if name == e.missing_name:
                continue
            is_file = name.startswith(FILE_PREFIX)
            # the label only when a finding names it: a cell may read thousands of files
            shown = _Shown(self, name) if is_file else f"`{name}`"
            w_seq = e.seen.get(name)
            last = self.state.last_write.get(name)
            if last is not None and last > e.seq:
                self.check_changed_after(i, e, name)
            if w_seq is None:  # no tracked run set it: before %track on, or a console
                if is_file or e.error:
                    continue
                if self.writers.get(name):  # a cell sets it, but which run set it is unknown
                    self.untracked.add(name)
                    continue
                self.add(
                    Verdict.HIDDEN_STATE, i,
                    f"reads {shown}, which no cell in the notebook sets (it was set outside "
                    "the notebook, or by code deleted before %track on)",
                    [name],
                )  # fmt: skip
                continue
            w = self.state.events[w_seq]
            if not self.writes_now(w.cell_id, name) and w.cell_id != me:
                why = "" if w.cell_id not in self.pos else ", edited since so it no longer sets it"
                self.add(
                    Verdict.HIDDEN_STATE, i,
                    f"reads {shown} from {self.label(w.cell_id)}{why}: no code in the "
                    "notebook sets it now",
                    [name], [w.cell_id],
                )  # fmt: skip
                continue
            if w.cell_id == me:
                self.add(
                    Verdict.OUT_OF_ORDER, i,
                    f"re-ran on {shown} as its own earlier run left it; a top-to-bottom run "
                    "runs it once",
                    [name],
                )  # fmt: skip
                continue
            w_pos = self.pos.get(w.cell_id)
            if not self.order.cells[i].placed or (
                w_pos is not None and not self.order.cells[w_pos].placed
            ):
                continue  # where a new cell sits is unknown: no "below" or "between"
            r = self.reaching(i, name)
            if w_pos is not None and w_pos > i:
                tail = (
                    " — a top-to-bottom run would fail here"
                    if r is None and not is_file
                    else f"; a top-to-bottom run takes it from {self.label(self.order.cells[r].id)}"
                    if r is not None
                    else ""
                )
                self.add(
                    Verdict.OUT_OF_ORDER, i,
                    f"reads {shown} from {self.label(w.cell_id)} below{tail}",
                    [name], [w.cell_id],
                )  # fmt: skip
                continue
            if r is not None and w_pos is not None and w_pos < r:
                r_id = self.order.cells[r].id
                r_event = self.state.latest.get(r_id)
                if r_event is not None and r_event.seq > e.seq:
                    continue  # it ran after this cell: reported as stale if it changed it
                if r_event is None or r_event.seq < w.seq:
                    self.add(
                        Verdict.OUT_OF_ORDER, i,
                        f"reads {shown} from {self.label(w.cell_id)}, but "
                        f"{self.label(r_id)} between them also sets it"
                        + (" and has not run" if r_event is None else " and ran earlier"),
                        [name], [w.cell_id, r_id],
                    )  # fmt: skip

    def check_changed_after(self, i: int, e: ExecutionEvent, name: str) -> None:
        """``stale``: runs after ``e`` wrote ``name``. Information when none of them can
        change what a top-to-bottom run feeds this cell (see the rules in the module
        docs): every one came from a placed cell below position ``i``, or above the cell
        ``R`` that a top-to-bottom run takes ``name`` from — and this cell read it from
        ``R``'s run, which has not run again since; and ``name`` is not a file."""
        is_file = name.startswith(FILE_PREFIX)
        shown = _Shown(self, name) if is_file else f"`{name}`"  # a file's label made lazily
        later = [cid for cid, seq in self.state.write_log.get(name, {}).items() if seq > e.seq] or [
            self.state.events[self.state.last_write[name]].cell_id
        ]
        last = later[-1]
        cells = self.order.cells
        if not is_file and cells[i].placed:
            r = self.reaching(i, name)
            w_seq = e.seen.get(name)
            # c read n from R's own run. Not when R ran without counting as a write (an
            # equal value, a branch not taken): R's value may depend on what changed, and
            # nothing links c to R for staleness to pass through
            from_r = (
                r is not None
                and cells[r].placed
                and w_seq is not None
                and self.state.events[w_seq].cell_id == cells[r].id
            )
            positions = [self.pos.get(cid) for cid in later]
            if all(p is not None and cells[p].placed for p in positions):
                if all(p > i for p in positions):  # type: ignore[operator]
                    self.add(
                        Verdict.STALE, i,
                        f"reads {shown}, changed afterwards by {self.label(last)} below; a "
                        "top-to-bottom run also runs this cell first, so its output stands, "
                        "but re-running it alone would not give it",
                        [name], dict.fromkeys(later), information=True,
                    )  # fmt: skip
                    return
                if from_r and all(p > i or p < r for p in positions):  # type: ignore[operator]
                    self.add(
                        Verdict.STALE, i,
                        f"reads {shown}, changed afterwards by {self.label(last)}; a "
                        f"top-to-bottom run takes it from {self.label(cells[r].id)}, as this "
                        "cell did, so its output stands, but re-running it alone would not "
                        "give it",
                        [name], dict.fromkeys(later), information=True,
                    )  # fmt: skip
                    return
        self.add(
            Verdict.STALE, i,
            f"reads {shown}, changed by {self.label(last)} after this cell ran",
            [name], dict.fromkeys(later),
        )  # fmt: skip

    def propagate(self) -> None:
        """Stale through a flagged cell: reading a value a flagged cell produced.

        A worklist over "who read from whom" (from each latest run's ``seen``), so each
        read is looked at once however long the chains are; a cell gets one such finding,
        naming one flagged cell it read from.
        """
        cells = self.order.cells
        latest = self.state.latest
        readers: dict[str, list[tuple[int, str]]] = {}  # writer cell -> (reader pos, name)
        for i, cell in enumerate(cells):
            e = latest.get(cell.id)
            if e is None or cell.id in self.flagged:
                continue
            for name in e.reads:  # kept sorted by the tracker
                w_seq = e.seen.get(name)
                if w_seq is not None:
                    w_cell = self.state.events[w_seq].cell_id
                    if w_cell != cell.id:
                        readers.setdefault(w_cell, []).append((i, name))
        # first what is flagged, then what is only information (a reader of a cell whose
        # value a cell below changed shows what a top-to-bottom run shows, too)
        for information in (False, True):
            done = self.flagged | self.noted if information else self.flagged
            sources = self.noted - self.flagged if information else self.flagged
            pending = deque(c.id for c in cells if c.id in sources and c.id in readers)
            while pending:  # breadth first, from the top: the same input, the same report
                w_cell = pending.popleft()
                for i, name in readers.get(w_cell, ()):
                    reader = cells[i].id
                    if reader in done:
                        continue
                    self.add(
                        Verdict.STALE, i,
                        f"reads `{name}` from {self.label(w_cell)}, which is itself "
                        + ("stale from a cell below (information)" if information else "flagged"),
                        [name], [w_cell], information=information,
                    )  # fmt: skip
                    done.add(reader)
                    pending.append(reader)

    def multiple_definitions(self) -> None:
        cells = self.order.cells
        binders: dict[str, list[int]] = {}
        readers_of: dict[str, list[int]] = {}
        for i in range(len(cells)):
            _, binds, reads = static_effects(self.source(i), self.state.cwd)
            for n in binds:
                binders.setdefault(n, []).append(i)
            for n in reads:
                readers_of.setdefault(n, []).append(i)
        for name, positions in sorted(binders.items()):
            if len(positions) < 2 or name.startswith(FILE_PREFIX):
                continue
            readers = [p for p in readers_of.get(name, ()) if p not in positions]
            if not readers:
                continue
            others = [cells[p].id for p in positions] + [cells[p].id for p in readers]
            where = ", ".join(self.label(cells[p].id) for p in positions)
            for p in positions:
                self.add(
                    Verdict.MULTIPLE_DEFINITIONS, p,
                    f"`{name}` is set in {where} and read in "
                    f"{', '.join(self.label(cells[q].id) for q in readers)}: "
                    "its value depends on which ran last",
                    [name], [c for c in others if c != cells[p].id],
                )  # fmt: skip

    def summary(self) -> Summary:
        cells = self.order.cells
        latest = self.state.latest
        reasons: list[str] = []
        serious = [f for f in self.findings if not f.information]
        if serious:
            kinds = sorted({f.verdict.value for f in serious})
            reasons.append(
                f"{len({f.cell_id for f in serious})} cell(s) flagged: {', '.join(kinds)}"
            )
        not_run = [
            c for i, c in enumerate(cells) if c.id not in latest and _runs_code(self.source(i))
        ]
        if not_run:
            reasons.append(
                f"{len(not_run)} cell(s) never ran: "
                + ", ".join(self.label(c.id) for c in not_run[:5])
            )
        for cell in cells:
            e = latest.get(cell.id)
            if e is not None and e.error:
                reasons.append(f"{self.label(cell.id)} raised {e.error.split(':')[0]}")
        if self.untracked:
            names = ", ".join(f"`{n}`" for n in sorted(self.untracked)[:5])
            reasons.append(
                f"{names} {'was' if len(self.untracked) == 1 else 'were'} set before %track on: "
                "re-run the cells that set them to know where they come from"
            )
        unverified = [
            (cell.id, n) for cell in cells if cell.id in latest for n in latest[cell.id].unverified
        ]
        if unverified:
            names = ", ".join(sorted({f"`{n}`" for _, n in unverified})[:5])
            where = ", ".join(dict.fromkeys(self.label(cid) for cid, _ in unverified))
            reasons.append(
                f"unverified: runtime evidence for {names} in {where} was past the per-cell "
                "budget, so a change seen only through another name may be missed"
            )
        unplaced = [c for c in cells if not c.placed]
        if unplaced:
            reasons.append(
                f"{len(unplaced)} cell(s) ran that the {self.order.source} order does not have "
                "yet (new since the last save?): their place is unknown"
            )
        for name, seq in sorted(self.state.last_write.items()):
            if name.startswith(FILE_PREFIX):
                continue
            w = self.state.events[seq]
            ws = self.writers.get(name)
            if not ws or not self.writes_now(w.cell_id, name):
                reasons.append(
                    f"`{name}` was set by {self.label(w.cell_id)}, code no longer in the notebook"
                )
                continue
            last_id = cells[ws[-1]].id
            if last_id != w.cell_id and cells[ws[-1]].placed:
                r_event = latest.get(last_id)
                if r_event is None or r_event.seq < seq:
                    reasons.append(
                        f"`{name}` comes from {self.label(w.cell_id)}; a top-to-bottom run "
                        f"takes it from {self.label(last_id)}"
                    )
        return Summary(
            consistent=not reasons,
            reasons=tuple(reasons),
            order_source=self.order.source,
            cells=len(cells),
            executed=sum(1 for c in cells if c.id in latest),
        )


#: A line of a cell that only controls %track (never recorded, so never "run" for it).
_CONTROL_LINE = re.compile(
    r"\s*(?:$|#|%track\b|%(?:re)?load_ext\s+jupyter_repro\s*$|%unload_ext\s+jupyter_repro\s*$)"
)


@lru_cache(maxsize=4096)
def _runs_code(source: str) -> bool:
    """Whether a cell has code a top-to-bottom run must run: not blank, and not only
    ``%track`` / ``%load_ext jupyter_repro`` lines (which ``%track`` does not record, so
    the cell that turns it on or asks for the report is never "not run")."""
    return any(not _CONTROL_LINE.match(line) for line in source.splitlines())


def judge(state: TrackState, order: NotebookOrder) -> TrackReport:
    """Verdicts for every current cell, and the notebook summary (see the module docs)."""
    return _Judge(state, order).run()


def judge_cell(state: TrackState, order: NotebookOrder, cell_id: str) -> list[Finding]:
    """The direct verdicts on one cell (no transitive staleness, no notebook-wide
    ``multiple_definitions``): what a notice under that cell needs, in time proportional
    to what the cell read rather than to the notebook."""
    j = _Judge(state, order)
    i = j.pos.get(cell_id)
    event = state.latest.get(cell_id)
    if i is not None and event is not None:
        j.check_cell(i, event)
    return j.findings


def made_stale(
    state: TrackState, order: NotebookOrder, event: ExecutionEvent
) -> list[NotebookCell]:
    """The cells whose latest run read something ``event`` wrote afterwards and whose
    ``stale`` is not information: the cells this run has just made stale, in notebook
    order. Candidates come from the readers index (time proportional to what the run
    wrote); each is judged by the same rule as the report (:meth:`_Judge.
    check_changed_after`): a reader above the cell that ran, or one that a cell between
    them feeds, shows what a top-to-bottom run shows, unless it read a file."""
    ids: set[str] = set()
    for name in event.writes:
        for cid in state.readers.get(name, ()):
            if cid != event.cell_id and state.latest[cid].seq < event.seq:
                ids.add(cid)
    if not ids:
        return []
    judge = _Judge(state, order)
    flagged: set[str] = set()
    for cid in ids:
        i = judge.pos.get(cid)
        if i is None:
            continue
        reader = state.latest[cid]
        for name in sorted(set(event.writes).intersection(reader.reads)):
            judge.findings.clear()
            judge.check_changed_after(i, reader, name)
            if any(not f.information for f in judge.findings):
                flagged.add(cid)
                break
    return [cell for cell in order.cells if cell.id in flagged]


def execution_order(state: TrackState) -> NotebookOrder:
    """The fallback order when nothing better exists: cells by their first run."""
    ids = sorted(state.first_seq, key=state.first_seq.__getitem__)
    return NotebookOrder(tuple(NotebookCell(cid, i, None) for i, cid in enumerate(ids)))
