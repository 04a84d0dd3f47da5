"""The ``%timeit`` run-once rule (jupyter_repro/smoke/timeit_rule.py) decided directly:
statements whose repetition a later cell can observe must keep the full length.

Each case is code a review found judged "once" although running it once instead of in
full changes what later cells see (``operator.delitem(L, 0)`` raises ``IndexError``
after three runs in a fresh kernel, once it passes). The namespace holds the real
objects (NumPy, pandas, lists), as in the kernel when ``%timeit`` runs.
"""

from __future__ import annotations

import pytest

from jupyter_repro.smoke.timeit_rule import code_reason

SETUP = """
import operator
import numpy as np
import pandas as pd
L = [1, 2, 3]
d = {"k": 1}
a = np.arange(3.0)
s = pd.Series([1, 2])
df = pd.DataFrame({"x": [1, 2]})
neg = np.negative
iadd = operator.iadd
add = operator.add
first = operator.itemgetter(0)
"""


@pytest.fixture(scope="module")
def namespace() -> dict:
    ns: dict = {"__name__": "__main__"}
    exec(SETUP, ns)
    return ns


FULL_LENGTH = [
    ("operator.delitem(L, 0)", "uses operator.delitem"),
    ("np.add.at(a, [0], 1)", "uses ufunc .at"),
    ("np.negative(a, a)", "passes out positionally"),
    ("operator.setitem(d, 'k', d['k'] + 1)", "uses operator.setitem"),
    ("operator.iadd(L, [1])", "uses operator.iadd"),
    ("s.map(L.append)", "uses .append"),
    ("sum(map(L.append, [1]))", "uses .append"),
    ("pd.eval('y = x * 2', target=df)", "passes target="),
    # the same kinds, reached otherwise
    ("neg(a, a)", "passes out positionally"),  # a ufunc bound to a name
    ("np.add.reduce(a, 0, None, a)", "passes out positionally"),  # a ufunc method
    ("a.sum(0, None, a)", "passes out positionally"),  # an array method
    # a NumPy function, out positional (found from its signature)
    ("np.cumsum(a, 0, None, a)", "passes out positionally"),
    ("np.negative(*[a, a])", "passes out positionally"),
    ("np.add(a, 1, **{'out': a})", "passes **kwargs"),
    ("f = np.add.at\nf(a, [0], 1)", "uses ufunc .at"),
    ("list(map(operator.iadd, [L], [[1]]))", "uses operator.iadd"),
    ("iadd(L, [1])", "reads iadd (builtin_function_or_method)"),
    ("import numpy as np2\nnp2.negative(a, a)", "passes out positionally"),
    # operator is no longer a safe module to import inside the timed code
    ("import operator as op\nop.add(1, 2)", "imports operator"),
    ("x = L.pop", "uses .pop"),
    ("df.eval('y = x * 2', inplace=True)", "mutates df"),
    ("np.put(a, [0], 5)", "mutates a"),
    ("np.random.rand(3)", "uses numpy.random.rand"),
    ("L.append(1)", "mutates L"),
    ("np.x = 1", "mutates np"),  # assigns to the module
    ("np.add.x = 1", "mutates np"),
]

ONCE = [
    "operator.add(1, 2)",
    "add(1, 2)",
    "first(L)",
    "np.add(a, a)",
    "np.negative(a)",
    "np.negative(a, out=None)",
    "np.add.reduce(a)",
    "np.add.reduceat(a, [0, 1])",
    "np.sort(a)",
    "a.sum(0)",
    "sum(map(abs, L))",
    "pd.eval('x + 1', local_dict={'x': 1})",
]


@pytest.mark.parametrize(("code", "reason"), FULL_LENGTH)
def test_observable_repetition_keeps_full_length(code, reason, namespace):
    assert code_reason(code, namespace) == reason, code


@pytest.mark.parametrize("code", ONCE)
def test_pure_calls_still_run_once(code, namespace):
    assert code_reason(code, namespace) is None, code_reason(code, namespace)
