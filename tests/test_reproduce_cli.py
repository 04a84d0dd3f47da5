"""``jupyter-repro locate`` and ``jupyter-repro reproduce`` (issue 7 items 4-5) through the
installed CLI, on a real git repository, a real sqlite MLflow store and real kernels."""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import git
import pytest
from batch_support import PNG_1PX, batch, client, make_notebook, ready_store, runs_of
from helpers import run_cli

pytestmark = pytest.mark.slow

PARAMS = ("seed = 0\nscale = 2.0", ["parameters"])
COMPUTE = (
    "import numpy as np, jupyter_repro\n"
    "rng = np.random.default_rng(seed)\n"
    "vals = [float(v) for v in open('../data/in.csv').read().split()[1:]]\n"
    "score = float(np.mean(vals) * scale + rng.normal())\n"
    "print(round(score, 6))\n"
    "jupyter_repro.record('score', score)"
)
SVG = '<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"><rect width="4" height="4"/></svg>'
PLOT = (
    "%matplotlib inline\nimport matplotlib.pyplot as plt\nfrom IPython.display import SVG, display\n"
    "plt.plot(rng.normal(size=10))\nplt.show()\n"
    f"display(SVG({SVG!r}))"
)


def _project(root: Path, uncommitted_edit: bool) -> tuple[git.Repo, Path]:
    """A git repo with a seeded notebook and an untracked data file; optionally an
    uncommitted edit to the notebook (so the run's notebook is not the commit's)."""
    repo = git.Repo.init(root, initial_branch="main")
    with repo.config_writer() as cw:
        cw.set_value("user", "name", "T").set_value("user", "email", "t@example.com")
    nb = make_notebook(root / "nbs" / "seeded.ipynb", PARAMS, COMPUTE, PLOT)
    (root / "data").mkdir()
    (root / "data" / "in.csv").write_text("x\n1\n2\n3\n")
    repo.index.add(["nbs/seeded.ipynb"])
    repo.index.commit("seeded notebook")
    if uncommitted_edit:  # only in the working tree: reproduce must use the logged notebook
        make_notebook(nb, PARAMS, COMPUTE + "\nprint('edited after the commit')", PLOT)
    return repo, nb


def _one_run(root: Path, uncommitted_edit: bool) -> tuple[str, str, Path]:
    _repo, nb = _project(root, uncommitted_edit)
    uri = ready_store(root / "store")
    proc = batch(nb, "-p", "scale", "3.0", "--data", root / "data", cwd=root / "nbs", uri=uri)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (run,) = runs_of(uri, "seeded")
    return uri, run.info.run_id, root


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """One batch run of a seeded notebook with a plot, an --data input and a dirty edit."""
    return _one_run(tmp_path_factory.mktemp("reproduce"), uncommitted_edit=True)


def repro(*args, uri: str, cwd: Path | None = None):
    return run_cli("jupyter-repro", *args, "--tracking-uri", uri, cwd=cwd, timeout=240)


def test_run_records_searchable_output_hashes(logged):
    uri, run_id, _ = logged
    tags = client(uri).get_run(run_id).data.tags
    prefixes = tags["jupyter_repro.outputs"].split()
    assert prefixes and all(len(p) == 32 for p in prefixes)


def test_locate_finds_the_run_of_a_logged_plot(logged, tmp_path):
    uri, run_id, root = logged
    (image,) = (root / "store" / "artifacts" / "seeded").glob(
        f"{run_id}/artifacts/outputs/images/*.png"
    )
    plot = tmp_path / "figure.png"  # a copy the user holds, under any name
    shutil.copy(image, plot)
    proc = repro("locate", plot, uri=uri)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert run_id in out
    commit = git.Repo(root).head.commit.hexsha
    assert f"commit {commit[:12]}" in out and "notebook vs HEAD: modified" in out
    assert "parameters:  scale=3.0, seed=0" in out
    assert "data:        data  sha256" in out
    assert "execution:   cell 2 " in out and "image/png" in out
    proc = repro("locate", plot, "--json", uri=uri)
    (match,) = json.loads(proc.stdout)["runs"]
    assert match["run_id"] == run_id and match["execution"][0]["cell_index"] == 2
    assert match["code"]["commit"] == commit
    assert match["environment"]["python_version"]


def test_locate_finds_an_svg_it_logged(logged, tmp_path):
    uri, run_id, root = logged
    (svg,) = (root / "store" / "artifacts" / "seeded").glob(
        f"{run_id}/artifacts/outputs/images/*.svg"
    )
    proc = repro("locate", svg, "--experiment", "seeded", uri=uri)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert run_id in proc.stdout and "image/svg+xml" in proc.stdout


def test_locate_exits_1_for_a_plot_it_did_not_log(logged, tmp_path):
    uri, _, _ = logged
    other = tmp_path / "other.png"
    other.write_bytes(base64.b64decode(PNG_1PX))
    proc = repro("locate", other, uri=uri)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "no run" in proc.stdout
    proc = repro("locate", other, "--experiment", "no-such-experiment", uri=uri)
    assert proc.returncode == 2 and "no-such-experiment" in proc.stderr


def test_seeded_notebook_with_uncommitted_edit_reproduces(logged, tmp_path):
    uri, run_id, root = logged
    report = tmp_path / "r.json"
    proc = repro("reproduce", run_id, "--json", report, uri=uri, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("reproduced:"), proc.stdout
    data = json.loads(report.read_text())
    assert data["verdict"] == "reproduced" and data["params"] == {"scale": 3.0}
    assert data["metric_differences"] == [] and data["output_differences"] == []
    new = client(uri).get_run(data["new_run_id"])
    assert new.data.tags["jupyter_repro.reproduces"] == run_id
    assert new.data.tags["jupyter_repro.reproduce.verdict"] == "reproduced"
    assert new.data.tags["mlflow.source.git.commit"] == git.Repo(root).head.commit.hexsha
    assert new.data.params["scale"] == "3.0"
    assert git.Repo(root).git.worktree("list").count("\n") == 0, "temporary worktree removed"


def test_changed_data_file_is_named(tmp_path):
    uri, run_id, root = _one_run(tmp_path / "proj", uncommitted_edit=False)
    (root / "data" / "in.csv").write_text("x\n1\n2\n30\n")
    proc = repro("reproduce", run_id, uri=uri)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "data changed" in proc.stdout and "input 'data'" in proc.stdout
    assert "--allow-data-drift" in proc.stdout
    assert len(runs_of(uri, "seeded")) == 1, "nothing re-ran"
    proc = repro("reproduce", run_id, "--allow-data-drift", uri=uri)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stdout.startswith("differs:")
    assert "data data: CHANGED" in proc.stdout and "metric score: logged" in proc.stdout
