"""Shapes found by running nb-smoke on real notebooks nobody on the team wrote.

``benchmarks/smoke_vs_peers.py`` runs nb-smoke and fresh kernels (nbconvert, nbmake) on
the notebooks installed packages ship and on jrjohansson/scientific-python-lectures; every
verdict that differed from a fresh kernel's and was a bug is reproduced here, reduced to
its shape, and run through the installed ``nb-smoke`` CLI (docs/benchmarks.md).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat import v4


def _cli() -> str:
    here = Path(sys.executable).parent / "nb-smoke"
    return str(here) if here.exists() else (shutil.which("nb-smoke") or "nb-smoke")


def _notebook(path: Path, *sources: str, kernelspec: dict | None = None) -> Path:
    nb = v4.new_notebook(cells=[v4.new_code_cell(s) for s in sources])
    if kernelspec is not None:
        nb.metadata["kernelspec"] = kernelspec
    nbformat.write(nb, path)
    return path


def _smoke(tmp_path: Path, path: Path, *args: str) -> tuple[subprocess.CompletedProcess, dict]:
    report = tmp_path / "report.json"
    proc = subprocess.run(
        [_cli(), str(path), "--json", str(report), *args],
        capture_output=True,
        text=True,
        timeout=180,
        stdin=subprocess.DEVNULL,
    )
    assert report.exists(), proc.stdout + proc.stderr
    return proc, json.loads(report.read_text(encoding="utf-8"))["notebooks"][0]


# papermill/tests/notebooks/test_autosave.ipynb saves kernelspec {"name": "python"}.
# jupyter_client's KernelManager starts that name as "python3", so nbconvert, nbmake and
# papermill run the notebook; nb-smoke --mode kernel refused it as not installed.
PYTHON_ALIAS = {"name": "python", "display_name": "Python", "language": "python"}


@pytest.mark.slow
def test_kernelspec_named_python_runs_in_kernel_mode(tmp_path):
    path = _notebook(tmp_path / "alias.ipynb", "x = 41", "print(x + 1)", kernelspec=PYTHON_ALIAS)
    proc, entry = _smoke(tmp_path, path, "--mode", "kernel")
    assert entry["status"] == "passed", proc.stdout + proc.stderr
    assert proc.returncode == 0
    assert "42" in "".join(entry["output"].values())


def test_kernelspec_named_python_gets_no_not_installed_note_in_script_mode(tmp_path):
    path = _notebook(tmp_path / "alias.ipynb", "x = 41", "print(x + 1)", kernelspec=PYTHON_ALIAS)
    proc, entry = _smoke(tmp_path, path)
    assert entry["status"] == "passed", proc.stdout + proc.stderr
    assert not [n for n in entry["notices"] if n["kind"] == "kernelspec_not_installed"]


# Lecture-4-Matplotlib.ipynb (scientific-python-lectures), cell 67, sets
# rcParams["text.usetex"] = True on a machine without LaTeX. With %matplotlib inline the
# figure is drawn after the cell (a post_execute callback, then display()); the drawing
# error is shown as a traceback, but ipykernel replies "ok" (only a traceback shown while
# formatting the cell's *result* fails the request), so a fresh kernel, nbconvert and
# papermill run on to the next cells. Script mode failed the notebook at this cell.
MODES = ["script", "kernel"]
BAD_HTML = "class Bad:\n    def _repr_html_(self):\n        raise ValueError('bad html')\n"


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_error_drawing_an_inline_figure_after_the_cell_does_not_fail_it(tmp_path, mode):
    path = _notebook(
        tmp_path / "figure.ipynb",
        "%matplotlib inline\nimport matplotlib.pyplot as plt",
        # a mathtext parse error, raised only when the figure is drawn
        "fig, ax = plt.subplots()\nax.set_title(r'$\\frac{1}{$')\nprint('plotted')",
        "print('next cell ran')",
    )
    proc, entry = _smoke(tmp_path, path, "--mode", mode)
    assert entry["status"] == "passed", proc.stdout + proc.stderr
    assert "next cell ran" in "".join(entry["output"].values())


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_display_of_an_object_whose_repr_raises_does_not_fail_the_cell(tmp_path, mode):
    path = _notebook(
        tmp_path / "display.ipynb", BAD_HTML + "display(Bad())", "print('next cell ran')"
    )
    proc, entry = _smoke(tmp_path, path, "--mode", mode)
    assert entry["status"] == "passed", proc.stdout + proc.stderr
    text = "".join(entry["output"].values())
    assert "next cell ran" in text and "bad html" in text  # shown, as an error output


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_repr_raising_for_the_cells_result_still_fails_it(tmp_path, mode):
    path = _notebook(tmp_path / "result.ipynb", "x = 1", BAD_HTML + "Bad()", "print('no')")
    proc, entry = _smoke(tmp_path, path, "--mode", mode)
    assert entry["status"] == "failed", proc.stdout + proc.stderr
    failure = entry["failure"]
    assert (failure["cell_index"], failure["ename"], failure["evalue"]) == (
        1,
        "ValueError",
        "bad html",
    )
