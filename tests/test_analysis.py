"""Static analysis of cells: one table is the spec (Python's naming and binding rules)."""

from __future__ import annotations

import pytest

from jupyter_repro.analysis import analyze_cell, resolve_calls

# source, reads, defines, mutates
CASES = [
    ("x = 0", set(), {"x"}, set()),
    ("y = x + 1", {"x"}, {"y"}, set()),
    ("b = a + 1; a = 42", {"a"}, {"a", "b"}, set()),  # read before its own rebinding
    ("a = 1; b = a", set(), {"a", "b"}, set()),
    ("xs = [i for i in range(n)]", {"n"}, {"xs"}, set()),  # comprehension var is local
    ("d = {k: v for k, v in pairs if k not in skip}", {"pairs", "skip"}, {"d"}, set()),
    ("[y := t for t in r]", {"r"}, {"y"}, set()),  # PEP 572: walrus binds outside
    ("def g():\n    return k * 2", set(), {"g"}, set()),  # body runs later
    ("def g(a=default):\n    return a", {"default"}, {"g"}, set()),  # defaults run now
    ("@deco\ndef g(): pass", {"deco"}, {"g"}, set()),
    ("class C:\n    a = 1\n    b = a + w", {"w"}, {"C"}, set()),
    ("import numpy as np\nv = np.zeros(3)", set(), {"np", "v"}, set()),
    ("import os.path", set(), {"os"}, set()),
    ("from m import a as b", set(), {"b"}, set()),
    ("lst.append(2)", {"lst"}, set(), {"lst"}),
    ("df.drop(columns=['a'], inplace=True)", {"df"}, set(), {"df"}),
    ("df2 = df.drop(columns=['a'])", {"df"}, {"df2"}, set()),
    ("a[0] = 8", {"a"}, set(), {"a"}),
    ("obj.attr = 1", {"obj"}, set(), {"obj"}),
    ("x += 1", {"x"}, {"x"}, {"x"}),
    ("del cache['k']", {"cache"}, set(), {"cache"}),
    ("np.multiply(a, b, out=c)", {"np", "a", "b", "c"}, set(), {"c"}),
    ("np.copyto(dst, src)", {"np", "dst", "src"}, set(), {"dst"}),
    ("for i in range(3):\n    total = total + i", {"total"}, {"i", "total"}, set()),
    ("with open(p) as fh:\n    text = fh.read()", {"p"}, {"fh", "text"}, set()),
    (
        "try:\n    import yaml\nexcept ImportError as e:\n    msg = str(e)",
        set(),
        {"yaml", "msg"},
        set(),
    ),
    ("try:\n    pass\nexcept ValueError as err:\n    pass\nprint(err)", {"err"}, set(), set()),
    ("print(len(data))", {"data"}, set(), set()),
    ("display(df)", {"df"}, set(), set()),  # display/print are provided
    ("_ + Out[1] + _3", set(), set(), set()),  # IPython's history names
    ("%matplotlib inline\nimport pandas as pd", set(), {"pd"}, set()),
    ("!ls\ndf = pd.DataFrame()", {"pd"}, {"df"}, set()),
    ("files = !ls {folder}", set(), {"files"}, set()),
    ("%time x = f(z)", {"f", "z"}, {"x"}, set()),
    ("%timeit -n 10 -r 2 g(q)", {"g", "q"}, set(), set()),
    ("%%time\nres = compute(n)", {"compute", "n"}, {"res"}, set()),
    ("%%capture captured\nprint(1)", set(), {"captured"}, set()),
    ("%%bash\necho $undefined_in_python", set(), set(), set()),
    ("match cmd:\n    case [op, *args]:\n        r = op", {"cmd"}, {"op", "args", "r"}, set()),
]


@pytest.mark.parametrize(("source", "reads", "defines", "mutates"), CASES)
def test_names_read_defined_and_mutated(source, reads, defines, mutates):
    a = analyze_cell(source)
    assert a.syntax_error is None
    assert set(a.reads) == reads
    assert set(a.defines) == defines
    assert set(a.mutates) == mutates


def test_function_bodies_record_the_globals_they_read_for_their_callers():
    definer = analyze_cell("def g():\n    local = 1\n    return k * local + helper()")
    assert definer.function_reads["g"] == {"k", "helper"}
    caller = analyze_cell("y = g()")
    assert resolve_calls(caller, definer.function_reads) == {"g", "k", "helper"}
    # Bound before the call: not a read. Bound only by the call's own assignment: a read.
    assert resolve_calls(analyze_cell("k = 5\ny = g()"), definer.function_reads) == {
        "g", "helper"
    }  # fmt: skip
    reader = analyze_cell("def f():\n    return b + 1")
    assert "b" in resolve_calls(analyze_cell("b = f()"), reader.function_reads)


def test_nested_scopes_and_globals_in_functions():
    a = analyze_cell(
        "def outer(a):\n    b = a\n    def inner():\n        return b + c\n"
        "    return [x + d for x in inner()]"
    )
    assert a.function_reads["outer"] == {"c", "d"}


def test_del_name_and_star_import():
    a = analyze_cell("x = 1\ndel x\ndel y")
    assert a.deletes == {"x", "y"} and "x" not in a.defines
    assert analyze_cell("from numpy import *").star_import
    assert analyze_cell("%run helper.py").star_import


def test_syntax_error_is_returned_not_raised():
    a = analyze_cell("def f(:\n  pass")
    assert isinstance(a.syntax_error, SyntaxError)
    assert a.reads == frozenset()


def test_string_literals_are_collected():
    assert analyze_cell("df = load('/home/ana/data.csv', sep=',')").strings[0] == (
        "/home/ana/data.csv"
    )


# The globals a function body reads, as Python's compiler (symtable) resolves them:
# source of one cell, function name, globals read, globals declared and assigned.
FUNCTION_CASES = [
    pytest.param(  # field case: the inner `i` is the inner comprehension's own variable
        "def make_df(cols, ind):\n    return {c: [str(c) + str(i) for i in ind] for c in cols}",
        "make_df",
        set(),
        set(),
        id="nested-comprehension",
    ),
    pytest.param(
        "def f(grid):\n    return [[x * k for x in row if x > lo] for row in grid]",
        "f",
        {"k", "lo"},
        set(),
        id="nested-comprehension-globals",
    ),
    pytest.param(
        "def f(xs):\n    return sorted(xs, key=lambda r: r[col] + r[0])",
        "f",
        {"col"},
        set(),
        id="lambda",
    ),
    pytest.param(
        "def f():\n    return lambda x, *a, k=dflt, **kw: (x, a, k, kw, y)",
        "f",
        {"dflt", "y"},
        set(),
        id="lambda-params-and-default",
    ),
    pytest.param(  # a method does not see the class body's names: `b` is a global there
        "def f():\n    a = 1\n    class K:\n        b = a + g\n"
        "        def m(self):\n            return b\n    return K",
        "f",
        {"g", "b"},
        set(),
        id="class-body",
    ),
    pytest.param(
        "def outer():\n    n = 0\n    def inc():\n        nonlocal n\n        n += step\n"
        "    inc()\n    return n",
        "outer",
        {"step"},
        set(),
        id="nonlocal",
    ),
    pytest.param(
        "def bump():\n    global counter\n    counter += 1",
        "bump",
        {"counter"},
        {"counter"},
        id="global-assigned",
    ),
    pytest.param(
        "def get():\n    global cfg\n    return cfg['a']",
        "get",
        {"cfg"},
        set(),
        id="global-read-only",
    ),
    pytest.param(
        "def outer():\n    def inner():\n        global made\n        made = 1\n    inner()",
        "outer",
        set(),
        {"made"},
        id="global-in-nested-function",
    ),
    pytest.param(  # PEP 572: the walrus binds `hit` in the function, not the comprehension
        "def f(rows):\n    if any((hit := r) > limit for r in rows):\n        return hit",
        "f",
        {"limit"},
        set(),
        id="walrus-in-comprehension",
    ),
    pytest.param(
        "def f(cmd):\n    match cmd:\n        case Point(x=px):\n            return px + offset\n"
        "        case {'k': v, **rest}:\n            return v, rest\n"
        "        case [first, *others]:\n            return first, others\n"
        "        case _:\n            return default",
        "f",
        {"Point", "offset", "default"},
        set(),
        id="match",
    ),
    pytest.param(
        "def f():\n    try:\n        return g()\n    except Oops as err:\n        return err",
        "f",
        {"g", "Oops"},
        set(),
        id="except-as",
    ),
    pytest.param(
        "def f():\n    @cache\n    def g(a=dflt):\n        import os\n        return os.sep + a\n"
        "    return g",
        "f",
        {"cache", "dflt"},
        set(),
        id="nested-def-decorator-default-import",
    ),
    pytest.param(
        "async def f(src):\n    return [x async for x in src if x in wanted]",
        "f",
        {"wanted"},
        set(),
        id="async-comprehension",
    ),
    pytest.param(
        "def f():\n    x = 1\n    del x\n    for j in range(3):\n        total = j\n"
        "    with open(p) as fh:\n        return fh, total",
        "f",
        {"p"},
        set(),
        id="locals-of-all-kinds",
    ),
    pytest.param(  # IPython syntax around the def is transformed first, as in the kernel
        "%matplotlib inline\n!echo hi\ndef plot(df):\n"
        "    return [ax.plot(df[c]) for c in df.columns]\nfiles = !ls",
        "plot",
        {"ax"},
        set(),
        id="ipython-line-magics",
    ),
    pytest.param(
        "%%time\ndef g(rows):\n    return {r: [r * i for i in range(n)] for r in rows}",
        "g",
        {"n"},
        set(),
        id="ipython-cell-magic",
    ),
    pytest.param(  # the cell as a whole does not compile: each function is read alone
        "def f(ind):\n    return [[i for i in ind] for j in js]\nnonlocal q",
        "f",
        {"js"},
        set(),
        id="cell-rejected-by-compiler",
    ),
]


@pytest.mark.parametrize(("source", "function", "reads", "global_writes"), FUNCTION_CASES)
def test_function_body_globals_follow_pythons_scopes(source, function, reads, global_writes):
    a = analyze_cell(source)
    assert a.syntax_error is None
    assert set(a.function_reads[function]) == reads
    assert set(a.function_global_writes.get(function, ())) == global_writes


def test_nested_comprehension_function_does_not_read_a_global_i_when_called():
    definer = analyze_cell(
        "def make_df(cols, ind):\n    return {c: [str(c) + str(i) for i in ind] for c in cols}"
    )
    caller = analyze_cell("df = make_df('ABC', range(3))")
    assert resolve_calls(caller, definer.function_reads) == {"make_df"}
