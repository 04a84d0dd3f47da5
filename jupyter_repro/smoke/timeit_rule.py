"""When may nb-smoke run a ``%timeit``/``%%timeit`` statement once instead of in full?

A smoke test checks that a notebook runs, not how fast; the timing loops are most of the
run time of tutorial notebooks. Running the statement once cannot change a verdict when
nothing a later cell can observe depends on how many times it ran: the first run is the
one a kernel does too, and every further run starts from the same state, so it does the
same thing again. This module decides that, per ``%timeit`` call, from the timed code
(setup and statement, parsed as IPython's ``%timeit`` parses them) and the objects its
free names refer to at that moment. It says "once" only when all of these hold (any
doubt keeps the full length, exactly as a kernel runs it):

- no ``-o`` (the ``TimeitResult`` is kept and may be read later);
- no ``global``/``nonlocal``, ``await``, ``yield`` anywhere in the timed code (names bound
  there are locals of IPython's timing function and die with it);
- :func:`jupyter_repro.analysis.possibly_mutated` is empty, apart from local counters
  bound only to constants and changed only by ``x += ...`` (``total = 0; total += i``);
  no ``del``, no file written (:attr:`CellAnalysis.file_writes`);
- every free name refers to a module of :data:`SAFE_MODULES`, a function of one of those
  modules, a builtin of :data:`SAFE_BUILTINS`, or a value whose type is in
  :data:`SAFE_TYPES` or comes from NumPy/pandas (nothing from a ``random`` module: a
  random generator's state is what a later cell observes); a notebook's own function, a
  generator, an iterator, a file or any other object keeps the full length;
- every method call is one of :data:`PURE_METHODS` (reductions, copies, reshapes,
  lookups), or a function reached through a safe module (``np.linalg.norm``) that is
  not in :data:`WRITING_FUNCTIONS` nor changes its first argument (``np.put``);
- every attribute loaded, called or not, is judged (:func:`_attribute_reason`): of
  :mod:`operator` only :data:`PURE_OPERATOR` (not ``delitem``, ``setitem``, ``iadd``);
  of a NumPy ufunc only :data:`UFUNC_PURE_ATTRIBUTES` (not ``.at``); of anything else
  no name in :data:`jupyter_repro.analysis.MUTATORS` (``s.map(L.append)``);
- no call passes ``out``/``target``/``inplace`` (:data:`WRITE_KEYWORDS`), ``**kwargs``,
  ``*args``, or ``out`` by position (:func:`_positional_out`: more positional
  arguments than a ufunc's ``nin``, as in ``np.negative(a, a)``).

So ``%timeit next(g)`` (``g`` a generator), ``%timeit L.append(1)``, ``%timeit
L.sort()``, ``%timeit f(x)`` with ``f`` defined in the notebook and ``%timeit
rng.random(10)`` all run in full. Residual limit: dunder methods of user objects held
inside a safe container (``sum(list_of_my_objects)`` calls their ``__add__``) are taken
to leave no trace.

This module is imported inside the fresh IPython process or kernel, never by the CLI.
"""

from __future__ import annotations

import ast
import builtins
import inspect
import sys
import textwrap
import types
from typing import Any

from jupyter_repro.analysis import (
    MUTATING_FUNCTIONS,
    MUTATORS,
    analyze_cell,
    possibly_mutated,
)

#: Top-level packages whose functions change nothing but their arguments (and those
#: only as :data:`MUTATORS` says); ``random`` submodules are excluded separately.
SAFE_MODULES = frozenset(
    {
        "numpy",
        "pandas",
        "math",
        "cmath",
        "statistics",
        "decimal",
        "fractions",
        "numexpr",
        "string",
    }
)
#: The functions of :mod:`operator` that compute a value and change nothing (Python
#: docs, "Standard operators as functions"); ``setitem``, ``delitem``, the in-place
#: ``iadd``... and ``methodcaller`` (calls any method by name) are left out, so
#: ``operator.delitem(L, 0)`` runs in full.
PURE_OPERATOR = frozenset(
    {
        "abs", "add", "and_", "attrgetter", "concat", "contains", "countOf", "eq",
        "floordiv", "ge", "getitem", "gt", "index", "indexOf", "inv", "invert", "is_",
        "is_not", "itemgetter", "le", "length_hint", "lshift", "lt", "matmul", "mod",
        "mul", "ne", "neg", "not_", "or_", "pos", "pow", "rshift", "sub", "truediv",
        "truth", "xor",
    }
)  # fmt: skip
#: Methods of NumPy ufuncs that return a new array (``out`` positional is caught
#: separately) and data attributes; ``np.add.at`` changes its first argument in place.
UFUNC_PURE_ATTRIBUTES = frozenset(
    {
        "reduce", "accumulate", "reduceat", "outer", "nin", "nout", "nargs", "ntypes",
        "types", "identity", "signature", "resolve_dtypes", "__name__", "__doc__",
    }
)  # fmt: skip
#: Positional arguments after which a ufunc method's next one is ``out``
#: (``np.add.reduce(a, axis, dtype, out)``).
UFUNC_METHOD_OUT = {"reduce": 3, "accumulate": 3, "reduceat": 4, "outer": 2}
#: Position of ``out`` in NumPy array methods (``a.sum(axis, dtype, out)``): a call of a
#: method of this name with more positional arguments may write into an array.
METHOD_OUT_POSITION = {
    "sum": 2, "mean": 2, "std": 2, "var": 2, "prod": 2, "cumsum": 2, "cumprod": 2,
    "min": 1, "max": 1, "argmin": 1, "argmax": 1, "any": 1, "all": 1, "round": 1,
    "take": 2, "dot": 1, "trace": 4, "compress": 2, "clip": 2,
}  # fmt: skip
#: Keywords naming an object a call writes into (``out=a``, ``target=df`` of
#: ``pd.eval``, ``inplace=True``); any value keeps the full length, except
#: ``inplace=False``.
WRITE_KEYWORDS = frozenset({"out", "target", "inplace"})
#: Builtins that neither change their arguments, print, nor consume an iterator given
#: as a free name (iterators are not :data:`SAFE_TYPES`, so they never get here).
SAFE_BUILTINS = frozenset(
    {
        "abs",
        "all",
        "any",
        "bool",
        "bytes",
        "complex",
        "dict",
        "divmod",
        "enumerate",
        "filter",
        "float",
        "frozenset",
        "hash",
        "int",
        "isinstance",
        "issubclass",
        "len",
        "list",
        "map",
        "max",
        "min",
        "pow",
        "range",
        "repr",
        "reversed",
        "round",
        "set",
        "slice",
        "sorted",
        "str",
        "sum",
        "tuple",
        "type",
        "zip",
        "True",
        "False",
        "None",
        "object",
        "ord",
        "chr",
        "hex",
        "bin",
        "oct",
        "format",
    }
)
#: Value types a statement may read freely: numbers, strings, the builtin containers.
SAFE_TYPES = (
    int,
    float,
    complex,
    bool,
    str,
    bytes,
    tuple,
    list,
    dict,
    set,
    frozenset,
    range,
    slice,
    type(None),
)
#: Methods that return a new object or a view and change nothing (NumPy, pandas, str,
#: the builtin containers); ``inplace=True`` is caught by the analysis.
PURE_METHODS = frozenset(
    {
        "sum",
        "mean",
        "std",
        "var",
        "min",
        "max",
        "prod",
        "cumsum",
        "cumprod",
        "argmin",
        "argmax",
        "any",
        "all",
        "copy",
        "astype",
        "reshape",
        "ravel",
        "flatten",
        "transpose",
        "dot",
        "round",
        "tolist",
        "item",
        "count",
        "index",
        "get",
        "keys",
        "values",
        "items",
        "startswith",
        "endswith",
        "split",
        "join",
        "strip",
        "lower",
        "upper",
        "format",
        "find",
        "query",
        "eval",
        "groupby",
        "agg",
        "aggregate",
        "head",
        "tail",
        "describe",
        "median",
        "nunique",
        "unique",
        "value_counts",
        "isnull",
        "isna",
        "notnull",
        "notna",
        "dropna",
        "fillna",
        "sort_values",
        "sort_index",
        "merge",
        "pivot_table",
        "stack",
        "unstack",
        "nonzero",
        "searchsorted",
        "take",
        "diagonal",
        "trace",
        "conj",
        "cumulative_sum",
        "to_numpy",
        "sub",
        "add",
        "mul",
        "div",
        "truediv",
        "floordiv",
        "pow",
        "abs",
        "where",
        "mask",
        "rolling",
        "resample",
        "iterrows",
        "itertuples",
        "reindex",
        "set_index",
        "reset_index",
        "rename",
        "drop",
        "apply",
        "map",
        "combine",
        "compress",
        "squeeze",
        "swapaxes",
        "view",
        "tobytes",
    }
) - frozenset(MUTATORS)
#: Module functions that write files or change global settings.
WRITING_FUNCTIONS = frozenset(
    {
        "save",
        "savez",
        "savez_compressed",
        "savetxt",
        "tofile",
        "dump",
        "seed",
        "set_printoptions",
        "set_option",
        "reset_option",
        "set_eng_float_format",
        "setbufsize",
        "seterr",
        "seterrcall",
        "copyto",
        "getcontext",
        "setcontext",
        "localcontext",
        "set_num_threads",
        "set_vml_num_threads",
        "set_vml_accuracy_mode",
    }
)


def _parse_timeit(magics, line: str, cell: str | None, shell) -> tuple[Any, str] | None:
    """``(opts, code)`` as IPython's ``%timeit`` reads them; ``None`` if unparsable."""
    try:
        opts, stmt = magics.parse_options(
            line, "n:r:tcp:qo", posix=False, strict=False, preserve_non_opts=True
        )
    except Exception:
        return None
    parts = [stmt] if cell is None else [stmt, cell]
    try:
        code = "\n".join(shell.transform_cell(p) for p in parts)
        ast.parse(code)
    except Exception:
        return None
    return opts, code


def _safe_value(value: Any) -> bool:
    """Whether a free name's object may be read by a statement that runs once."""
    if _is_operator(value):
        # The module itself (its attributes are checked where they are loaded), one
        # of its pure functions, or an ``itemgetter``/``attrgetter`` object.
        return (
            isinstance(value, types.ModuleType)
            or getattr(value, "__name__", None) in PURE_OPERATOR
            or type(value).__name__ in PURE_OPERATOR
        )
    if isinstance(value, types.ModuleType):
        parts = value.__name__.split(".")
        return parts[0] in SAFE_MODULES and "random" not in parts
    if isinstance(value, type):
        if value in SAFE_TYPES:
            return True
        module = value.__module__
    elif isinstance(value, SAFE_TYPES):
        return True
    elif callable(value):
        # A function of a safe module (np.sum, math.sqrt) or a NumPy ufunc; a notebook's
        # own function (module ``__main__``) is not.
        name = getattr(value, "__name__", "")
        if name in WRITING_FUNCTIONS or name in MUTATORS:
            return False
        module = getattr(value, "__module__", None) or type(value).__module__
    else:
        module = type(value).__module__
    parts = (module or "").split(".")
    return parts[0] in SAFE_MODULES and "random" not in parts


def _is_operator(value: Any) -> bool:
    """The :mod:`operator` module, one of its functions, or an object of its types."""
    if isinstance(value, types.ModuleType):
        return value.__name__ in ("operator", "_operator")
    module = getattr(value, "__module__", None) if callable(value) else None
    if not isinstance(module, str):
        module = type(value).__module__
    return module in ("operator", "_operator") or type(value).__module__ in (
        "operator",
        "_operator",
    )


def _ufunc_type() -> type | None:
    """``numpy.ufunc`` if NumPy is imported in this process (never imported here)."""
    numpy = sys.modules.get("numpy")
    return getattr(numpy, "ufunc", None)


_MISSING = object()


def _resolve(node: ast.expr, namespace: dict, local: set[str]) -> Any:
    """The object a ``name`` or ``module.attr`` chain refers to, or ``_MISSING``.

    Attributes are read only from modules and NumPy ufuncs (no user ``__getattr__`` or
    property runs); anything else, or a local name, is ``_MISSING``.
    """
    if isinstance(node, ast.Name):
        if node.id in local:
            return _MISSING
        return namespace.get(node.id, _MISSING)
    if isinstance(node, ast.Attribute):
        base = _resolve(node.value, namespace, local)
        ufunc = _ufunc_type()
        if isinstance(base, types.ModuleType) or (ufunc is not None and isinstance(base, ufunc)):
            try:  # a module's __getattr__ may do anything; the statement reads it anyway
                return getattr(base, node.attr, _MISSING)
            except Exception:
                return _MISSING
    return _MISSING


def _positional_out(node: ast.Call, namespace: dict, local: set[str]) -> bool:
    """Whether a call passes ``out`` positionally: more positional arguments than a
    ufunc's ``nin`` (``np.negative(a, a)``), than a ufunc method takes before ``out``
    (:data:`UFUNC_METHOD_OUT`), than a NumPy function's signature has before ``out``
    (``np.dot(a, b, c)``), or than :data:`METHOD_OUT_POSITION` gives for an array
    method. A ``*args`` argument counts as too many."""
    if any(isinstance(a, ast.Starred) for a in node.args):
        return True
    count = len(node.args)
    func = node.func
    if isinstance(func, ast.Attribute) and count > METHOD_OUT_POSITION.get(func.attr, count):
        return True
    callee = _resolve(func, namespace, local)
    if callee is _MISSING:
        return False
    ufunc = _ufunc_type()
    if ufunc is not None and isinstance(callee, ufunc):
        return count > callee.nin
    owner = _resolve(func.value, namespace, local) if isinstance(func, ast.Attribute) else None
    if ufunc is not None and isinstance(owner, ufunc):
        return count > UFUNC_METHOD_OUT.get(func.attr, 0)
    module = getattr(callee, "__module__", None) or ""
    if callable(callee) and module.split(".")[0] == "numpy":
        try:
            params = list(inspect.signature(callee).parameters)
        except (TypeError, ValueError):
            return count > 1  # no signature: only ``f(x)`` is sure to have no ``out``
        return "out" in params and count > params.index("out")
    return False


def node_level(node: ast.Import | ast.ImportFrom) -> int:
    """The relative level of ``from . import x`` (0 for absolute imports)."""
    return getattr(node, "level", 0) or 0


#: How deep calls into the notebook's own functions are followed.
MAX_DEPTH = 3
#: NumPy constructors whose result is a new array of numbers: a local bound only to one of
#: these (or to a constant) is private to the timed code, whatever changes it.
FRESH_ARRAYS = frozenset({"empty", "zeros", "ones", "full", "arange", "linspace"})


def _fresh(value: ast.expr, namespace: dict) -> bool:
    """A constant, or a new numeric NumPy array (``np.empty(n)``, not ``dtype=object``)."""
    if isinstance(value, ast.Constant):
        return True
    if not (isinstance(value, ast.Call) and isinstance(value.func, ast.Attribute)):
        return False
    module = value.func.value
    if not (
        value.func.attr in FRESH_ARRAYS
        and isinstance(module, ast.Name)
        and getattr(namespace.get(module.id), "__name__", None) == "numpy"
    ):
        return False
    for node in ast.walk(value):
        if isinstance(node, ast.Name) and node.id == "object":
            return False
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return False
    return True


class _ReturnToExpr(ast.NodeTransformer):
    def visit_Return(self, node: ast.Return) -> ast.AST:
        return ast.copy_location(ast.Expr(node.value or ast.Constant(None)), node)

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST:
        return node  # a nested function keeps its own returns


def _function_reason(function: types.FunctionType, depth: int) -> str | None:
    """Why calling a notebook function could leave a trace, or ``None``.

    Its body is checked as timed code whose parameters are the caller's objects; a
    closure, a decorator, a default that is not a safe value, or source that cannot be
    found keeps the full length.
    """
    if depth > MAX_DEPTH:
        return "too deep"
    if function.__closure__ or function.__kwdefaults__:
        return "closure"
    try:
        source = textwrap.dedent(inspect.getsource(function))
        tree = ast.parse(source)
    except (OSError, TypeError, SyntaxError):
        return "no source"
    definition = tree.body[0] if tree.body else None
    if not isinstance(definition, ast.FunctionDef) or definition.decorator_list:
        return "decorated"
    if any(not _safe_value(d) for d in function.__defaults__ or ()):
        return "default"
    args = definition.args
    params = [a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs)]
    params += [a.arg for a in (args.vararg, args.kwarg) if a is not None]
    body = ast.Module(body=[_ReturnToExpr().visit(n) for n in definition.body], type_ignores=[])
    return code_reason(ast.unparse(body), function.__globals__, depth, frozenset(params))


def _module_chain(node: ast.expr, modules: set[str]) -> bool:
    """``np.linalg`` and the like: a pure attribute chain rooted at a safe module."""
    while isinstance(node, ast.Attribute):
        if node.attr == "random":
            return False
        node = node.value
    return isinstance(node, ast.Name) and node.id in modules


def full_length_reason(line: str, cell: str | None, namespace: dict, magics, shell) -> str | None:
    """Why this ``%timeit`` call must run in full, or ``None`` if running once is safe.

    Args:
        line: the magic's line (options, then the statement or, for ``%%timeit``, the
            setup).
        cell: the ``%%timeit`` cell body, ``None`` for the line magic.
        namespace: where free names are looked up (the user namespace, or the local
            namespace of a function calling ``%timeit``).
        magics, shell: IPython's ``ExecutionMagics`` and ``InteractiveShell``.

    Returns:
        A short reason (``"-o"``, ``"mutates L"``, ``"calls f"``...) or ``None``.
    """
    parsed = _parse_timeit(magics, line, cell, shell)
    if parsed is None:
        return "unparsable"
    opts, code = parsed
    if "o" in opts:
        return "-o"
    return code_reason(code, namespace)


def code_reason(
    code: str, namespace: dict, depth: int = 0, params: frozenset[str] = frozenset()
) -> str | None:
    """Why ``code`` (plain Python) could leave a trace when run again, or ``None``.

    ``namespace`` resolves its free names; ``params`` are names bound before it runs
    (a function's parameters: local, but their objects come from the caller, so changing
    them counts as a mutation). Notebook functions it calls are checked the same way, to
    a depth of :data:`MAX_DEPTH`.
    """
    tree = ast.parse(code)
    analysis = analyze_cell(code, transformed=True, tree=tree)
    if analysis.syntax_error is not None or analysis.star_import:
        return "unparsable"
    if analysis.file_writes:
        return "writes a file"
    local: set[str] = set(params)
    constant_only: dict[str, bool] = {}
    defs: set[str] = set()
    imported_modules: dict[str, types.ModuleType | None] = {}
    for node in ast.walk(tree):
        if isinstance(
            node,
            ast.Global
            | ast.Nonlocal
            | ast.Await
            | ast.Yield
            | ast.YieldFrom
            | ast.Delete
            | ast.AsyncFunctionDef,
        ):
            return type(node).__name__.lower()
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store | ast.Del):
            local.add(node.id)
        elif isinstance(node, ast.arg):
            local.add(node.arg)
        elif isinstance(node, ast.FunctionDef | ast.ClassDef):
            local.add(node.name)
            defs.add(node.name)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            # An import inside the timed code binds a local; only safe modules may be used.
            for alias in node.names:
                module = (getattr(node, "module", None) or alias.name).split(".")
                if (
                    module[0] not in SAFE_MODULES
                    or "random" in [*module, alias.name]
                    or node_level(node)
                ):
                    return "imports " + ".".join(module)
                local.add((alias.asname or alias.name).split(".")[0])
                if isinstance(node, ast.Import):
                    bound = alias.asname or alias.name.split(".")[0]
                    imported_modules[bound] = sys.modules.get(
                        alias.name if alias.asname else alias.name.split(".")[0]
                    )
        if isinstance(node, ast.Assign):
            for target in node.targets:
                for name in ast.walk(target):
                    if isinstance(name, ast.Name) and isinstance(name.ctx, ast.Store):
                        ok = isinstance(target, ast.Name) and _fresh(node.value, namespace)
                        constant_only[name.id] = constant_only.get(name.id, True) and ok
        elif isinstance(
            node,
            ast.AugAssign | ast.AnnAssign | ast.For | ast.With | ast.NamedExpr | ast.comprehension,
        ):
            targets = [getattr(node, "target", None)] + [
                i.optional_vars for i in getattr(node, "items", [])
            ]
            for target in targets:
                if target is None:
                    continue
                for name in ast.walk(target):
                    if (
                        isinstance(name, ast.Name)
                        and isinstance(name.ctx, ast.Store)
                        and not isinstance(node, ast.AugAssign)
                    ):
                        constant_only[name.id] = False
                if isinstance(node, ast.AugAssign) and not isinstance(target, ast.Name):
                    return "mutates " + ast.unparse(target)
    mutated = possibly_mutated(analysis) | set(analysis.deep_mutates)
    mutated = {n for n in mutated if not (n in local and constant_only.get(n))}
    # ``np.add(a, b)`` and ``operator.add(x, y)`` read as mutator calls on a module:
    # a module function is judged by _attribute_reason below; only an assignment to
    # the module's attributes changes the module itself.
    assigned = {
        _root(target)
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute | ast.Subscript)
        and isinstance(node.ctx, ast.Store | ast.Del)
        for target in [node]
    }
    mutated = {
        n
        for n in mutated
        if n in local or n in assigned or not isinstance(namespace.get(n), types.ModuleType)
    }
    if mutated:
        return "mutates " + ", ".join(sorted(mutated))
    safe_modules = set(imported_modules)
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.id not in local:
            if node.id in namespace:
                value = namespace[node.id]
            elif hasattr(builtins, node.id):
                if node.id not in SAFE_BUILTINS:
                    return f"calls {node.id}"
                continue
            else:
                return f"reads {node.id}"
            if isinstance(value, types.FunctionType) and value.__module__ == "__main__":
                reason = _function_reason(value, depth + 1)
                if reason is not None:
                    return f"calls {node.id} ({reason})"
                continue
            if not _safe_value(value):
                return f"reads {node.id} ({type(value).__name__})"
            if isinstance(value, types.ModuleType):
                safe_modules.add(node.id)
    # Modules the timed code imports itself resolve as the ones already loaded.
    resolvable = {**namespace}
    for name in imported_modules:
        resolvable[name] = imported_modules[name]
    unresolved = local - {n for n, m in imported_modules.items() if m is not None}
    ufunc = _ufunc_type()
    for node in ast.walk(tree):
        # Every attribute, called or not (``s.map(L.append)`` calls ``L.append``).
        if isinstance(node, ast.Attribute):
            reason = _attribute_reason(node, _resolve(node.value, resolvable, unresolved))
            if reason is not None:
                return reason
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        for kw in node.keywords:
            if kw.arg is None:
                return "passes **kwargs"
            if kw.arg in WRITE_KEYWORDS and not (
                isinstance(kw.value, ast.Constant) and kw.value.value in (None, False)
            ):
                return f"passes {kw.arg}="
        if _positional_out(node, resolvable, unresolved):
            return "passes out positionally"
        func = node.func
        if isinstance(func, ast.Name):
            if func.id in local and func.id not in defs:
                return f"calls {func.id}"
        elif isinstance(func, ast.Attribute):
            name = func.attr
            owner = _resolve(func.value, resolvable, unresolved)
            if isinstance(owner, types.ModuleType) or (
                ufunc is not None and isinstance(owner, ufunc)
            ):
                continue  # judged by _attribute_reason
            if not (_module_chain(func.value, safe_modules) or name in PURE_METHODS):
                return f"calls .{name}"
        elif not isinstance(func, ast.Lambda):
            return "calls " + ast.unparse(func)
    return None


def _root(node: ast.expr) -> str | None:
    """The name an attribute/subscript chain starts from (``np`` for ``np.a[0].b``)."""
    while isinstance(node, ast.Attribute | ast.Subscript):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def _attribute_reason(node: ast.Attribute, owner: Any) -> str | None:
    """Why loading ``owner.attr`` could leave a trace, or ``None``.

    A module's function: for :mod:`operator` only :data:`PURE_OPERATOR`; for another
    module of :data:`SAFE_MODULES` anything but :data:`WRITING_FUNCTIONS` and the
    functions that change their first argument (``np.put``), never a ``random``
    submodule. A ufunc's attribute: only :data:`UFUNC_PURE_ATTRIBUTES` (not ``.at``).
    Anything else (a method of a value): not a name in :data:`MUTATORS` or
    :data:`WRITING_FUNCTIONS`, called or not.
    """
    name = node.attr
    ufunc = _ufunc_type()
    if isinstance(owner, types.ModuleType):
        if _is_operator(owner):
            return None if name in PURE_OPERATOR else f"uses operator.{name}"
        if not _safe_value(owner) or name == "random":
            return f"uses {owner.__name__}.{name}"
        if name in WRITING_FUNCTIONS or name in MUTATING_FUNCTIONS:
            return f"calls {name}"
        return None
    if ufunc is not None and isinstance(owner, ufunc):
        return None if name in UFUNC_PURE_ATTRIBUTES else f"uses ufunc .{name}"
    if name in MUTATORS or name in WRITING_FUNCTIONS:
        return f"uses .{name}"
    return None


__all__ = [
    "PURE_METHODS",
    "PURE_OPERATOR",
    "SAFE_BUILTINS",
    "SAFE_MODULES",
    "SAFE_TYPES",
    "WRITE_KEYWORDS",
    "code_reason",
    "full_length_reason",
]
