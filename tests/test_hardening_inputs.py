"""Issue 15 items 2, 6, 8: report paths never overwrite inputs, secrets in URIs are
masked by one rule, and crafted inputs are one line and exit 2 (through the installed
CLIs; nothing here needs a kernel to run, except where a notebook is smoked)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from helpers import make_notebook, run_cli

from jupyter_repro.uris import redact, redact_text


def _one_line(proc) -> str:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


@pytest.fixture
def project(tmp_path):
    (tmp_path / ".git").mkdir()
    nb = make_notebook(tmp_path / "analysis.ipynb", "x = 1")
    return tmp_path, nb, nb.read_bytes()


@pytest.mark.parametrize("option", ["--json", "--junit-xml", "--sarif"])
@pytest.mark.parametrize("spelling", ["same", "dotted", "symlink"])
def test_nb_smoke_refuses_a_report_path_that_is_one_of_its_notebooks(project, option, spelling):
    root, nb, content = project
    target = {"same": "analysis.ipynb", "dotted": "./sub/../analysis.ipynb"}.get(spelling)
    if spelling == "dotted":
        (root / "sub").mkdir()
    if spelling == "symlink":
        (root / "report.json").symlink_to(nb)
        target = "report.json"
    line = _one_line(run_cli("nb-smoke", "analysis.ipynb", option, target, cwd=root))
    assert option in line and "is an input" in line
    assert nb.read_bytes() == content


@pytest.mark.parametrize(
    "target, why", [(".git/report.json", "inside a .git folder"), (".", "is a folder")]
)
def test_report_paths_inside_git_or_onto_a_folder_are_refused(project, target, why):
    root, nb, content = project
    for cmd in (
        ["nb-smoke", "analysis.ipynb", "--json", target],
        ["nb-smoke", "analysis.ipynb", "--junit-xml", target],
        ["nb-smoke", "analysis.ipynb", "--sarif", target],
        ["jupyter-repro", "batch", "analysis.ipynb", "--json", target],
        ["jupyter-repro", "reproduce", "a" * 32, "--json", target],
    ):
        line = _one_line(run_cli(*cmd, cwd=root, timeout=120))
        assert why in line, (cmd, line)
    assert not (root / ".git" / "report.json").exists()
    assert nb.read_bytes() == content


def test_batch_refuses_a_json_report_onto_its_notebook_grid_or_data(project):
    root, nb, content = project
    (root / "grid.yaml").write_text("x: [1, 2]\n")
    (root / "data.csv").write_text("a\n1\n")
    for target in ("analysis.ipynb", "grid.yaml", "data.csv"):
        proc = run_cli(
            "jupyter-repro",
            *("batch", "analysis.ipynb", "--grid", "grid.yaml", "--data", "data.csv"),
            *("--json", target),
            cwd=root,
            timeout=120,
        )
        assert "is an input" in _one_line(proc)
    assert nb.read_bytes() == content
    assert (root / "grid.yaml").read_text() == "x: [1, 2]\n"


def _deep_notebook(path: Path, depth: int = 100_000) -> Path:
    nested = "[" * depth + "]" * depth
    path.write_text(
        '{"cells": [], "metadata": {"x": ' + nested + '}, "nbformat": 4, "nbformat_minor": 5}'
    )
    return path


def test_a_deeply_nested_notebook_is_one_line_not_a_recursion_error(tmp_path):
    deep = _deep_notebook(tmp_path / "deep.ipynb")
    good = make_notebook(tmp_path / "good.ipynb", "print('ran')")
    smoke = run_cli("nb-smoke", deep, good, cwd=tmp_path)
    assert "RecursionError" not in smoke.stdout + smoke.stderr
    assert "deep.ipynb: JSON nested too deeply" in smoke.stdout
    assert "PASS" in smoke.stdout and "good.ipynb" in smoke.stdout  # the other still ran
    line = _one_line(run_cli("jupyter-repro", "batch", deep, cwd=tmp_path))
    assert "deep.ipynb: JSON nested too deeply to be a notebook" in line


@pytest.mark.parametrize(
    "grid, message",
    [
        ("k: &a [1, *a]\n", "anchor refers to itself"),
        ("runs: &r [{x: 1}, *r]\n", "anchor refers to itself"),
        ("".join(f"a{i}: [0,1,2,3,4,5,6,7,8,9]\n" for i in range(10)), "10,000,000,000 runs"),
    ],
)
def test_crafted_grids_are_one_line_and_fast(tmp_path, grid, message):
    nb = make_notebook(tmp_path / "n.ipynb", ("a0 = 0", ["parameters"]))
    (tmp_path / "grid.yaml").write_text(grid)
    started = time.monotonic()
    proc = run_cli("jupyter-repro", "batch", nb, "--grid", "grid.yaml", cwd=tmp_path, timeout=120)
    line = _one_line(proc)
    assert "grid.yaml" in line and message in line
    assert time.monotonic() - started < 100  # generous: the machine is shared


def test_the_grid_cap_is_configurable(tmp_path):
    nb = make_notebook(tmp_path / "n.ipynb", ("a = 0\nb = 0", ["parameters"]))
    (tmp_path / "grid.yaml").write_text("a: [1, 2, 3]\nb: [1, 2]\n")
    proc = run_cli(
        "jupyter-repro",
        *("batch", nb, "--grid", "grid.yaml"),
        cwd=tmp_path,
        env={"JUPYTER_REPRO_MAX_RUNS": "5"},
    )
    line = _one_line(proc)
    assert "would make 6 runs (3 x 2); the cap is 5" in line
    assert "JUPYTER_REPRO_MAX_RUNS" in line


@pytest.mark.parametrize("run_id", ["../../etc/passwd", "x" * 300, "abc def", "-rf"])
def test_reproduce_a_malformed_run_id_is_one_line_before_any_store_is_touched(tmp_path, run_id):
    store = tmp_path / "store" / "mlflow.db"
    proc = run_cli(
        "jupyter-repro", "reproduce", "--tracking-uri", f"sqlite:///{store}", "--", run_id
    )
    assert "run id" in _one_line(proc)
    assert not store.exists()


@pytest.mark.parametrize(
    "uri, shown",
    [
        ("http://alice:s3cret@mlflow:5000", "http://alice:***@mlflow:5000"),
        ("postgresql://u@db/mlflow?password=s3cret", "postgresql://u@db/mlflow?password=***"),
        (
            "postgresql://u:p@ss:s3cret@db/m?sslmode=require&sslpassword=s3cret",
            "postgresql://u:***@db/m?sslmode=require&sslpassword=***",
        ),
        ("https://h/x?Access-Token=s3cret#top", "https://h/x?Access-Token=***#top"),
        ("sqlite:////tmp/mlflow.db", "sqlite:////tmp/mlflow.db"),
        ("http://user@host:5000", "http://user@host:5000"),
    ],
)
def test_one_redaction_rule_masks_user_info_and_query_secrets(uri, shown):
    assert redact(uri) == shown
    assert "s3cret" not in redact_text(f"cannot open experiment in {uri}: refused")


def test_an_error_line_never_shows_a_password_from_a_uri(tmp_path):
    """Any ReproError line is redacted: here a store URI with a query-string password."""
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    proc = run_cli(
        "jupyter-repro",
        *("gc", "--experiment", "nope"),
        "--tracking-uri",
        f"sqlite:///{tmp_path}/x.db?password=s3cret-value",
        cwd=tmp_path,
        timeout=120,
    )
    assert "s3cret-value" not in proc.stdout + proc.stderr
