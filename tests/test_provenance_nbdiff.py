"""F15: the notebook diff against HEAD ignores ids, counts and metadata; outputs are shown
apart from sources; an untracked notebook says so instead of producing an empty diff."""

from __future__ import annotations

import json

import git
import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook, new_output

from jupyter_repro.provenance.git import git_info
from jupyter_repro.provenance.mlflow_log import FinishedRun, collect_provenance, write_artifacts


def _exp_notebook(ids, counts, value, execute_time=False):
    cells = [
        new_code_cell("import random\nx = random.random()", id=ids[0], execution_count=counts[0]),
        new_code_cell(
            "x",
            id=ids[1],
            execution_count=counts[1],
            outputs=[
                new_output("execute_result", data={"text/plain": value}, execution_count=counts[1])
            ],
        ),
    ]
    if execute_time:
        for cell in cells:
            cell.metadata["ExecuteTime"] = {"end_time": "2026-11-30T10:00:00.000Z"}
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    return nb


@pytest.fixture
def repo(tmp_path):
    """A real git repo with exp.ipynb committed, then re-run in the working copy."""
    r = git.Repo.init(tmp_path, initial_branch="main")
    with r.config_writer() as cw:
        cw.set_value("user", "name", "T").set_value("user", "email", "t@example.com")
    nbformat.write(_exp_notebook(["load-data", "show-x"], [1, 2], "0.1234"), tmp_path / "exp.ipynb")
    r.index.add(["exp.ipynb"])
    r.index.commit("add exp")
    r.create_remote("origin", "https://user:s3cret@example.com/lab/exp.git")
    nbformat.write(
        _exp_notebook(["9f1c2a", "77be01"], [5, 6], "0.9876", execute_time=True),
        tmp_path / "exp.ipynb",
    )
    nb = _exp_notebook(["a", "b"], [None, None], "1")
    nbformat.write(nb, tmp_path / "new.ipynb")
    return r


def test_rerun_with_new_ids_counts_and_metadata_has_no_source_changes(repo, tmp_path):
    prov = collect_provenance(tmp_path / "exp.ipynb")
    summary = prov.diff.summary()
    assert summary["source_changed_cells"] == []
    assert summary["output_changed_cells"] == [1]
    assert summary["sources_match_head"] is True
    assert prov.tags()["jupyter_repro.notebook.sources_match_head"] == "true"
    assert prov.tags()["jupyter_repro.notebook.git_status"] == "modified"  # bytes differ
    # the reader still sees which cell's outputs changed, in its own section after the
    # sources, but not their content: saved outputs are stale and may hold secrets
    text = prov.diff.text
    sources, outputs = text.split("== outputs")
    assert "(no source changes)" in sources
    assert "-- cell 1: outputs changed" in outputs
    assert "0.1234" not in text and "0.9876" not in text
    assert "0.9876" not in json.dumps(prov.diff.summary())
    assert "9f1c2a" not in text and "ExecuteTime" not in text


def test_untracked_notebook_says_so_and_counts_every_cell_added(repo, tmp_path):
    prov = collect_provenance(tmp_path / "new.ipynb")
    summary = prov.diff.summary()
    assert summary["status"] == "untracked"
    assert "not in HEAD (untracked)" in summary["note"]
    assert summary["added_cells"] == [0, 1] == summary["source_changed_cells"]
    assert prov.tags()["jupyter_repro.notebook.git_status"] == "untracked"
    assert prov.diff.text.strip(), "an untracked notebook must never give an empty diff"
    assert "+import random" in prov.diff.text


def test_a_real_source_edit_is_a_source_change(repo, tmp_path):
    nb = nbformat.read(tmp_path / "exp.ipynb", as_version=4)
    nb.cells[1].source = "x * 2"
    nbformat.write(nb, tmp_path / "exp.ipynb")
    prov = collect_provenance(tmp_path / "exp.ipynb")
    assert prov.diff.source_changed_cells == [1]
    assert prov.diff.summary()["sources_match_head"] is False
    assert "-x" in prov.diff.text and "+x * 2" in prov.diff.text


def test_added_and_removed_cells_are_counted(repo, tmp_path):
    nb = nbformat.read(tmp_path / "exp.ipynb", as_version=4)
    nb.cells.insert(0, new_code_cell("import os\nprint(os.sep)"))
    del nb.cells[2]
    nbformat.write(nb, tmp_path / "exp.ipynb")
    diff = collect_provenance(tmp_path / "exp.ipynb").diff
    assert 0 in diff.added_cells and diff.removed_cells == [1]
    assert diff.status == "modified"


def test_diff_artifacts_json_text_and_offline_html(repo, tmp_path):
    prov = collect_provenance(tmp_path / "exp.ipynb")
    out = tmp_path / "art"
    write_artifacts(out, FinishedRun("r", "FINISHED"), prov)
    summary = json.loads((out / "diff" / "nbdiff.json").read_text())
    assert summary["source_changed_cells"] == [] and summary["output_changed_cells"] == [1]
    assert summary["nbdime_diff"] == []  # sources only: an output change is no nbdime patch
    html = (out / "diff" / "nbdiff.html").read_text()
    assert "cell 1: outputs changed" in html and "0.9876" not in html
    assert "<script" not in html and "http" not in html
    assert (out / "diff" / "nbdiff.txt").read_text() == prov.diff.text


def test_git_tags_commit_branch_remote_without_credentials(repo, tmp_path):
    tags = collect_provenance(tmp_path / "exp.ipynb").tags()
    assert tags["mlflow.source.git.commit"] == repo.head.commit.hexsha
    assert tags["mlflow.source.git.branch"] == "main"
    assert tags["mlflow.source.git.repoURL"] == "https://example.com/lab/exp.git"
    assert tags["mlflow.source.name"] == "exp.ipynb"
    assert tags["mlflow.source.type"] == "NOTEBOOK"
    assert tags["jupyter_repro.git.dirty"] == "true"


def test_clean_checkout_is_not_dirty(repo, tmp_path):
    repo.git.checkout("--", "exp.ipynb")
    info = git_info(tmp_path / "exp.ipynb")
    assert info.dirty is False and info.notebook_status == "clean"
    assert collect_provenance(tmp_path / "exp.ipynb").diff.summary()["output_changed_cells"] == []


def test_outside_any_repository_is_said(tmp_path_factory):
    folder = tmp_path_factory.mktemp("norepo")
    nbformat.write(_exp_notebook(["a", "b"], [1, 2], "0"), folder / "n.ipynb")
    prov = collect_provenance(folder / "n.ipynb")
    assert prov.git.notebook_status == "outside-repo"
    assert prov.diff.status == "outside-repo" and "not in a git repository" in prov.diff.note
    assert "mlflow.source.git.commit" not in prov.tags()


def test_environment_fingerprint_has_packages_and_no_env_values(repo, tmp_path, monkeypatch):
    from jupyter_repro.provenance.env import environment_fingerprint

    env = environment_fingerprint()
    assert env["packages"]["mlflow"] and env["packages"]["papermill"]
    assert env["python_version"].count(".") == 2
    dumped = json.dumps(env)
    home_secret = "HOME=" + str(__import__("os").environ.get("HOME"))
    assert home_secret not in dumped and "environ" not in dumped


@pytest.mark.parametrize(
    ("url", "logged"),
    [
        ("https://user:p@ss@github.com/x.git", "https://github.com/x.git"),
        ("https://github.com/x.git?token=abc", "https://github.com/x.git"),
        ("https://tok@gitlab.com:8443/a/b", "https://gitlab.com:8443/a/b"),
        ("git@github.com:x/y.git", "git@github.com:x/y.git"),
    ],
)
def test_remote_urls_are_logged_without_credentials(url, logged):
    from jupyter_repro.provenance.git import _strip_credentials

    assert _strip_credentials(url) == logged
