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
