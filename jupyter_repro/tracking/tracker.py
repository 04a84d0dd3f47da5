"""The tracking core: what happens before and after each tracked cell, on a plain dict.

No IPython import: :mod:`.magic` calls :meth:`Tracker.before` from ``pre_run_cell`` and
:meth:`Tracker.after` from ``post_run_cell``; tests and the property test call them around
a plain ``exec``. The per-cell work is one cached static analysis, a dictionary lookup per
name the cell touches (identity and size before/after: the cheap runtime check), one
JSONL append, and nothing per statement, so loops inside a cell run at full speed.
"""

from __future__ import annotations

import ast
import os
import sys
import time
from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from ..analysis import (
    CellAnalysis,
    ClassEffects,
    analyze_cell,
    method_changes_receiver,
    possibly_mutated,
    resolve_calls,
)
from . import evidence, files
from .files import FILE_PREFIX
from .judge import TrackState, source_hash
from .record import ExecutionEvent, RecordWriter

_MISSING = object()

_SIZED = (list, dict, set, bytearray)
#: ``len`` of the builtin containers: a subclass that keeps it (``defaultdict``,
#: ``Counter``, ``OrderedDict``, most user subclasses) is sized the same cheap way
_BUILTIN_LENS = frozenset(t.__len__ for t in _SIZED)
_SHAPED_MODULES = ("numpy", "pandas")
#: references to an old value while :meth:`Tracker._same_plain` looks at it: the pending
#: ``watched`` dict, the ``old`` argument, and ``sys.getrefcount``'s own
_OWN_REFS = 3


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


#: value types whose equality is exact and cheap (floats compared by ``repr``: 0.0 == -0.0)
_PLAIN = frozenset({int, str, bytes, bool, type(None), range})
_PLAIN_FLOATS = frozenset({float, complex})
_PLAIN_MAX = 32  # elements of a list, tuple or dict compared by value


def _plain_item(value: Any) -> Any:
    kind = type(value)
    if kind in _PLAIN:
        return (kind, value)
    if kind in _PLAIN_FLOATS:
        return (kind, repr(value))
    return _MISSING


def plain_snapshot(value: Any) -> Any:
    """A comparable copy of a small plain value (numbers, strings, and lists, tuples or
    dicts of at most :data:`_PLAIN_MAX` of them), or ``_MISSING`` for anything else.

    Two equal snapshots print alike: types are kept (``1`` is not ``True``) and floats
    compare by ``repr`` (``0.0`` is not ``-0.0``). Cost: O(elements), ≤ 32.
    """
    kind = type(value)
    if kind in _PLAIN or kind in _PLAIN_FLOATS:
        return _plain_item(value)
    if kind is list or kind is tuple:
        if len(value) > _PLAIN_MAX:
            return _MISSING
        items = tuple(_plain_item(v) for v in value)
    elif kind is dict:
        if len(value) > _PLAIN_MAX:
            return _MISSING
        items = tuple((_plain_item(k), _plain_item(v)) for k, v in value.items())
        if any(k is _MISSING or v is _MISSING for k, v in items):
            return _MISSING
        return (kind, items)
    else:
        return _MISSING
    return _MISSING if _MISSING in items else (kind, items)


def content_cell_id(source: str) -> str:
    """The fallback cell id when the frontend sent none: a hash of the source."""
    return "sha1:" + source_hash(source)[:16]


def absolute_files(paths: Iterable[str], cwd: str) -> set[str]:
    """``file:`` names for literal paths of the analysis, resolved against ``cwd`` the way
    the runtime record (:mod:`.files`) names them."""
    return {FILE_PREFIX + os.path.normpath(os.path.join(cwd, p)) for p in paths}


@dataclass
class _Pending:
    event: ExecutionEvent
    analysis: CellAnalysis
    watched: dict[str, Any]
    sizes: dict[str, Any]
    probes: dict[str, tuple[frozenset[int], tuple[Any, ...]]]
    budget: evidence.Budget
    unverified: set[str]
    plain: dict[str, Any]
    t0: float


class Tracker:
    """Builds one :class:`ExecutionEvent` per tracked run and folds it into the state.

    Attributes:
        state: the :class:`TrackState` the verdicts are computed from.
        writer: where events are persisted (None: memory only).
        session_id: written with every event, to tell sessions apart in a shared file.
        reach: the share index: for each name a tracked run wrote, the keys of the
            objects its value holds (:func:`.evidence.walk`).
        holders: the inverse of ``reach``: object key -> names holding it.
        classes: what the methods of the notebook's classes do to their receiver, by
            class object (from the analysis of the cell that defined the class).
        files: whether file and folder accesses are recorded through the audit hook
            (:mod:`.files`); off for trackers around a plain ``exec`` in tests that
            want only the static signals.
    """

    def __init__(
        self, writer: RecordWriter | None = None, session_id: str = "", files: bool = True
    ) -> None:
        self.state = TrackState()
        self.state.cwd = os.getcwd()
        self.writer = writer
        self.session_id = session_id
        self.reach: dict[str, frozenset[int]] = {}
        self.holders: dict[int, set[str]] = {}
        self.classes: dict[type, ClassEffects] = {}
        self.files = files
        self._pending: _Pending | None = None

    def before(
        self,
        source: str,
        namespace: Mapping[str, Any],
        cell_id: str | None = None,
        execution_count: int | None = None,
        cell_id_source: str | None = None,
        tree: ast.Module | None = None,
    ) -> None:
        """Call just before a cell runs, with its raw source (magics included).

        ``cell_id_source`` says where a given ``cell_id`` came from (default
        ``"frontend"``); without a ``cell_id`` the run gets a content-hash id. ``tree``:
        the syntax tree IPython parsed from ``source``, when known (saves a parse; see
        :func:`~jupyter_repro.analysis.analyze_cell`).
        """
        analysis = analyze_cell(source, tree=tree)
        state = self.state
        reads = set(analysis.reads) | analysis.deletes_existing
        if analysis.calls:  # globals read by the notebook functions it calls, transitively
            reads.update(resolve_calls(analysis, state.function_reads))
        # `np.append(a, 1)`, `os.remove(p)`, `np.random.seed(0)`: the analysis sees a
        # mutator called on a name; when that name is a module, no binding changes
        mutates = {
            n
            for n in possibly_mutated(analysis)
            if not issubclass(type(namespace.get(n)), ModuleType)
        }
        for fn, position, arg in analysis.call_args:  # notebook functions (see analysis)
            if position in analysis.function_mutates.get(fn, state.function_mutates.get(fn, ())):
                mutates.add(arg)
        # what to look at before and after the run (runtime evidence): the receivers of
        # methods nothing static decides, what is passed to calls, what the called
        # notebook functions read, and what the cell changes (to see through what)
        probe: set[str] = set()
        for root, method in analysis.method_call_names:
            if root in mutates:
                continue
            value = namespace.get(root, _MISSING)
            if value is _MISSING or evidence.is_atom(value):
                continue
            changes = (
                method_changes_receiver(type(value).__mro__, method, self.classes)
                if self.classes
                else None
            )
            if changes:
                mutates.add(root)
            elif changes is None:
                probe.add(root)
        probe.update(arg for _fn, _pos, arg in analysis.call_args)
        probe.update(arg for _fn, _pos, arg in analysis.method_call_args)
        if analysis.calls:
            probe.update(reads - analysis.reads)
        probe |= mutates
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
        budget = evidence.Budget()
        probes: dict[str, tuple[frozenset[int], tuple[Any, ...]]] = {}
        unverified: set[str] = set()
        sizes = {}
        for n in reads | mutates:
            value = watched[n]
            if value is _MISSING:
                continue
            if n in probe and not evidence.is_atom(value):
                walked = evidence.walk(value, budget)
                if walked is None:
                    unverified.add(n)
                else:
                    probes[n] = walked
                    continue
            size = _size(value)
            if size is not None:
                sizes[n] = size
        # names the cell rebinds that hold a small plain value: a re-run binding an equal
        # value (`L = [2, 3, 5]` again) changes nothing a reader could see
        plain = {}
        for n in analysis.defines:
            if n in mutates or n not in state.last_write:
                continue
            value = watched.get(n, _MISSING)
            if value is not _MISSING:
                snap = plain_snapshot(value)
                if snap is not _MISSING:
                    plain[n] = snap
        cwd = os.getcwd()
        reads |= absolute_files(analysis.file_reads, cwd)
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
        self._pending = _Pending(
            event, analysis, watched, sizes, probes, budget, unverified, plain,
            time.perf_counter(),
        )  # fmt: skip
        if self.files:
            files.start()

    def cancel(self) -> None:
        """Forget a cell started by :meth:`before` whose :meth:`after` will not come
        (tracking turned off or unloaded inside the cell), and stop recording its files."""
        if self._pending is not None and self.files:
            files.stop()
        self._pending = None

    def after(
        self,
        namespace: MutableMapping[str, Any],
        error: BaseException | None = None,
        execution_count: int | None = None,
    ) -> ExecutionEvent | None:
        """Call just after the cell ran; returns the finished event (None if no
        :meth:`before` preceded it, e.g. the cell that turned tracking on)."""
        access = files.stop() if self.files else None
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
        for n, snap in pending.plain.items():
            if n in changed and self._same_plain(n, snap, pending.watched[n], namespace):
                changed.discard(n)
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
        budget = pending.budget
        touched: set[int] = set()  # keys of the objects this run changed in place
        for n, (_keys, before) in pending.probes.items():
            if n in changed:
                continue
            walked = evidence.walk(namespace.get(n, _MISSING), budget)
            if walked is None:
                pending.unverified.add(n)
            elif walked[1] != before:
                changed.add(n)
                resized.add(n)
                touched |= evidence.changed_objects(before, walked[1])
        mutated = resized | set(event.mutates)
        writes = changed | mutated
        self._shared(pending, namespace, mutated, touched, writes)
        cwd = access.cwd if access is not None else os.getcwd()
        writes |= absolute_files(pending.analysis.file_writes, cwd)
        if access is not None:
            new_reads = access.reads - set(event.reads)
            if new_reads:
                event.reads = sorted(set(event.reads) | new_reads)
                event.seen.update((n, last_write.get(n)) for n in new_reads)
            writes |= access.writes
        self._index(namespace, writes, budget, pending.unverified)
        event.changed = sorted(changed)
        event.writes = sorted(writes)
        event.unverified = sorted(pending.unverified)
        modules = self.state.modules
        is_module = {n for n in changed if issubclass(type(namespace.get(n)), ModuleType)}
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
        for name, effects in analysis.classes.items():
            klass = namespace.get(name)
            if issubclass(type(klass), type) and name in changed:
                self.classes[klass] = effects
        self.state.apply(event)
        if self.writer is not None:
            self.writer.append({**event.to_json(), "session": self.session_id})
        return event

    @staticmethod
    def _same_plain(name: str, snap: Any, old: Any, namespace: Mapping[str, Any]) -> bool:
        """Whether ``name`` was rebound to a value equal to ``snap`` (its plain value
        before the run) in a way no reader can tell apart: for a list or dict, the old
        object must be held by nothing else (its reference count: this tracker's two
        references and the call's), else an alias that followed it in a top-to-bottom run
        would now be split from it."""
        new = namespace.get(name, _MISSING)
        if new is _MISSING or plain_snapshot(new) != snap:
            return False
        if type(old) is list or type(old) is dict:
            return sys.getrefcount(old) <= _OWN_REFS
        return True

    def _shared(
        self,
        pending: _Pending,
        namespace: Mapping[str, Any],
        mutated: set[str],
        touched: set[int],
        writes: set[str],
    ) -> None:
        """Count as written every other name holding an object this run changed in place:
        the value of a mutated name (a numpy view's buffer), what it holds when the change
        went through it (``dup[0].append(3)``), and what a fingerprint saw move."""
        if not self.holders:
            return
        deep = pending.analysis.deep_mutates
        for n in mutated:
            value = namespace.get(n, _MISSING)
            if value is _MISSING:
                continue
            key = evidence.top_key(value)
            if key is not None:
                touched.add(key)
            if n in deep:
                walked = evidence.walk(value, pending.budget)
                if walked is None:
                    pending.unverified.add(n)
                else:
                    touched |= walked[0]
        if not touched:
            return
        candidates: set[str] = set()
        for key in touched:
            candidates |= self.holders.get(key, set())
        for other in candidates - writes:
            walked = evidence.walk(namespace.get(other, _MISSING), pending.budget)
            if walked is None:
                pending.unverified.add(other)
                writes.add(other)  # past the budget: take the index's word for it
            elif walked[0] & touched:
                writes.add(other)

    def _index(
        self,
        namespace: Mapping[str, Any],
        names: Iterable[str],
        budget: evidence.Budget,
        unverified: set[str],
    ) -> None:
        """Update the share index for the names this run wrote."""
        for n in names:
            if n.startswith(FILE_PREFIX):
                continue
            old = self.reach.pop(n, None)
            if old:
                for key in old:
                    holders = self.holders.get(key)
                    if holders is not None:
                        holders.discard(n)
                        if not holders:
                            del self.holders[key]
            value = namespace.get(n, _MISSING)
            if value is _MISSING or evidence.is_atom(value):
                continue
            walked = evidence.walk(value, budget)
            if walked is None:
                unverified.add(n)
                continue
            keys = walked[0]
            if keys:
                self.reach[n] = keys
                for key in keys:
                    self.holders.setdefault(key, set()).add(n)
