"""nb-smoke runs ``%timeit``/``%%timeit`` once by default only where that cannot change a
verdict (jupyter_repro/smoke/timeit_rule.py), in full otherwise, as a fresh kernel does.

Real installed CLI subprocesses in both modes; the fresh-kernel verdicts come from a real
kernel started by nbclient, not from nb-smoke.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

import nbformat
import pytest
from helpers import by_name, run_cli, smoke_json
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

MODES = ["script", "kernel"]


def fresh_kernel_passes(path) -> bool:
    """The truth: the notebook run top to bottom in a fresh python3 kernel (nbclient)."""
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb, kernel_name="python3", timeout=600, resources={"metadata": {"path": str(path.parent)}}
    )
    try:
        client.execute()
    except CellExecutionError:
        return False
    return True


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_pure_statements_run_once_and_are_counted(tmp_path, nb, mode):
    # Each of these, in full, takes seconds (7 repeats of 1000 loops of a 10**5 sum):
    # run once, the whole notebook takes well under a minute even on a loaded machine.
    path = nb(
        "pure.ipynb",
        "import numpy as np\nL = list(range(1000))\na = np.arange(10.0)",
        "%timeit -n 1000 -r 7 sum(range(10**5))",
        "%timeit -n 1000 -r 7 sum(L)\n%timeit -n 1000 -r 7 np.sum(a)\n%timeit -n 100 a.mean()",
        "%%timeit -n 1000 -r 7 x = list(range(10**4))\nsorted(x)",
        "%%timeit -n 100 -r 7\ntotal = 0\nfor i in range(10**5):\n    total += i",
        "def recip(values):\n    out = np.empty(len(values))\n    for i in range(len(values)):\n"
        "        out[i] = 1.0 / values[i]\n    return out",
        "%timeit -n 1000 -r 7 recip(np.arange(1.0, 10**4))",
    )
    junit = tmp_path / "j.xml"
    proc, report = smoke_json(tmp_path, path, "--mode", mode, "--junit-xml", junit)
    assert proc.returncode == 0, proc.stdout
    entry = report["notebooks"][0]
    assert (entry["timeit_shortened"], entry["timeit_full"]) == (7, 0)
    assert entry["seconds"] < 60, entry["seconds"]  # in full: 7 x 1000 x 10**5 additions alone
    assert "7 %timeit run once" in proc.stdout
    props = {p.get("name"): p.get("value") for p in ET.parse(junit).getroot().iter("property")}
    assert props == {"timeit_shortened": "7", "timeit_full": "0"}
    # --full-timeit: every statement in full (the cheap one shows it without minutes).
    cheap = nb("cheap.ipynb", "%timeit -n 3 -r 2 sum(range(10))")
    _proc, report = smoke_json(tmp_path, cheap, "--mode", mode, "--full-timeit")
    entry = report["notebooks"][0]
    assert (entry["timeit_shortened"], entry["timeit_full"]) == (0, 1)


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_repeated_side_effects_keep_full_length(tmp_path, nb, mode):
    """A later cell relies on how many times the statement ran: full length by default,
    so nb-smoke agrees with a fresh kernel; ``--fast`` (always once) does not, which is
    why it is opt-in."""
    line = nb("line.ipynb", "L = []", "%timeit L.append(1)", "assert len(L) > 1000, len(L)")
    cell = nb("cell.ipynb", "L = []", "%%timeit\nL.append(1)", "assert len(L) > 1000, len(L)")
    func = nb(
        "func.ipynb",
        "L = []\ndef grow(xs):\n    xs.append(1)",
        "%timeit grow(L)",
        "assert len(L) > 1000, len(L)",
    )
    notebooks = [line, cell, func]
    for path in notebooks:
        assert fresh_kernel_passes(path), path
    proc, report = smoke_json(tmp_path, *notebooks, "--mode", mode, "-j", "2")
    assert proc.returncode == 0, proc.stdout
    for entry in by_name(report).values():
        assert entry["status"] == "passed"
        assert (entry["timeit_shortened"], entry["timeit_full"]) == (0, 1)
    proc, report = smoke_json(tmp_path, *notebooks, "--mode", mode, "-j", "2", "--fast")
    assert proc.returncode == 1
    for entry in by_name(report).values():
        assert entry["status"] == "failed" and "AssertionError: 1" in (
            entry["failure"]["ename"] + ": " + entry["failure"]["evalue"]
        )
        assert entry["timeit_shortened"] == 1


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_timeit_result_and_one_item_generator_keep_full_length(tmp_path, nb, mode):
    # -o: the TimeitResult is read later (its 7 runs); next(g) on a one-item generator
    # fails only on its second run: it counts as changing g, so it runs in full and
    # fails as in a fresh kernel.
    result = nb(
        "result.ipynb",
        "t = %timeit -o -n 10 sum(range(100))",
        "assert len(t.all_runs) == 7 and t.loops == 10, t.all_runs",
    )
    gen = nb("gen.ipynb", "g = (i for i in [1])", "%timeit next(g)", "print('after')")
    assert fresh_kernel_passes(result) and not fresh_kernel_passes(gen)
    proc, report = smoke_json(tmp_path, result, gen, "--mode", mode, "-j", "2")
    entries = by_name(report)
    assert entries["result.ipynb"]["status"] == "passed", proc.stdout
    assert entries["result.ipynb"]["timeit_full"] == 1
    assert entries["gen.ipynb"]["status"] == "failed"
    assert entries["gen.ipynb"]["failure"]["ename"] == "StopIteration"
    assert entries["gen.ipynb"]["timeit_full"] == 1


def test_fast_and_full_timeit_contradict(tmp_path, nb):
    path = nb("a.ipynb", "print(1)")
    proc = run_cli("nb-smoke", path, "--fast", "--full-timeit")
    assert proc.returncode == 2 and "--full-timeit" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_operator_delitem_fails_as_in_a_fresh_kernel(tmp_path, nb):
    # operator.delitem(L, 0) empties a 3-item list on its fourth run: a fresh kernel
    # fails with IndexError; run once it would pass. The default rule runs it in full.
    path = nb("delitem.ipynb", "import operator\nL = [1, 2, 3]", "%timeit operator.delitem(L, 0)")
    assert not fresh_kernel_passes(path)
    proc, report = smoke_json(tmp_path, path)
    assert proc.returncode == 1, proc.stdout
    entry = report["notebooks"][0]
    assert entry["status"] == "failed" and entry["failure"]["ename"] == "IndexError"
    assert (entry["timeit_shortened"], entry["timeit_full"]) == (0, 1)
    # --fast (always once) passes: what the default rule must not do here.
    proc, report = smoke_json(tmp_path, path, "--fast")
    assert proc.returncode == 0 and report["notebooks"][0]["status"] == "passed", proc.stdout
