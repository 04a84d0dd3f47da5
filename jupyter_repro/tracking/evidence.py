"""Runtime evidence of what a cell changed: bounded fingerprints and shared objects.

The static analysis sees ``members.append(0)``; it cannot see that ``members`` is an
element of ``groups``, that ``row`` is a view of ``grid``, or that ``dup`` (a shallow
copy) holds the very lists ``base`` holds. This module looks at the values themselves,
cheaply and within a budget:

- :func:`walk` visits a value and what it holds, breadth first, to :data:`DEPTH` levels
  and at most :data:`PER_VALUE` objects, and returns the *keys* of the objects it holds
  (``id`` of each mutable object; for a numpy array the id of the buffer that owns its
  memory, following ``.base``, so that a view and its base are one value; for pandas the
  buffers of its blocks) and a *fingerprint*: each object's size (``len``, ``shape``,
  the number of attributes), the identities of what it holds (so ``xs[0] = 5`` or
  ``o.v = 2`` is seen whatever did it) and, for numpy arrays of at most :data:`HASHED_BYTES` bytes,
  a hash of their contents (so ``row[:] = 2`` on a small array is seen).
- Immutable atoms (numbers, strings, bytes, None, functions, classes, modules) are not
  keys: two names bound to ``1`` share nothing anyone can change.
- Only builtin containers are looked into through their C-level iteration (``list``,
  ``tuple``, ``dict``, ``deque`` and subclasses), other objects through their instance
  ``__dict__``: no user code (``__len__``, ``__iter__``, ``__getattr__``) ever runs.

The tracker (:mod:`.tracker`) keeps, for each name a tracked cell wrote, the keys it
holds (the *share index*); after a run, the objects the run changed (the values of the
names it mutated, what they hold when the change went through them, the objects whose
fingerprint moved) are looked up in the index, and every other name holding one of them
is counted as written too. Each cell gets :data:`CELL_BUDGET` object visits; names
past the budget are reported as *unverified* instead of being trusted.
"""

from __future__ import annotations

from collections import deque
from types import BuiltinFunctionType, FunctionType, MethodType, ModuleType
from typing import Any

#: How deep :func:`walk` looks: the value, what it holds, and what those hold.
DEPTH = 2
#: At most this many objects visited per value; of a container's items, the first and
#: the last :data:`ENDS` are visited (a loop variable is often bound to the last one).
PER_VALUE = 24
ENDS = 8
#: Object visits a cell may spend, before and after it together (≈0.3 ms on an idle
#: core; ``benchmarks/track_overhead.py`` prints what spending all of it costs); the
#: names past it are reported as unverified.
CELL_BUDGET = 240
#: numpy arrays up to this many bytes get a hash of their contents in the fingerprint.
HASHED_BYTES = 4096

_ATOMS = (
    int, float, complex, str, bytes, bool, type(None), range, type, frozenset,
    FunctionType, BuiltinFunctionType, MethodType, ModuleType,
)  # fmt: skip
_ATOM_TYPES = frozenset(_ATOMS)  # exact types: one set lookup for the common atoms


class Budget:
    """Object visits left for one cell (see :data:`CELL_BUDGET`)."""

    __slots__ = ("left",)

    def __init__(self, visits: int = CELL_BUDGET) -> None:
        self.left = visits


def is_atom(value: Any) -> bool:
    """Whether ``value`` can hold nothing that changes in place (no key, no walk).

    By ``type(value)``, never ``isinstance``: that looks ``__class__`` up through the
    object, which runs a user ``__getattribute__`` or ``__class__`` property."""
    return issubclass(type(value), _ATOMS)


def _owner(array: Any) -> Any:
    """The object owning a numpy array's memory: follow ``.base`` to its end."""
    base = array
    for _ in range(32):
        nxt = getattr(base, "base", None)
        if nxt is None:
            return base
        base = nxt
    return base


_LIBRARY: dict[type, str | None] = {}


def _numpy_like(kind: type) -> str | None:
    """ "numpy", "pandas" or None for a type (cached: called for every object walked)."""
    found = _LIBRARY.get(kind, False)
    if found is not False:
        return found  # type: ignore[return-value]
    module = getattr(kind, "__module__", None) or ""
    lib = (
        "numpy" if module.startswith("numpy") else "pandas" if module.startswith("pandas") else None
    )
    if len(_LIBRARY) < 4096:
        _LIBRARY[kind] = lib
    return lib


def top_key(value: Any) -> int | None:
    """The key of the value itself: its id, or its buffer owner's for a numpy array;
    None for an atom."""
    if issubclass(type(value), _ATOMS):
        return None
    if _numpy_like(type(value)) == "numpy" and hasattr(value, "base"):
        return id(_owner(value))
    return id(value)


def _children(value: Any, kind: type) -> list[Any]:
    """What ``value`` holds, without running user code; first and last :data:`ENDS`."""
    if issubclass(kind, dict):
        n = dict.__len__(value)
        if n <= 2 * ENDS:
            return list(dict.values(value))
        it = iter(dict.values(value))
        first = [next(it) for _ in range(ENDS)]
        back = reversed(dict.values(value))
        return first + [next(back) for _ in range(ENDS)]
    if issubclass(kind, (list, tuple)):
        getitem = list.__getitem__ if issubclass(kind, list) else tuple.__getitem__
        n = len(value) if kind in (list, tuple) else (list.__len__ if issubclass(kind, list)
                                                        else tuple.__len__)(value)  # fmt: skip
        if n <= 2 * ENDS:
            return list(getitem(value, slice(None)))
        return list(getitem(value, slice(0, ENDS))) + list(getitem(value, slice(n - ENDS, n)))
    if issubclass(kind, deque):  # deque's own C methods: a subclass's overrides never run
        n = deque.__len__(value)
        if n <= 2 * ENDS:
            return list(deque.__iter__(value))
        at = deque.__getitem__
        return [at(value, i) for i in range(ENDS)] + [at(value, i) for i in range(n - ENDS, n)]
    try:
        attrs = object.__getattribute__(value, "__dict__")
    except Exception:  # __slots__, or no instance dict
        return []
    if type(attrs) is not dict:
        return []
    return list(attrs.values())[: 2 * ENDS]


def _size(value: Any, kind: type) -> Any:
    if issubclass(kind, dict):
        return dict.__len__(value)
    if issubclass(kind, list):
        return list.__len__(value)
    if issubclass(kind, tuple):
        return tuple.__len__(value)
    for base in (set, frozenset, bytearray, deque):
        if issubclass(kind, base):
            return base.__len__(value)
    try:
        attrs = object.__getattribute__(value, "__dict__")
    except Exception:
        return None
    return len(attrs) if type(attrs) is dict else None


def _array_print(array: Any) -> Any:
    """Shape, dtype and (for small arrays) a hash of the contents."""
    try:
        shape = array.shape
        if array.nbytes <= HASHED_BYTES:
            return (shape, str(array.dtype), hash(array.tobytes()))
        return (shape, str(array.dtype))
    except Exception:
        return None


def _pandas(value: Any, keys: set[int], prints: list[Any]) -> None:
    """Keys and fingerprint of a pandas object: the owners of its blocks' buffers."""
    try:
        arrays = value._mgr.arrays
    except Exception:
        prints.append((id(value), getattr(value, "shape", None)))
        return
    entry: list[Any] = [id(value), getattr(value, "shape", None)]
    for array in list(arrays)[:ENDS]:
        if hasattr(array, "base"):
            keys.add(id(_owner(array)))
            entry.append(_array_print(array))
        else:  # an extension array (categorical, arrow): its own identity
            keys.add(id(array))
    prints.append(tuple(entry))


def walk(value: Any, budget: Budget) -> tuple[frozenset[int], tuple[Any, ...]] | None:
    """The keys ``value`` holds and its fingerprint (see the module docs), or None when
    the budget is spent (then nothing is known about it)."""
    if issubclass(type(value), _ATOMS):
        return frozenset(), ()
    if budget.left <= 0:
        return None
    keys: set[int] = set()
    prints: list[Any] = []
    add, note = keys.add, prints.append
    level = [value]
    seen = 0
    for depth in range(DEPTH + 1):
        nxt: list[Any] = []
        for obj in level:
            if seen >= PER_VALUE:
                break
            kind = type(obj)
            if kind in _ATOM_TYPES:
                continue
            seen += 1
            ident = id(obj)
            if kind is list or kind is tuple:  # the common case, inline
                n = len(obj)
                children = obj if n <= 2 * ENDS else obj[:ENDS] + obj[n - ENDS :]
                add(ident)
                note((ident, n, tuple(map(id, children))))
            elif kind is dict:
                n = len(obj)
                children = list(obj.values()) if n <= 2 * ENDS else _children(obj, kind)
                add(ident)
                note((ident, n, tuple(map(id, children))))
            elif issubclass(kind, _ATOMS):
                continue
            else:
                lib = _numpy_like(kind)
                if lib == "numpy" and hasattr(obj, "base"):
                    owner = _owner(obj)
                    add(id(owner))
                    owner_print = _array_print(owner) if owner is not obj else None
                    note((id(owner), _array_print(obj), owner_print))
                    continue
                if lib == "pandas":
                    add(ident)
                    _pandas(obj, keys, prints)
                    continue
                add(ident)
                try:
                    children = _children(obj, kind)
                except Exception:  # a container changed size under us, or exotic
                    children = []
                note((ident, _size(obj, kind), tuple(map(id, children))))
            if depth < DEPTH:
                nxt.extend(children)
        level = nxt
        if not level:
            break
    budget.left -= seen
    return frozenset(keys), tuple(prints)


def changed_objects(before: tuple[Any, ...], after: tuple[Any, ...]) -> set[int]:
    """The keys of the objects whose fingerprint entry differs between two walks."""
    old = {entry[0]: entry for entry in before}
    out = {entry[0] for entry in after if old.get(entry[0], entry) != entry}
    if not out and before != after and after:
        out.add(after[0][0])  # the shape changed (an object appeared or went): the value
    return out
