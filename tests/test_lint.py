"""Static hygiene checks on saved notebooks (no execution)."""

from __future__ import annotations

import json

import nbformat
import pytest
from helpers import make_notebook, run_cli

from jupyter_repro.smoke.lint import lint_notebook
from jupyter_repro.verdicts import Verdict


def lint(tmp_path, *cells):
    path = make_notebook(tmp_path / "n.ipynb", *cells)
    return [(f.verdict, f.cell_index, f.names) for f in lint_notebook(nbformat.read(path, 4))]


def with_output(source, count, error=False):
    cell = nbformat.v4.new_code_cell(source)
    cell.execution_count = count
    if error:
        cell.outputs = [
            nbformat.v4.new_output("error", ename="NameError", evalue="x", traceback=[])
        ]
    return cell


def test_scenario_20_counts_out_of_order_and_unexecuted_gap(tmp_path):
    findings = lint(tmp_path, ("a = 1", [], 3), ("b = 2", [], 1), "c = 3", ("d = a + b + c", [], 2))
    assert (Verdict.OUT_OF_ORDER, 1, ()) in findings
    assert (Verdict.NEVER_RUN, 2, ("c",)) in findings
    assert not any(v is Verdict.OUT_OF_ORDER and i == 3 for v, i, _ in findings)


def test_clean_notebook_has_no_findings(tmp_path):
    assert (
        lint(tmp_path, ("import math", [], 1), ("r = math.sqrt(2)", [], 2), ("print(r)", [], 3))
        == []
    )


def test_name_defined_only_below_is_out_of_order(tmp_path):
    assert lint(tmp_path, "y = x + 1", "x = 1") == [(Verdict.OUT_OF_ORDER, 0, ("x",))]


def test_name_defined_nowhere_is_hidden_state_if_it_ran_else_undefined(tmp_path):
    found = lint(tmp_path, with_output("print(threshold)", 1), "print(other)")
    assert (Verdict.HIDDEN_STATE, 0, ("threshold",)) in found
    assert (Verdict.UNDEFINED_NAME, 1, ("other",)) in found
    errored = lint(tmp_path, with_output("print(threshold)", 1, error=True))
    assert errored == [(Verdict.UNDEFINED_NAME, 0, ("threshold",))]


def test_multiple_definitions_flag_each_definer_scenario_19(tmp_path):
    found = lint(tmp_path, "x = 1", "x = 2", "print(x)")
    assert found == [
        (Verdict.MULTIPLE_DEFINITIONS, 0, ("x",)),
        (Verdict.MULTIPLE_DEFINITIONS, 1, ("x",)),
    ]


def test_repeated_import_and_local_reuse_are_not_multiple_definitions(tmp_path):
    assert (
        lint(tmp_path, "import numpy as np", "import numpy as np\nnp.zeros(1)", "np.ones(1)") == []
    )
    assert lint(tmp_path, "fig = 1\nprint(fig)", "fig = 2\nprint(fig)") == []


def test_function_reads_count_at_the_call_site(tmp_path):
    found = lint(tmp_path, "def g():\n    return k * 2", "y = g()", "k = 5")
    assert found == [(Verdict.OUT_OF_ORDER, 1, ("k",))]


def test_star_import_silences_unknown_names(tmp_path):
    assert lint(tmp_path, "from math import *", "print(pi)") == []


def test_deleted_name_is_not_defined_any_more(tmp_path):
    found = lint(tmp_path, "x = 1", "del x", "print(x)", "x = 2")
    assert (Verdict.OUT_OF_ORDER, 2, ("x",)) in found
    gone = lint_notebook(
        nbformat.read(make_notebook(tmp_path / "d.ipynb", "y = 1", "del y", "print(y)"), 4)
    )
    assert [(f.verdict, f.cell_index, f.related_cells) for f in gone] == [
        (Verdict.UNDEFINED_NAME, 2, (1,))
    ]
    assert "deleted by cell 1 above" in gone[0].message


@pytest.mark.parametrize(
    "path",
    ["/home/ana/data.csv", "/Users/bob/Desktop/x.png", "C:\\Users\\eve\\f.txt", "/root/x"],
)
def test_home_paths(tmp_path, path):
    assert lint(tmp_path, f"f = {path!r}") == [(Verdict.HOME_PATH, 0, ())]


def test_relative_and_system_paths_are_fine(tmp_path):
    assert lint(tmp_path, "a = 'data/x.csv'\nb = '/usr/share/dict/words'\nc = '/homework'") == []


def test_magics_do_not_break_lint(tmp_path):
    assert (
        lint(tmp_path, "%matplotlib inline\nimport pandas as pd", "!ls\ndf = pd.DataFrame()") == []
    )


def test_lint_only_cli_runs_nothing_and_strict_fails(tmp_path):
    marker = tmp_path / "ran"
    path = make_notebook(
        tmp_path / "n.ipynb",
        ("print(threshold)", [], 2),
        ("x = 1", [], 1),
        f"open({str(marker)!r}, 'w')",
    )
    report = tmp_path / "r.json"
    proc = run_cli("nb-smoke", "--lint-only", path, "--json", report)
    assert proc.returncode == 0 and not marker.exists()
    data = json.loads(report.read_text())["notebooks"][0]
    assert data["mode"] == "lint"
    verdicts = {(f["verdict"], f["cell_index"]) for f in data["findings"]}
    assert verdicts == {("hidden_state", 0), ("out_of_order", 1)}
    assert "hidden_state: reads `threshold`" in proc.stdout
    assert run_cli("nb-smoke", "--lint-only", "--strict", path).returncode == 1


def test_example_notebooks_get_their_expected_verdicts():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "example_notebooks"
    expected = {
        "clean.ipynb": set(),
        "train_model.ipynb": set(),
        "hidden_state.ipynb": {("hidden_state", 2)},
        "out_of_order.ipynb": {("out_of_order", 1), ("out_of_order", 3)},
        "unseeded.ipynb": {("unseeded_random", 1)},
    }
    for name, verdicts in expected.items():
        nb = nbformat.read(root / name, 4)
        assert {(f.verdict.value, f.cell_index) for f in lint_notebook(nb)} == verdicts, name


def test_never_run_needs_consecutive_counts_and_a_reader_below(tmp_path):
    # [1] and [2] around it: nothing ran in between, and cell 2 reads what it sets.
    assert lint(tmp_path, ("a = 1", [], 1), "b = a * 2", ("print(b)", [], 2)) == [
        (Verdict.NEVER_RUN, 1, ("b",))
    ]
    # [1] then [3]: the missing [2] may be this very cell, its count cleared since.
    assert lint(tmp_path, ("a = 1", [], 1), "b = a * 2", ("print(b)", [], 3)) == []
    # Nothing below reads what it sets (a demo left unrun on purpose).
    assert lint(tmp_path, ("a = 1", [], 1), "fig = str(a)", ("print(a)", [], 2)) == []
    # It mutates a name a cell below reads.
    assert lint(tmp_path, ("xs = []", [], 1), "xs.append(1)", ("print(xs)", [], 2)) == [
        (Verdict.NEVER_RUN, 1, ("xs",))
    ]
    # A re-import of a module an executed cell above imported does not matter.
    assert (
        lint(tmp_path, ("import numpy as np", [], 1), "import numpy as np", ("np.ones(1)", [], 2))
        == []
    )


def test_no_out_of_order_claim_after_a_star_import(tmp_path):
    # The star import binds `cos` before the read; the later explicit import is no proof.
    found = lint(tmp_path, "from math import *\nx = cos(2 * pi)", "from math import cos, pi")
    assert found == []
    assert lint(tmp_path, "from math import *", "y = cos(0)", "from math import cos") == []


@pytest.mark.parametrize(
    "cells",
    [
        ("%pylab inline", "x = arange(3)"),
        ("%load_ext cython", "%%cython\ndef cy_f(int n):\n    return n", "cy_f(3)"),
    ],
)
def test_magics_that_bind_unknown_names_silence_missing_names(tmp_path, cells):
    assert lint(tmp_path, *[(c, [], i + 1) for i, c in enumerate(cells)]) == []


def test_the_field_case_make_df_has_no_hidden_state(tmp_path):
    """issue 14: a nested comprehension's variable was read as a global `i`."""
    found = lint(
        tmp_path,
        ("import pandas as pd", [], 1),
        (
            "def make_df(cols, ind):\n"
            "    data = {c: [str(c) + str(i) for i in ind] for c in cols}\n"
            "    return pd.DataFrame(data, ind)",
            [],
            2,
        ),
        ("make_df('ABC', range(3))", [], 3),
    )
    assert found == []
