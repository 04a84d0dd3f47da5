"""The tracking core: what happens before and after each tracked cell, on a plain dict.

No IPython import: :mod:`.magic` calls :meth:`Tracker.before` from ``pre_run_cell`` and
:meth:`Tracker.after` from ``post_run_cell``; tests and the property test call them around
a plain ``exec``. The per-cell work is one cached static analysis, a dictionary lookup per
name the cell touches (identity and size before/after: the cheap runtime check), one
JSONL append, and nothing per statement, so loops inside a cell run at full speed.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from ..analysis import CellAnalysis, analyze_cell, resolve_calls
from .judge import FILE_PREFIX, TrackState, possibly_mutated, source_hash
from .record import ExecutionEvent, RecordWriter

_MISSING = object()

_SIZED = (list, dict, set, bytearray)
#: ``len`` of the builtin containers: a subclass that keeps it (``defaultdict``,
#: ``Counter``, ``OrderedDict``, most user subclasses) is sized the same cheap way
_BUILTIN_LENS = frozenset(t.__len__ for t in _SIZED)
_SHAPED_MODULES = ("numpy", "pandas")


def _size(value: Any) -> Any:
    """A cheap fingerprint of a container's size, or None when not cheap to get.

    Builtin containers and their subclasses that do not override ``__len__`` (``len``),
    and numpy/pandas objects (``shape``): calling an overridden ``__len__`` could run user
    code with side effects.
    """
    kind = type(value)
    if kind in _SIZED:
        return len(value)
    if issubclass(kind, _SIZED) and kind.__len__ in _BUILTIN_LENS:  # type only: no user code
        return len(value)
    if kind.__module__.startswith(_SHAPED_MODULES):
        return getattr(value, "shape", None)
    return None


def content_cell_id(source: str) -> str:
    """The fallback cell id when the frontend sent none: a hash of the source."""
    return "sha1:" + source_hash(source)[:16]


@dataclass
class _Pending:
    event: ExecutionEvent
    analysis: CellAnalysis
    watched: dict[str, Any]
    sizes: dict[str, Any]
    t0: float


class Tracker:
    """Builds one :class:`ExecutionEvent` per tracked run and folds it into the state.

    Attributes:
        state: the :class:`TrackState` the verdicts are computed from.
        writer: where events are persisted (None: memory only).
        session_id: written with every event, to tell sessions apart in a shared file.
        aliases: names known to be bound to the same object (``b = a``), both ways.
    """

    def __init__(self, writer: RecordWriter | None = None, session_id: str = "") -> None:
        self.state = TrackState()
        self.writer = writer
        self.session_id = session_id
        self.aliases: dict[str, set[str]] = {}
        self._pending: _Pending | None = None

    def before(
        self,
        source: str,
        namespace: Mapping[str, Any],
        cell_id: str | None = None,
        execution_count: int | None = None,
        cell_id_source: str | None = None,
    ) -> None:
        """Call just before a cell runs, with its raw source (magics included).

        ``cell_id_source`` says where a given ``cell_id`` came from (default
        ``"frontend"``); without a ``cell_id`` the run gets a content-hash id.
        """
        analysis = analyze_cell(source)
        state = self.state
        reads = set(analysis.reads) | analysis.deletes_existing
        if analysis.calls:  # globals read by the notebook functions it calls, transitively
            reads.update(resolve_calls(analysis, state.function_reads))
        # `np.append(a, 1)`, `os.remove(p)`, `np.random.seed(0)`: the analysis sees a
        # mutator called on a name; when that name is a module, no binding changes
        mutates = {
            n for n in possibly_mutated(analysis) if not isinstance(namespace.get(n), ModuleType)
        }
        for fn, position, arg in analysis.call_args:  # notebook functions (see analysis)
            if position in analysis.function_mutates.get(fn, state.function_mutates.get(fn, ())):
                mutates.add(arg)
        names = reads | analysis.defines | analysis.deletes | mutates
        for fn in analysis.calls:  # `def g(): global k; k = 2` then `g()` rebinds k
            names |= analysis.function_global_writes.get(
                fn, state.function_global_writes.get(fn, set())
            )
        if analysis.star_import:
            # `from m import *`, `%run`: the names it binds cannot be known statically, so
            # this (rare) cell pays for watching the whole namespace
            watched = {n: v for n, v in namespace.items() if not n.startswith("_")}
            watched.update((n, namespace.get(n, _MISSING)) for n in names)
        else:
            watched = {n: namespace.get(n, _MISSING) for n in names}
        sizes = {}
        for n in reads | mutates:
            value = watched[n]
            if value is not _MISSING:
                size = _size(value)
                if size is not None:
                    sizes[n] = size
        reads.update(FILE_PREFIX + p for p in analysis.file_reads)
        event = ExecutionEvent(
            seq=state.next_seq,
            cell_id=cell_id or content_cell_id(source),
            cell_id_source=(cell_id_source or "frontend") if cell_id else "content_hash",
            execution_count=execution_count,
            started=time.time(),
            source=source,
            source_hash=source_hash(source),
            reads=sorted(reads),
            defines=sorted(analysis.defines),
            deletes=sorted(analysis.deletes),
            mutates=sorted(mutates),
            seen={n: state.last_write.get(n) for n in reads},
        )
        self._pending = _Pending(event, analysis, watched, sizes, time.perf_counter())

    def after(
        self,
        namespace: MutableMapping[str, Any],
        error: BaseException | None = None,
        execution_count: int | None = None,
    ) -> ExecutionEvent | None:
        """Call just after the cell ran; returns the finished event (None if no
        :meth:`before` preceded it, e.g. the cell that turned tracking on)."""
        pending, self._pending = self._pending, None
        if pending is None:
            return None
        event = pending.event
        event.duration = time.perf_counter() - pending.t0
        if execution_count is not None:
            event.execution_count = execution_count
        # A binding to the very same object (re-running an import or `x = 0`) is no change,
        # so readers do not turn stale; unless no tracked run has set the name yet, so that
        # the record learns where it comes from.
        last_write = self.state.last_write
        changed = {
            n
            for n, old in pending.watched.items()
            if namespace.get(n, _MISSING) is not old
            or (n in pending.analysis.defines and n not in last_write and old is not _MISSING)
        }
        if pending.analysis.star_import:  # names it bound that did not exist before
            changed.update(
                n for n in namespace if n not in pending.watched and not n.startswith("_")
            )
        resized = {
            n
            for n, size in pending.sizes.items()
            if n not in changed and _size(namespace.get(n, _MISSING)) != size
        }
        changed |= resized
        mutated = resized | set(event.mutates)
        writes = changed | mutated
        writes.update(FILE_PREFIX + p for p in pending.analysis.file_writes)
        self._follow_aliases(pending.analysis, namespace, mutated, writes)
        event.changed = sorted(changed)
        event.writes = sorted(writes)
        modules = self.state.modules
        is_module = {n for n in changed if isinstance(namespace.get(n), ModuleType)}
        if is_module - modules or (changed - is_module) & modules:
            self.state.modules = frozenset((modules - changed) | is_module)
        if error is not None:
            event.error = f"{type(error).__name__}: {error}"[:500]
            if isinstance(error, NameError):
                event.missing_name = getattr(error, "name", None)
        analysis = pending.analysis
        for fn in analysis.function_reads:
            if fn in changed:
                self.state.function_reads[fn] = analysis.function_reads[fn]
                self.state.function_mutates[fn] = analysis.function_mutates.get(fn, frozenset())
                self.state.function_global_writes[fn] = analysis.function_global_writes.get(
                    fn, frozenset()
                )
        self.state.apply(event)
        if self.writer is not None:
            self.writer.append({**event.to_json(), "session": self.session_id})
        return event

    def _follow_aliases(
        self,
        analysis: CellAnalysis,
        namespace: Mapping[str, Any],
        mutated: set[str],
        writes: set[str],
    ) -> None:
        """Record ``b = a`` aliases that really share an object, and count a mutation of
        one as a write of the others while they still do."""
        for target, src in analysis.aliases:
            value = namespace.get(target, _MISSING)
            if (
                value is not _MISSING
                and value is namespace.get(src, _MISSING)
                and _size(value) is not None
            ):
                self.aliases.setdefault(src, set()).add(target)
                self.aliases.setdefault(target, set()).add(src)
        if not self.aliases:
            return
        for name in mutated:
            others = self.aliases.get(name)
            if not others:
                continue
            value = namespace.get(name, _MISSING)
            for other in list(others):
                if namespace.get(other, _MISSING) is value:
                    writes.add(other)
                else:  # no longer the same object: forget the alias
                    others.discard(other)
                    self.aliases.get(other, set()).discard(name)
