"""A grid lands in MLflow with all five coordinates (issue 5 items 1-3, F09), through the
installed CLI, a real kernel per run, a real sqlite store and a real git repository."""

from __future__ import annotations

import json
from pathlib import Path

import git
import pytest
from batch_support import (
    PNG_1PX,
    batch,
    client,
    make_notebook,
    read_executed,
    ready_store,
    run_once,
    runs_of,
)

PARAMS = ('lr = 0.1\nlayers = [8, 8]\nopts = {"seed": 0}\noffset = 0\ntag = None', ["parameters"])
BODY = (
    "import json, base64, mlflow, jupyter_repro\n"
    "from IPython.display import Image, display\n"
    "kinds = {n: type(v).__name__ for n, v in dict(lr=lr, layers=layers, opts=opts, offset=offset, tag=tag).items()}\n"
    "print(json.dumps({'lr': lr, 'layers': layers, 'kinds': kinds}))\n"
    "for step in range(3):\n"
    "    jupyter_repro.record('loss', lr * (3 - step), step=step)\n"
    "jupyter_repro.record('final', 1.5, timestamp=1700000000)\n"
    "mlflow.log_metric('from_notebook', 7.0)\n"
    f"display(Image(data=base64.b64decode({PNG_1PX!r})))"
)


@pytest.fixture(scope="module")
def grid_run(tmp_path_factory):
    """One real batch: 2 grid points x fixed -p, a --data input, in a git repo."""

    def build(root):
        repo = git.Repo.init(root, initial_branch="main")
        with repo.config_writer() as cw:
            cw.set_value("user", "name", "T").set_value("user", "email", "t@example.com")
        nb = make_notebook(root / "nbs" / "f_pm.ipynb", PARAMS, BODY)
        (root / "nbs" / "g.yaml").write_text("lr: [1e-3, 1.0e-2]\n")
        (root / "data").mkdir()
        (root / "data" / "small.csv").write_text("a,b\n1,2\n")
        repo.index.add(["nbs/f_pm.ipynb"])
        repo.index.commit("notebook")
        # no --tracking-uri and no MLFLOW_TRACKING_URI: the default store under the project
        return batch(
            nb,
            "--grid",
            nb.parent / "g.yaml",
            "-p",
            "layers",
            "[16, 16]",
            "--data",
            root / "data",
            "--experiment",
            "f09",
            cwd=root / "nbs",
        )

    root, proc = run_once(tmp_path_factory, "f09", build)
    uri = f"sqlite:///{root / 'mlruns' / 'mlflow.db'}"
    return proc, uri, root, git.Repo(root)


def _by_lr(uri):
    return {r.data.params["lr"]: r for r in runs_of(uri, "f09")}


def test_grid_gives_two_finished_runs_with_typed_params(grid_run):
    proc, uri, root, _ = grid_run
    assert (root / "mlruns" / "mlflow.db").exists(), "default store: <project>/mlruns/mlflow.db"
    assert proc.returncode == 0, proc.stdout + proc.stderr
    runs = _by_lr(uri)
    assert set(runs) == {"0.001", "0.01"}
    for run in runs.values():
        assert run.info.status == "FINISHED" and run.info.end_time
        assert run.data.params["layers"] == "[16, 16]"
        # defaults not overridden are logged too, and marked as defaults
        assert run.data.params["offset"] == "0" and run.data.params["tag"] == "None"
        assert run.data.tags["jupyter_repro.params.defaults"] == "offset,opts,tag"
    assert "2/2 runs finished" in proc.stdout


def test_kernel_received_real_python_types(grid_run):
    _, _uri, root, _ = grid_run
    outputs = sorted((root / "nbs" / "runs" / "f09").glob("*.ipynb"))
    assert len(outputs) == 2
    seen = []
    for path in outputs:
        outputs = read_executed(path).cells[2].outputs
        stdout = "".join(o.get("text", "") for o in outputs if o.get("name") == "stdout")
        data = json.loads(next(ln for ln in stdout.splitlines() if ln.startswith("{")))
        assert data["kinds"] == {
            "lr": "float",
            "layers": "list",
            "opts": "dict",
            "offset": "int",
            "tag": "NoneType",
        }
        assert data["layers"] == [16, 16]
        seen.append(data["lr"])
    assert sorted(seen) == [0.001, 0.01]


def test_recorded_and_notebook_logged_metrics_land_in_the_same_run(grid_run):
    _, uri, _, _ = grid_run
    c = client(uri)
    for lr, run in _by_lr(uri).items():
        history = c.get_metric_history(run.info.run_id, "loss")
        assert [(m.step, m.value) for m in sorted(history, key=lambda m: m.step)] == [
            (0, float(lr) * 3),
            (1, float(lr) * 2),
            (2, float(lr)),
        ]
        final = c.get_metric_history(run.info.run_id, "final")
        assert final[0].timestamp == 1700000000 * 1000
        assert run.data.metrics["from_notebook"] == 7.0
    assert len(runs_of(uri, "f09")) == 2, "the notebook's mlflow calls made no extra run"


def test_code_coordinate_tags(grid_run):
    _, uri, root, repo = grid_run
    for run in runs_of(uri, "f09"):
        tags = run.data.tags
        assert tags["mlflow.source.git.commit"] == repo.head.commit.hexsha
        assert tags["mlflow.source.git.branch"] == "main"
        assert tags["mlflow.source.type"] == "NOTEBOOK"
        assert tags["mlflow.source.name"] == "nbs/f_pm.ipynb"
        assert tags["jupyter_repro.git.dirty"] == "false"
        assert tags["jupyter_repro.notebook.git_status"] == "clean"
        assert tags["jupyter_repro.notebook.path"] == str(root / "nbs" / "f_pm.ipynb")
        assert len(tags["jupyter_repro.notebook.sha256"]) == 64
        assert tags["jupyter_repro.version"]
        for key in ("host", "pid", "pid_start", "last_seen"):
            assert tags[f"jupyter_repro.heartbeat.{key}"]


def test_artifacts_notebook_html_diff_images_manifest_environment(grid_run, tmp_path):
    _, uri, _, _ = grid_run
    c = client(uri)
    run = next(iter(_by_lr(uri).values()))
    local = Path(c.download_artifacts(run.info.run_id, "", str(tmp_path)))
    name = run.info.run_name
    assert (local / "notebook" / f"{name}.ipynb").exists()
    assert "<html" in (local / "notebook" / f"{name}.html").read_text().lower()
    for f in ("nbdiff.json", "nbdiff.txt", "nbdiff.html"):
        assert (local / "diff" / f).exists()
    assert json.loads((local / "diff" / "nbdiff.json").read_text())["status"] == "unchanged"
    images = list((local / "outputs" / "images").glob("cell-001-*.png"))
    assert len(images) == 1, "the image is named by its cell in the source notebook"
    manifest = json.loads((local / "outputs" / "manifest.json").read_text())
    import hashlib

    digest = hashlib.sha256(images[0].read_bytes()).hexdigest()
    assert any(e["sha256"] == digest and e["mimetype"] == "image/png" for e in manifest)
    env = json.loads((local / "environment.json").read_text())
    assert env["packages"]["papermill"] and "MLFLOW_TRACKING_URI" not in json.dumps(env)


def test_data_input_is_a_searchable_dataset_with_digest(grid_run):
    _, uri, root, _ = grid_run
    from jupyter_repro.provenance.data import digest_input

    expected = digest_input(root / "data").sha256
    for run in runs_of(uri, "f09"):
        inputs = run.inputs.dataset_inputs
        assert [i.dataset.name for i in inputs] == ["data"]
        assert inputs[0].dataset.digest == expected[:32]
        assert run.data.tags["jupyter_repro.data.data.sha256"] == expected


def test_output_notebooks_are_written_atomically(grid_run):
    _, _, root, _ = grid_run
    leftovers = [p.name for p in (root / "nbs" / "runs" / "f09").iterdir() if "partial" in p.name]
    assert leftovers == []


def test_jupytext_notebook_runs(tmp_path):
    nb = tmp_path / "t.py"
    nb.write_text(
        "# ---\n# jupyter:\n#   kernelspec:\n#     name: python3\n#     display_name: Python 3\n"
        '#     language: python\n# ---\n\n# %% tags=["parameters"]\nn = 1\n\n'
        "# %%\nimport jupyter_repro\njupyter_repro.record('n2', n * 2)\n"
    )
    uri = ready_store(tmp_path / "store")
    proc = batch(nb, "-p", "n", "21", cwd=tmp_path, uri=uri)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (run,) = runs_of(uri, "t")
    assert run.info.status == "FINISHED" and run.data.metrics["n2"] == 42.0
