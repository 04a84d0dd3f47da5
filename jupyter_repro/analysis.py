"""Static analysis of one cell's code: which names it reads, defines, deletes, mutates.

Pure functions, no kernel needed, cheap enough to run on every execution (one
``ast.parse`` and one tree walk; tens of microseconds for a typical cell). IPython syntax
(``%magic``, ``%%cell magic``, ``!cmd``, ``x = !cmd``, ``obj?``) is first turned into
Python by IPython's own input transformers, exactly as the kernel does before running the
cell, so magics never break the analysis.

Rules (where they come from: Python's execution model, "Naming and binding"):

- A name is *read* when the cell loads it at module level before binding it itself
  (``b = a + 1; a = 42`` reads ``a``). Names that builtins or the IPython shell provide
  (``print``, ``display``, ``get_ipython``, ``In``/``Out``/``_``...) are not reads.
- Comprehension variables are local to the comprehension; the first ``for``'s iterable is
  evaluated in the cell's scope. A walrus inside a comprehension binds at module level.
- A function body runs later, when the function is called: the globals it reads are kept
  apart in :attr:`CellAnalysis.function_reads` and counted as reads of whichever cell
  *calls* the function (see :func:`resolve_calls`). Decorators and defaults run at once.
  Which names a body reads as globals is decided by Python's compiler (:mod:`symtable`),
  not by a hand-written walk, so nested comprehensions, lambdas, class bodies,
  ``nonlocal`` and ``global`` resolve exactly as when the function runs.
- A class body runs at once in its own scope; its methods are functions.
- ``x.append(..)``, ``x[i] = ..``, ``x.a = ..``, ``x += ..``, ``del x[i]``,
  ``x.m(.., inplace=True)``, ``f(.., out=x)``, ``np.copyto(x, ..)`` *possibly mutate* ``x``
  in place; any other method call on ``x`` is recorded in ``method_calls`` (weaker).
- ``from m import *`` and ``%run`` bind names that cannot be known statically:
  :attr:`CellAnalysis.star_import` is set, and callers stop reporting undefined names
  after such a cell.
"""

from __future__ import annotations

import ast
import builtins
import os
import re
import symtable
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, ClassVar

#: Names the IPython shell puts in every user namespace, besides builtins.
IPYTHON_NAMES = frozenset(
    {
        "get_ipython",
        "display",
        "In",
        "Out",
        "exit",
        "quit",
        "_",
        "__",
        "___",
        "_i",
        "_ii",
        "_iii",
        "_ih",
        "_oh",
        "_dh",
        "_sh",
        "__builtins__",
        "__name__",
        "__doc__",
        "__spec__",
        "__loader__",
        "__package__",
        "__builtin__",
    }
)
_IPYTHON_NUMBERED = re.compile(r"^_(i)?\d+$")
BUILTIN_NAMES = frozenset(dir(builtins)) | IPYTHON_NAMES

#: Every call the analysis and ``%track`` take as a change in place, in one table: the
#: method or function name, and how it changes what:
#:
#: - ``receiver``: the object the method is called on (list, dict, set, bytearray, deque,
#:   numpy and pandas methods: ``xs.append(1)``);
#: - ``receiver_inplace``: the receiver, only with ``inplace=True`` (pandas);
#: - ``receiver_stateful``: the receiver of an estimator, optimiser, model or generator
#:   (``model.fit(X, y)``, ``opt.step()``, ``rng.shuffle(xs)``): a weaker hint kept apart
#:   from :attr:`CellAnalysis.mutates` (``possibly_mutated`` adds it);
#: - ``first_argument``: the first positional argument, called by name or through a module
#:   (``setattr(obj, ...)``, ``random.shuffle(xs)``, ``heapq.heappush(h, x)``,
#:   ``np.fill_diagonal(a, 0)``).
MUTATORS: dict[str, frozenset[str]] = {
    **dict.fromkeys(
        [
            "append",
            "extend",
            "insert",
            "pop",
            "remove",
            "clear",
            "update",
            "setdefault",
            "popitem",
            "add",
            "discard",
            "difference_update",
            "intersection_update",
            "symmetric_difference_update",
            "sort",
            "reverse",
            "appendleft",
            "extendleft",
            "popleft",
            "rotate",
            "fill",
            "resize",
            "itemset",
            "setflags",
            "__setitem__",
            "__delitem__",
            "__iadd__",
        ],
        frozenset({"receiver"}),
    ),
    **dict.fromkeys(
        [
            "set_index",
            "reset_index",
            "rename",
            "fillna",
            "dropna",
            "drop",
            "drop_duplicates",
            "replace",
            "sort_values",
            "sort_index",
        ],
        frozenset({"receiver_inplace"}),
    ),
    **dict.fromkeys(
        [
            "fit",
            "partial_fit",
            "fit_transform",
            "fit_predict",
            "train",
            "step",
            "zero_grad",
            "load_state_dict",
            "set_params",
            "compile",
            "seed",
            "reset",
            "add_",
            "mul_",
            "sub_",
            "div_",
            "copy_",
            "zero_",
            "fill_",
            "clip_",
            "normal_",
            "uniform_",
            "requires_grad_",
        ],
        frozenset({"receiver_stateful"}),
    ),
    **dict.fromkeys(
        [
            "delattr",
            "heappush",
            "heappop",
            "heapify",
            "heappushpop",
            "heapreplace",
            "insort",
            "insort_left",
            "insort_right",
            "fill_diagonal",
            "place",
            "putmask",
        ],
        frozenset({"first_argument"}),
    ),
    "put": frozenset({"receiver", "first_argument"}),  # a.put(ind, v), np.put(a, ind, v)
    "setattr": frozenset({"receiver", "first_argument"}),
    "shuffle": frozenset({"receiver_stateful", "first_argument"}),
}
#: Methods that mutate their receiver (with ``inplace=True`` for those in
#: :data:`_INPLACE_ONLY`), from :data:`MUTATORS`.
MUTATOR_METHODS = frozenset(
    m for m, kinds in MUTATORS.items() if kinds & {"receiver", "receiver_inplace"}
)
#: Pandas methods above mutate only with ``inplace=True``.
_INPLACE_ONLY = frozenset(m for m, kinds in MUTATORS.items() if "receiver_inplace" in kinds)
#: Methods that change their object beyond the container mutators (from :data:`MUTATORS`).
STATEFUL_METHODS = frozenset(m for m, kinds in MUTATORS.items() if "receiver_stateful" in kinds)
#: Functions known to change an argument in place, by position (from :data:`MUTATORS`).
MUTATING_FUNCTIONS = {
    m: frozenset({0}) for m, kinds in MUTATORS.items() if "first_argument" in kinds
}
_LINE_MAGICS_WITH_CODE = frozenset({"time", "timeit", "prun"})
_CELL_MAGICS_WITH_CODE = frozenset({"time", "timeit", "prun", "capture"})
#: Magics that bind names no static reading of the cell can know: ``%pylab`` is a star
#: import of numpy and matplotlib, ``%%cython`` compiles functions into the namespace.
_MAGICS_BINDING_UNKNOWN = frozenset({"run", "load", "store", "aimport", "env", "pylab", "cython"})


@dataclass(frozen=True)
class ClassEffects:
    """What the methods of a class defined in a cell do to their receiver (``self``).

    Attributes:
        methods: the names of the methods the class body defines.
        mutating: the methods that change ``self`` directly: assign or delete an attribute
            or item of ``self`` (``self.n += 1``, ``del self.cache[k]``), call a mutator
            on something ``self`` holds (``self.items.append(v)``, see :data:`MUTATORS`),
            or ``setattr(self, ...)``.
        self_calls: for each method, the methods it calls on ``self`` (``self.tick()``):
            a method that calls a mutating one changes ``self`` too. Resolved at run time
            along the class's MRO (see :func:`method_changes_receiver`), so a subclass
            defined in another cell inherits what its bases do.
    """

    methods: frozenset[str] = frozenset()
    mutating: frozenset[str] = frozenset()
    self_calls: Mapping[str, frozenset[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class CellAnalysis:
    """What one cell's code does to the user namespace, found statically.

    Attributes:
        reads: names loaded from the namespace before the cell binds them itself.
        defines: names the cell binds at module level (assignments, imports, def, class,
            for/with/except targets, walrus).
        deletes: names removed with ``del name``.
        mutates: names whose object the cell possibly changes in place.
        method_calls: names on which the cell calls any method (a weaker mutation hint).
        calls: names the cell calls at module level (``g(...)``).
        bound_before_call: for each called name, the names the cell had already bound
            at its first call (so ``b = f()`` still reads the ``b`` that ``f`` reads).
        function_reads: for each function the cell defines, the globals its body reads.
        imports: names bound by ``import`` statements (a subset of ``defines``).
        star_import: the cell binds names that cannot be known (``import *``, ``%run``).
        strings: string literals in the code (paths, column names), in order.
        syntax_error: the SyntaxError if the cell does not parse, else None; all other
            fields are then empty.
        aliases: ``(target, source)`` pairs for plain aliasing assignments ``b = a``: after
            the cell, ``b`` may be the very object ``a`` is, so mutating one changes both.
        file_reads: normalised literal paths the cell reads (``open(p)``, ``read_csv(p)``,
            ``np.load(p)``, ``Path(p).read_text()``...); see :data:`FILE_READ_CALLS`.
        file_writes: normalised literal paths the cell writes (``open(p, "w")``,
            ``df.to_csv(p)``, ``np.save(p, ..)``, ``savefig(p)``...).
        function_mutates: for each function the cell defines, the 0-based positions of the
            parameters its body possibly mutates in place (``def f(xs): xs.append(1)``).
        call_args: ``(function, position, name)`` for each bare name passed positionally
            to a function called at module level, so a caller can tell which names a call
            to a mutating function (``function_mutates``) changes.
        deletes_existing: names ``del``-eted before the cell bound them itself: the cell
            needs them to exist (``del x`` raises NameError otherwise), like a read.
        method_call_names: ``(name, method)`` for the calls behind ``method_calls``, so a
            caller can apply its own list of in-place methods (``model.fit``).
        function_global_writes: for each function the cell defines that declares
            ``global x`` and assigns ``x``, those names: a call rebinds them.
        method_call_args: ``(attribute, position, name)`` for each bare name passed
            positionally to a call through an attribute (``random.shuffle(xs)`` gives
            ``("shuffle", 0, "xs")``), like ``call_args`` for plain calls.
        deep_mutates: the names in ``mutates`` changed *through* something they hold
            (``dup[0].append(3)``, ``m.items[0] = 1``): the change reaches every other
            name holding that inner object, not only the ones bound to the outer one.
        classes: for each class the cell defines at module level, what its methods do to
            their receiver (:class:`ClassEffects`).
    """

    reads: frozenset[str] = frozenset()
    defines: frozenset[str] = frozenset()
    deletes: frozenset[str] = frozenset()
    mutates: frozenset[str] = frozenset()
    method_calls: frozenset[str] = frozenset()
    calls: frozenset[str] = frozenset()
    bound_before_call: Mapping[str, frozenset[str]] = field(default_factory=dict)
    function_reads: Mapping[str, frozenset[str]] = field(default_factory=dict)
    imports: frozenset[str] = frozenset()
    star_import: bool = False
    strings: tuple[str, ...] = ()
    syntax_error: SyntaxError | None = None
    aliases: tuple[tuple[str, str], ...] = ()
    file_reads: frozenset[str] = frozenset()
    file_writes: frozenset[str] = frozenset()
    function_mutates: Mapping[str, frozenset[int]] = field(default_factory=dict)
    call_args: tuple[tuple[str, int, str], ...] = ()
    deletes_existing: frozenset[str] = frozenset()
    method_call_names: frozenset[tuple[str, str]] = frozenset()
    function_global_writes: Mapping[str, frozenset[str]] = field(default_factory=dict)
    method_call_args: tuple[tuple[str, int, str], ...] = ()
    deep_mutates: frozenset[str] = frozenset()
    classes: Mapping[str, ClassEffects] = field(default_factory=dict)


#: Call names (a function or a method, whatever the receiver) that read the file named by
#: their first positional argument or their ``path``-like keyword.
FILE_READ_CALLS = frozenset(
    {
        "read_csv",
        "read_table",
        "read_parquet",
        "read_json",
        "read_excel",
        "read_pickle",
        "read_feather",
        "read_hdf",
        "read_fwf",
        "read_orc",
        "read_sas",
        "read_spss",
        "read_stata",
        "read_xml",
        "read_sql",
        "load",
        "loadtxt",
        "genfromtxt",
        "fromfile",
        "imread",
        "read_text",
        "read_bytes",
    }
)
#: Call names that write the file named by their first positional argument (``to_csv``,
#: ``savefig``), except ``save``/``savez``-style numpy calls and ``dump``-style calls, whose
#: path is the first and the second positional argument respectively.
FILE_WRITE_CALLS = frozenset(
    {
        "to_csv",
        "to_parquet",
        "to_json",
        "to_excel",
        "to_pickle",
        "to_feather",
        "to_hdf",
        "to_orc",
        "to_stata",
        "to_xml",
        "to_html",
        "to_latex",
        "to_markdown",
        "save",
        "savez",
        "savez_compressed",
        "savetxt",
        "tofile",
        "savefig",
        "imsave",
        "write_text",
        "write_bytes",
    }
)
_FILE_DUMP_CALLS = frozenset({"dump"})  # joblib.dump(obj, path), torch.save is in WRITE
_PATH_KEYWORDS = frozenset(
    {"path", "fname", "file", "filepath_or_buffer", "path_or_buf", "filename", "io", "excel_writer"}
)
_PATH_RECEIVERS = frozenset({"Path", "PurePath", "PosixPath", "WindowsPath"})


def _literal_path(node: ast.expr) -> str | None:
    """A path given as a string literal (or ``Path("lit")``), normalised; else None."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value:
        return os.path.normpath(node.value)
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, (ast.Name, ast.Attribute))
        and (node.func.id if isinstance(node.func, ast.Name) else node.func.attr) in _PATH_RECEIVERS
        and len(node.args) == 1
    ):
        return _literal_path(node.args[0])
    return None


def _open_mode_writes(node: ast.Call) -> tuple[bool, bool]:
    """(reads, writes) for a literal ``open(path, mode)`` call."""
    mode_node = node.args[1] if len(node.args) > 1 else None
    for kw in node.keywords:
        if kw.arg == "mode":
            mode_node = kw.value
    if mode_node is None:
        return True, False
    if not (isinstance(mode_node, ast.Constant) and isinstance(mode_node.value, str)):
        return True, True  # unknown mode: both, to be safe
    mode = mode_node.value
    writes = any(ch in mode for ch in "wax+")
    return ("r" in mode or "+" in mode or not writes), writes


def _file_access(node: ast.Call) -> tuple[str | None, str | None]:
    """(path read, path written) by one call, when its path is a literal."""
    func = node.func
    name = (
        func.id
        if isinstance(func, ast.Name)
        else func.attr
        if isinstance(func, ast.Attribute)
        else None
    )
    if name is None:
        return None, None
    receiver_path = (
        _literal_path(func.value)
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Call)
        else None
    )
    if name == "open":
        path = _literal_path(node.args[0]) if node.args else receiver_path
        if path is None:
            return None, None
        reads, writes = _open_mode_writes(node if node.args else ast.Call(func, [], []))
        return (path if reads else None), (path if writes else None)
    position = 1 if name in _FILE_DUMP_CALLS else 0
    path = (
        receiver_path if name in {"read_text", "read_bytes", "write_text", "write_bytes"} else None
    )
    if path is None and len(node.args) > position:
        path = _literal_path(node.args[position])
    if path is None:
        for kw in node.keywords:
            if kw.arg in _PATH_KEYWORDS:
                path = _literal_path(kw.value)
    if path is None:
        return None, None
    if name in FILE_READ_CALLS:
        return path, None
    if name in FILE_WRITE_CALLS or name in _FILE_DUMP_CALLS:
        return None, path
    return None, None


def _mutated_params(node: ast.FunctionDef | ast.AsyncFunctionDef) -> frozenset[int]:
    """Positions of the parameters a function body possibly mutates in place."""
    params = [a.arg for a in [*node.args.posonlyargs, *node.args.args]]
    if not params:
        return frozenset()
    mutated: set[str] = set()
    for n in ast.walk(node):
        targets: list[ast.expr] = []
        if isinstance(n, ast.Assign):
            targets = n.targets
        elif isinstance(n, (ast.AugAssign, ast.AnnAssign)):
            targets = [n.target]
        elif isinstance(n, ast.Delete):
            targets = n.targets
        elif isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute):
            inplace = any(
                kw.arg == "inplace"
                and isinstance(kw.value, ast.Constant)
                and kw.value.value is True
                for kw in n.keywords
            )
            if (n.func.attr in MUTATOR_METHODS and n.func.attr not in _INPLACE_ONLY) or inplace:
                root = _root_name(n.func.value)
                if root:
                    mutated.add(root)
        for t in targets:
            if isinstance(t, (ast.Subscript, ast.Attribute)):
                root = _root_name(t)
                if root:
                    mutated.add(root)
    return frozenset(i for i, p in enumerate(params) if p in mutated)


def possibly_mutated(analysis: CellAnalysis) -> set[str]:
    """Names whose object the cell may change in place: the analysis' ``mutates``, the
    receivers of :data:`STATEFUL_METHODS` and the arguments of
    :data:`MUTATING_FUNCTIONS` (not those of the notebook's own functions or methods,
    which depend on what ran: ``%track``'s tracker adds them)."""
    out = set(analysis.mutates)
    out.update(root for root, method in analysis.method_call_names if method in STATEFUL_METHODS)
    for fn, position, arg in (*analysis.call_args, *analysis.method_call_args):
        if position in MUTATING_FUNCTIONS.get(fn, ()):
            out.add(arg)
    return out


_NOT_INSTANCE_METHODS = frozenset({"staticmethod", "classmethod"})


def class_effects(node: ast.ClassDef) -> ClassEffects:
    """What each method of a class body does to its receiver (see :class:`ClassEffects`).

    The receiver is a method's first parameter, whatever its name; static and class
    methods have none. A mutation of the receiver is found as in :func:`_mutated_params`
    (attribute or item assignment, ``del``, augmented assignment, a mutator called on it
    or on something it holds, ``setattr(self, ...)``).
    """
    methods: set[str] = set()
    mutating: set[str] = set()
    self_calls: dict[str, frozenset[str]] = {}
    for stmt in node.body:
        if not isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        methods.add(stmt.name)
        decorators = {_root_name(d) for d in stmt.decorator_list}
        params = [*stmt.args.posonlyargs, *stmt.args.args]
        if decorators & _NOT_INSTANCE_METHODS or not params:
            continue
        if 0 in _mutated_params(stmt):
            mutating.add(stmt.name)
        me = params[0].arg
        calls = set()
        for n in ast.walk(stmt):
            if not isinstance(n, ast.Call):
                continue
            func = n.func
            if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
                if func.value.id == me:
                    calls.add(func.attr)
            elif (
                isinstance(func, ast.Name)
                and position_mutated(func.id, 0)
                and n.args
                and _root_name(n.args[0]) == me
            ):
                mutating.add(stmt.name)
        if calls:
            self_calls[stmt.name] = frozenset(calls)
    return ClassEffects(frozenset(methods), frozenset(mutating), self_calls)


def position_mutated(function: str, position: int) -> bool:
    """Whether :data:`MUTATING_FUNCTIONS` says ``function`` changes that argument."""
    return position in MUTATING_FUNCTIONS.get(function, ())


def method_changes_receiver(
    mro: Iterable[type], method: str, effects: Mapping[type, ClassEffects]
) -> bool | None:
    """Whether calling ``method`` on an instance whose class has this ``mro`` changes it.

    ``effects`` holds the :class:`ClassEffects` of the classes defined in the notebook.
    The method is looked up along the MRO as Python does; ``self.other()`` calls are
    followed the same way. Returns None when the method (or one it calls) comes from a
    class the notebook did not define: its effect is for runtime evidence to judge.
    """
    order = list(mro)
    pending, seen, unknown = [method], set(), False
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        owner = next((k for k in order if name in vars(k)), None)
        if owner is None:
            continue  # an attribute set on the instance, or __getattr__: nothing known
        info = effects.get(owner)
        if info is None or name not in info.methods:
            unknown = True
            continue
        if name in info.mutating:
            return True
        pending.extend(info.self_calls.get(name, ()))
    return None if unknown else False


def is_builtin_name(name: str) -> bool:
    """Whether ``name`` is provided by builtins or by the IPython shell in every kernel."""
    return name in BUILTIN_NAMES or bool(_IPYTHON_NUMBERED.match(name))


@lru_cache(maxsize=4096)
def transform_cell(source: str) -> str:
    """Turn IPython syntax into plain Python, as the kernel does before executing.

    Uses ``IPython.core.inputtransformer2.TransformerManager``; the result has the same
    number of lines as the input for line magics and ``!cmd`` lines.
    """
    if not any(ch in source for ch in "%!?"):
        return source
    return _transformer().transform_cell(source)


@lru_cache(maxsize=1)
def _transformer():
    from IPython.core.inputtransformer2 import TransformerManager

    return TransformerManager()


#: Analyses by (source, transformed), oldest first; at most _ANALYSES_MAX (first in, first
#: out: a notebook's cells are far fewer).
_ANALYSES: OrderedDict[tuple[str, bool], CellAnalysis] = OrderedDict()
_ANALYSES_MAX = 4096
_ANALYSES_LOCK = threading.Lock()


def analyze_cell(
    source: str, transformed: bool = False, tree: ast.Module | None = None
) -> CellAnalysis:
    """Analyse one cell's source. ``transformed=True`` skips IPython's transformation.

    ``tree``: the syntax tree IPython itself parsed from this very source (``%track``
    gets it from the shell's ``ast_transformers``, saving a second parse on the path of
    every execution). It is used only for plain Python (no ``%``, ``!``, ``?``, no
    leading blank line), where IPython's transformation leaves the code and its line
    numbers unchanged; otherwise the source is parsed here. Results are cached by source
    (the last 4,096 sources analysed). Never raises for bad code: a cell that does not parse gives
    ``syntax_error`` set.
    """
    key = (source, transformed)
    found = _ANALYSES.get(key)
    if found is not None:
        return found
    if tree is None or transformed or not _plain_python(source):
        parsed = parse_cell(source, transformed)
        if isinstance(parsed, SyntaxError):
            result = CellAnalysis(syntax_error=parsed)
        else:
            result = _analyze_tree(source if transformed else _safe_transform(source), parsed)
    else:
        result = _analyze_tree(source, tree)
    with _ANALYSES_LOCK:
        _ANALYSES[key] = result
        if len(_ANALYSES) > _ANALYSES_MAX:
            _ANALYSES.popitem(last=False)
    return result


def _plain_python(source: str) -> bool:
    """Whether IPython's transformation returns ``source`` line for line (see
    :func:`transform_cell`): no IPython syntax, and no leading blank line (IPython drops
    those, which would shift every line number)."""
    return bool(source) and source[0] not in " \t\r\n" and transform_cell(source) == source


def _analyze_tree(code: str, tree: ast.Module) -> CellAnalysis:
    visitor = _CellVisitor(code)
    for stmt in tree.body:
        visitor.visit(stmt)
    return visitor.result()


@lru_cache(maxsize=1024)
def parse_cell(source: str, transformed: bool = False) -> ast.Module | SyntaxError:
    """The cell's syntax tree after IPython's transformations, or the SyntaxError.

    Never raises: null bytes and absurdly deep nesting (``ValueError``, ``RecursionError``,
    ``MemoryError`` from the parser) come back as a SyntaxError too. Cached; callers must
    not modify the tree.
    """
    code = source if transformed else _safe_transform(source)
    try:
        return ast.parse(code)
    except SyntaxError as exc:
        return exc
    except (ValueError, RecursionError, MemoryError) as exc:
        return SyntaxError(f"{type(exc).__name__}: {exc}")


def _safe_transform(source: str) -> str:
    try:
        return transform_cell(source)
    except Exception:  # IPython's transformer can choke on pathological input
        return source


def resolve_calls(
    analysis: CellAnalysis, functions: Mapping[str, frozenset[str]]
) -> frozenset[str]:
    """Reads of a cell including, for each function it calls, the globals the body reads.

    ``functions`` maps a function name to the globals its body reads (from the
    ``function_reads`` of the cell that defined it). Functions defined by the cell itself
    are resolved too. Resolution is transitive (a function calling a function); a name
    the cell bound before its first call of the function is not a read (``k = 5; g()``),
    one it binds only after is (``b = f()`` where ``f`` reads ``b``).
    """
    known = {**functions, **analysis.function_reads}
    reads = set(analysis.reads)
    pending = [(name, name) for name in analysis.calls if name in known]
    seen: set[str] = set()
    while pending:
        fn, outer = pending.pop()
        if fn in seen:
            continue
        seen.add(fn)
        bound = analysis.bound_before_call.get(outer, frozenset())
        for name in known[fn]:
            if name not in bound:
                reads.add(name)
            if name in known:
                pending.append((name, outer))
    return frozenset(reads)


class _ComprehensionScope(set):
    """Names bound by a comprehension's ``for`` targets."""


class _CellVisitor(ast.NodeVisitor):
    """Walks module-level statements in execution order."""

    def __init__(self, code: str = "") -> None:
        self.code = code  # the parsed (transformed) source, for the compiler's scopes
        self._tables: dict[tuple[int, str], symtable.SymbolTable] | None = None
        self.reads: set[str] = set()
        self.defines: set[str] = set()
        self.deletes: set[str] = set()
        self.mutates: set[str] = set()
        self.method_calls: set[str] = set()
        self.calls: set[str] = set()
        self.bound_before_call: dict[str, frozenset[str]] = {}
        self.function_reads: dict[str, frozenset[str]] = {}
        self.imports: set[str] = set()
        self.star_import = False
        self.strings: list[str] = []
        self.aliases: list[tuple[str, str]] = []
        self.deletes_existing: set[str] = set()
        self.method_call_names: set[tuple[str, str]] = set()
        self.function_global_writes: dict[str, frozenset[str]] = {}
        self.method_call_args: list[tuple[str, int, str]] = []
        self.file_reads: set[str] = set()
        self.file_writes: set[str] = set()
        self.function_mutates: dict[str, frozenset[int]] = {}
        self.call_args: list[tuple[str, int, str]] = []
        self.deep_mutates: set[str] = set()
        self.classes: dict[str, ClassEffects] = {}
        self.bound: set[str] = set()  # bound so far in this cell
        self.shadows: list[set[str]] = []  # comprehension / class scopes, innermost last

    def result(self) -> CellAnalysis:
        return CellAnalysis(
            reads=frozenset(self.reads),
            defines=frozenset(self.defines),
            deletes=frozenset(self.deletes),
            mutates=frozenset(self.mutates),
            method_calls=frozenset(self.method_calls),
            calls=frozenset(self.calls),
            bound_before_call=dict(self.bound_before_call),
            function_reads=dict(self.function_reads),
            imports=frozenset(self.imports),
            star_import=self.star_import,
            strings=tuple(self.strings),
            aliases=tuple(self.aliases),
            file_reads=frozenset(self.file_reads),
            file_writes=frozenset(self.file_writes),
            function_mutates=dict(self.function_mutates),
            call_args=tuple(self.call_args),
            deletes_existing=frozenset(self.deletes_existing),
            method_call_names=frozenset(self.method_call_names),
            function_global_writes=dict(self.function_global_writes),
            method_call_args=tuple(self.method_call_args),
            deep_mutates=frozenset(self.deep_mutates & self.mutates),
            classes=dict(self.classes),
        )

    # -- dispatch ----------------------------------------------------------------------
    # ``ast.NodeVisitor`` looks the method up by name for every node; a cell is analysed
    # before it runs, on the path of every execution (docs/tracking.md, "Overhead"), so the
    # lookup is cached per node class and the contexts (Load/Store/Del) are not visited.
    _dispatch: ClassVar[dict[type, Callable[[Any, Any], Any]]] = {}

    def visit(self, node: ast.AST) -> Any:
        method = self._dispatch.get(node.__class__)
        if method is None:
            cls = type(self)
            method = getattr(cls, "visit_" + node.__class__.__name__, cls.generic_visit)
            self._dispatch[node.__class__] = method
        return method(self, node)

    def generic_visit(self, node: ast.AST) -> None:
        for attr in node._fields:
            value = getattr(node, attr, None)
            if value.__class__ is list:
                for item in value:
                    if isinstance(item, ast.AST):
                        self.visit(item)
            elif isinstance(value, ast.AST) and not isinstance(value, ast.expr_context):
                self.visit(value)

    # -- names -------------------------------------------------------------------------
    def _load(self, name: str) -> None:
        if self.shadows and any(name in scope for scope in self.shadows):
            return
        if name not in self.bound and not is_builtin_name(name):
            self.reads.add(name)

    def _store(self, name: str) -> None:
        if self.shadows:
            self.shadows[-1].add(name)
            return
        self.bound.add(name)
        self.defines.add(name)
        self.deletes.discard(name)

    def visit_Name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, ast.Load):
            self._load(node.id)
        elif isinstance(node.ctx, ast.Store):
            self._store(node.id)
        else:  # Del
            if not self.shadows:
                if node.id not in self.bound:
                    self.deletes_existing.add(node.id)
                self.deletes.add(node.id)
                self.bound.discard(node.id)
                self.defines.discard(node.id)

    def _target(self, node: ast.expr) -> None:
        """An assignment target: names are stored; ``a[i]``/``a.b`` mutate ``a``."""
        if isinstance(node, ast.Name):
            self._store(node.id)
        elif isinstance(node, (ast.Tuple, ast.List)):
            for elt in node.elts:
                self._target(elt)
        elif isinstance(node, ast.Starred):
            self._target(node.value)
        elif isinstance(node, (ast.Subscript, ast.Attribute)):
            self._mutated(node, node.value)
            self.visit(node)
        else:
            self.visit(node)

    def _mutated(self, node: ast.expr, inner: ast.expr | None = None) -> None:
        """``node``'s root name is changed in place; through something it holds when
        ``inner`` (the object the change is applied to) is itself a subscript or an
        attribute of the root (``x[0].append``, ``x[0][1] = ..``)."""
        root = _root_name(node)
        if root and not any(root in s for s in self.shadows):
            self.mutates.add(root)
            if isinstance(inner, (ast.Subscript, ast.Attribute)):
                self.deep_mutates.add(root)

    # -- statements (value before target) ----------------------------------------------
    def visit_Assign(self, node: ast.Assign) -> None:
        self.visit(node.value)
        for target in node.targets:
            self._target(target)
            if (
                isinstance(node.value, ast.Name)
                and isinstance(target, ast.Name)
                and not self.shadows
            ):
                self.aliases.append((target.id, node.value.id))

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if node.value is not None:
            self.visit(node.value)
            self._target(node.target)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        self.visit(node.value)
        if isinstance(node.target, ast.Name):
            self._load(node.target.id)
            self._mutated(node.target)
            self._store(node.target.id)
        else:
            self._target(node.target)

    def visit_NamedExpr(self, node: ast.NamedExpr) -> None:
        self.visit(node.value)
        # PEP 572: a walrus in a comprehension binds in the scope that contains it.
        saved = self.shadows
        depth = len(saved)
        while depth and isinstance(saved[depth - 1], _ComprehensionScope):
            depth -= 1
        self.shadows = saved[:depth]
        self._store(node.target.id)
        self.shadows = saved

    def visit_Delete(self, node: ast.Delete) -> None:
        for target in node.targets:
            if isinstance(target, (ast.Subscript, ast.Attribute)):
                self._mutated(target, target.value)
            self.visit(target)

    def visit_For(self, node: ast.For | ast.AsyncFor) -> None:
        self.visit(node.iter)
        self._target(node.target)
        for stmt in node.body + node.orelse:
            self.visit(stmt)

    visit_AsyncFor = visit_For

    def visit_With(self, node: ast.With | ast.AsyncWith) -> None:
        for item in node.items:
            self.visit(item.context_expr)
            if item.optional_vars is not None:
                self._target(item.optional_vars)
        for stmt in node.body:
            self.visit(stmt)

    visit_AsyncWith = visit_With

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> None:
        if node.type is not None:
            self.visit(node.type)
        if node.name:
            self._store(node.name)
        for stmt in node.body:
            self.visit(stmt)
        if node.name and not self.shadows:
            # Python deletes the `as` name when the handler ends.
            self.bound.discard(node.name)
            self.defines.discard(node.name)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            name = alias.asname or alias.name.split(".")[0]
            self._store(name)
            if not self.shadows:
                self.imports.add(name)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        for alias in node.names:
            if alias.name == "*":
                self.star_import = True
                continue
            name = alias.asname or alias.name
            self._store(name)
            if not self.shadows:
                self.imports.add(name)

    def visit_Global(self, node: ast.Global) -> None:  # only legal in functions
        pass

    def visit_MatchAs(self, node: ast.MatchAs) -> None:
        if node.pattern is not None:
            self.visit(node.pattern)
        if node.name:
            self._store(node.name)

    def visit_MatchStar(self, node: ast.MatchStar) -> None:
        if node.name:
            self._store(node.name)

    def visit_MatchMapping(self, node: ast.MatchMapping) -> None:
        for key in node.keys:
            self.visit(key)
        for pattern in node.patterns:
            self.visit(pattern)
        if node.rest:
            self._store(node.rest)

    # -- deferred scopes -------------------------------------------------------------
    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        for deco in node.decorator_list:
            self.visit(deco)
        self._visit_arguments_now(node.args)
        if node.returns is not None:
            self.visit(node.returns)
        if self._tables is None:
            self._tables = _function_tables(self.code) if self.code else {}
        free, assigned_globals = _function_free_names(node, self._tables)
        if not self.shadows:
            self.function_reads[node.name] = frozenset(free)
            mutated = _mutated_params(node)
            if mutated:
                self.function_mutates[node.name] = mutated
            else:
                self.function_mutates.pop(node.name, None)
        for _name in assigned_globals:  # `global x; x = ...` binds x when called
            self.function_reads.setdefault(node.name, frozenset())
        if not self.shadows:
            if assigned_globals:
                self.function_global_writes[node.name] = frozenset(assigned_globals)
            else:
                self.function_global_writes.pop(node.name, None)
        self._store(node.name)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Lambda(self, node: ast.Lambda) -> None:
        self._visit_arguments_now(node.args)

    def _visit_arguments_now(self, args: ast.arguments) -> None:
        for default in [*args.defaults, *[d for d in args.kw_defaults if d is not None]]:
            self.visit(default)
        for arg in [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]:
            if arg is not None and arg.annotation is not None:
                self.visit(arg.annotation)

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        for deco in node.decorator_list:
            self.visit(deco)
        for base in node.bases:
            self.visit(base)
        for kw in node.keywords:
            self.visit(kw.value)
        self.shadows.append(set())
        for stmt in node.body:
            self.visit(stmt)
        self.shadows.pop()
        if not self.shadows:
            self.classes[node.name] = class_effects(node)
        self._store(node.name)

    def _comprehension(self, node, elements: list[ast.expr]) -> None:
        generators = node.generators
        self.visit(generators[0].iter)  # evaluated in the enclosing scope
        self.shadows.append(_ComprehensionScope())
        for i, gen in enumerate(generators):
            if i:
                self.visit(gen.iter)
            self._target(gen.target)
            for cond in gen.ifs:
                self.visit(cond)
        for element in elements:
            self.visit(element)
        self.shadows.pop()

    def visit_ListComp(self, node: ast.ListComp) -> None:
        self._comprehension(node, [node.elt])

    visit_SetComp = visit_ListComp
    visit_GeneratorExp = visit_ListComp

    def visit_DictComp(self, node: ast.DictComp) -> None:
        self._comprehension(node, [node.key, node.value])

    # -- expressions ---------------------------------------------------------------------
    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        if isinstance(func, ast.Name) and not any(func.id in s for s in self.shadows):
            self.calls.add(func.id)
            if func.id not in self.bound_before_call:
                self.bound_before_call[func.id] = frozenset(self.bound)
            if not self.shadows:
                for position, arg in enumerate(node.args):
                    if isinstance(arg, ast.Name):
                        self.call_args.append((func.id, position, arg.id))
        if isinstance(func, ast.Attribute) and not self.shadows:
            for position, arg in enumerate(node.args):
                if isinstance(arg, ast.Name):
                    self.method_call_args.append((func.attr, position, arg.id))
        read_path, written_path = _file_access(node)
        if read_path is not None:
            self.file_reads.add(read_path)
        if written_path is not None:
            self.file_writes.add(written_path)
        if isinstance(func, ast.Attribute):
            root = _root_name(func.value)
            if root is not None:
                inplace = any(
                    kw.arg == "inplace"
                    and isinstance(kw.value, ast.Constant)
                    and kw.value.value is True
                    for kw in node.keywords
                )
                if (func.attr in MUTATOR_METHODS and func.attr not in _INPLACE_ONLY) or inplace:
                    self._mutated(func.value, func.value)
                elif not any(root in s for s in self.shadows):
                    self.method_calls.add(root)
                    self.method_call_names.add((root, func.attr))
            if func.attr == "copyto" and node.args:  # np.copyto(dst, src)
                self._mutated(node.args[0])
            if _is_get_ipython_call(func.value):
                self._ipython_call(func.attr, node.args)
        for kw in node.keywords:
            if kw.arg == "out" and isinstance(kw.value, (ast.Name, ast.Subscript)):
                self._mutated(kw.value)
        self.generic_visit(node)

    def _ipython_call(self, method: str, args: list[ast.expr]) -> None:
        """``%time x = f()`` becomes ``get_ipython().run_line_magic('time', 'x = f()')``:
        analyse the code inside the magics that run Python in the user namespace."""
        consts = [a.value if isinstance(a, ast.Constant) else None for a in args]
        if not consts or not isinstance(consts[0], str):
            return
        magic = consts[0]
        if magic in _MAGICS_BINDING_UNKNOWN:
            self.star_import = True
            return
        code_parts: list[str] = []
        if method == "run_line_magic" and magic in _LINE_MAGICS_WITH_CODE and len(consts) > 1:
            code_parts.append(_strip_magic_options(magic, consts[1] or ""))
        elif method == "run_cell_magic" and magic in _CELL_MAGICS_WITH_CODE and len(consts) > 2:
            line, body = consts[1] or "", consts[2] or ""
            if magic == "capture":
                for word in line.split():
                    if not word.startswith("-") and word.isidentifier():
                        self._store(word)
            elif magic == "timeit":
                code_parts.append(_strip_magic_options(magic, line))
            code_parts.append(body)
        for code in code_parts:
            inner = analyze_cell(code)
            if inner.syntax_error is None:
                for name in inner.reads:
                    self._load(name)
                for name in inner.defines:
                    self._store(name)
                self.mutates |= inner.mutates
                self.calls |= inner.calls
                self.function_reads.update(inner.function_reads)

    def visit_Constant(self, node: ast.Constant) -> None:
        if isinstance(node.value, str) and len(self.strings) < 1000:
            self.strings.append(node.value)


def _is_get_ipython_call(node: ast.expr) -> bool:
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "get_ipython"
    )


def _strip_magic_options(magic: str, line: str) -> str:
    if magic != "timeit" and magic != "prun":
        return line
    words = line.split()
    out: list[str] = []
    skip_value = False
    for i, word in enumerate(words):
        if skip_value:
            skip_value = False
            continue
        if word.startswith("-") and not out:
            skip_value = word in ("-n", "-r", "-p", "-s", "-T", "-D", "-l")
            continue
        out = words[i:]
        break
    return " ".join(out)


def _root_name(node: ast.expr) -> str | None:
    while isinstance(node, (ast.Attribute, ast.Subscript, ast.Starred)):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def _function_free_names(
    node: ast.FunctionDef | ast.AsyncFunctionDef,
    tables: Mapping[tuple[int, str], symtable.SymbolTable] | None = None,
) -> tuple[set[str], set[str]]:
    """Globals a function body reads (including nested scopes), and globals it assigns.

    The scopes come from Python's own compiler (:mod:`symtable`), so every binding rule
    holds exactly as at run time: comprehension variables (nested or not), lambda and
    class-body scopes, ``nonlocal``, ``global`` declarations, walrus targets, ``match``
    captures, ``except ... as``. A name counts when some scope inside the function
    references it and the compiler resolves it as a global (implicitly or by ``global``);
    builtins and IPython's names are left out. The second set holds the names declared
    ``global`` and assigned (a call rebinds them).

    ``tables`` maps ``(def line, name)`` to the function tables of the whole cell (see
    :func:`_function_tables`); without it, or when the function is not found there, the
    function's own source (``ast.unparse``) is analysed alone. A function the compiler
    rejects (``nonlocal`` of an unknown name) gives two empty sets: it never runs.
    """
    table = tables.get((node.lineno, node.name)) if tables else None
    if table is None:
        table = _standalone_function_table(node)
    if table is None:
        return set(), set()
    free: set[str] = set()
    assigned_globals: set[str] = set()
    stack = [table]
    while stack:
        scope = stack.pop()
        for symbol in scope.get_symbols():
            if not symbol.is_global():
                continue
            name = symbol.get_name()
            if symbol.is_referenced():
                free.add(name)
            if symbol.is_declared_global() and symbol.is_assigned():
                assigned_globals.add(name)
        stack.extend(scope.get_children())
    if assigned_globals:
        # `global n; n += 1` reads n too, but the compiler records an augmented target
        # as a store only.
        free.update(
            n.target.id
            for n in ast.walk(node)
            if isinstance(n, ast.AugAssign)
            and isinstance(n.target, ast.Name)
            and n.target.id in assigned_globals
        )
    return {n for n in free if not is_builtin_name(n)}, assigned_globals


def _function_tables(code: str) -> dict[tuple[int, str], symtable.SymbolTable]:
    """Every function scope of a cell's (transformed) code, keyed by ``(def line, name)``.

    Empty when the compiler rejects the cell as a whole (``nonlocal`` at module level);
    callers then fall back to each function's own source.
    """
    try:
        top = symtable.symtable(code, "<cell>", "exec")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return {}
    found: dict[tuple[int, str], symtable.SymbolTable] = {}
    stack = [top]
    while stack:  # pre-order, so a def comes before the scopes on its own line
        scope = stack.pop()
        if scope.get_type() == "function":
            found.setdefault((scope.get_lineno(), scope.get_name()), scope)
        stack.extend(reversed(scope.get_children()))
    return found


def _standalone_function_table(
    node: ast.FunctionDef | ast.AsyncFunctionDef,
) -> symtable.SymbolTable | None:
    try:
        top = symtable.symtable(ast.unparse(node), "<function>", "exec")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    stack = [top]
    while stack:
        scope = stack.pop()
        if scope.get_type() == "function" and scope.get_name() == node.name:
            return scope
        stack.extend(reversed(scope.get_children()))
    return None
