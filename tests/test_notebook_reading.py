"""Bad input gets one clear line naming the file, and nothing is ever modified."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from helpers import make_notebook, run_cli

from jupyter_repro.errors import NotebookReadError
from jupyter_repro.notebook import discover_notebooks, read_notebook

BAD_INPUTS = {
    "invalid.ipynb": (b'{"cells": [', "invalid JSON at line 1"),
    "empty.ipynb": (b"", "empty file"),
    "binary.ipynb": (bytes(range(256)) * 4, "binary file"),
    "wrong_format.ipynb": (
        b'{"cells": [], "metadata": {}, "nbformat": 99, "nbformat_minor": 0}',
        "unsupported nbformat 99",
    ),
    "not_a_notebook.ipynb": (b'{"hello": "world"}', "not a notebook"),
    "list.ipynb": (b"[1, 2]", "not a notebook"),
}


@pytest.mark.parametrize("name", sorted(BAD_INPUTS))
def test_malformed_notebook_gives_a_one_line_reason(tmp_path, name):
    data, cause = BAD_INPUTS[name]
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(NotebookReadError) as info:
        read_notebook(path)
    assert cause in str(info.value)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(NotebookReadError, match="no such file"):
        read_notebook(tmp_path / "nope.ipynb")


def test_bad_inputs_are_reported_and_the_good_one_still_runs(tmp_path):
    for name, (data, _) in BAD_INPUTS.items():
        (tmp_path / name).write_bytes(data)
    good = make_notebook(tmp_path / "good.ipynb", "print('fine')")
    before = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in tmp_path.iterdir()}
    proc = run_cli("nb-smoke", tmp_path, tmp_path / "missing.ipynb", "-j", "2")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    for name, (_, cause) in BAD_INPUTS.items():
        line = next(ln for ln in lines if name in ln)
        assert line.startswith("ERR") and cause in line
    assert any(ln.startswith("PASS") and str(good) in ln for ln in lines)
    assert any("missing.ipynb" in ln and "no such file" in ln for ln in lines)
    assert "Traceback" not in proc.stdout + proc.stderr
    after = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in tmp_path.iterdir()}
    assert after == before, "nb-smoke modified or created files beside the notebooks"


def test_folders_are_searched_recursively_skipping_checkpoints_and_hidden(tmp_path):
    make_notebook(tmp_path / "a.ipynb", "1")
    make_notebook(tmp_path / "sub" / "deeper" / "b.ipynb", "1")
    make_notebook(tmp_path / ".ipynb_checkpoints" / "a-checkpoint.ipynb", "1")
    make_notebook(tmp_path / ".hidden" / "c.ipynb", "1")
    (tmp_path / "script.py").write_text("print('not a notebook')\n")
    (tmp_path / "text_nb.py").write_text("# %%\nx = 1\n")
    found = [p.relative_to(tmp_path).as_posix() for p in discover_notebooks([tmp_path])]
    assert found == ["a.ipynb", "sub/deeper/b.ipynb"]
    with_text = [p.name for p in discover_notebooks([tmp_path], jupytext=True)]
    assert "text_nb.py" in with_text and "script.py" not in with_text


def test_jupytext_percent_and_markdown_notebooks_run(tmp_path):
    py = tmp_path / "nb.py"
    py.write_text("# %%\nx = 40\n\n# %%\nprint('answer', x + 2)\n")
    md = tmp_path / "nb.md"
    md.write_text(
        "---\njupyter:\n  kernelspec:\n    name: python3\n    language: python\n"
        "    display_name: Python 3\n---\n\n# Title\n\n```python\ny = 1\n```\n\n"
        "```python\nassert y == 2, 'y is not 2'\n```\n"
    )
    proc = run_cli("nb-smoke", py, md)
    out = proc.stdout
    assert proc.returncode == 1, out
    assert any(ln.startswith("PASS") and "nb.py" in ln for ln in out.splitlines())
    fail = next(ln for ln in out.splitlines() if "nb.md" in ln)
    assert fail.startswith("FAIL") and "AssertionError: y is not 2" in fail
    assert py.read_text().startswith("# %%")  # not rewritten


def test_text_notebook_that_does_not_parse_is_reported(tmp_path):
    bad = tmp_path / "broken.md"
    bad.write_bytes(b"\xff\xfe not utf8")
    proc = run_cli("nb-smoke", bad)
    assert proc.returncode == 2
    assert "broken.md" in proc.stdout and "UTF-8" in proc.stdout


def test_paths_in_messages_are_as_given(tmp_path):
    p = Path("rel") / "x.ipynb"
    (tmp_path / "rel").mkdir()
    (tmp_path / p).write_text("{")
    proc = run_cli("nb-smoke", p, cwd=tmp_path)
    assert f"ERR   {p}: invalid JSON" in proc.stdout
