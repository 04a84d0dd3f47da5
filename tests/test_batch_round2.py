"""Round 2 of ../shared/field-cases.md under ``jupyter-repro batch``: G05 (parameter types
on injection, and the MLflow params), G06 (a notebook that uses MLflow itself) and G12 (no
process outlives its run). The installed CLI, a real kernel per run, a real sqlite store
and a real git repository."""

from __future__ import annotations

from pathlib import Path

import git
import pytest
from batch_support import batch, client, make_notebook, ready_store, runs_of


def _repo(root: Path, name: str, *cells) -> Path:
    repo = git.Repo.init(root, initial_branch="main")
    with repo.config_writer() as cw:
        cw.set_value("user", "name", "T").set_value("user", "email", "t@example.com")
    nb = make_notebook(root / name, *cells)
    repo.index.add([name])
    repo.index.commit("notebook")
    return nb


# -- G06: the notebook's own set_experiment / start_run / nested runs --------------------------
G06_BODY = (
    "import mlflow\n"
    "mlflow.set_experiment('churn-model')\n"
    "with mlflow.start_run() as outer:\n"
    "    mlflow.log_param('lr', lr)\n"
    "    mlflow.log_metric('acc', 0.9)\n"
    "    with mlflow.start_run(nested=True):\n"
    "        mlflow.log_metric('inner', 1.0)\n"
    "print('logged', outer.info.run_id)"
)


@pytest.mark.slow
def test_g06_notebook_with_its_own_experiment_runs_and_is_linked(tmp_path):
    uri = ready_store(tmp_path)
    nb = _repo(tmp_path, "g06_train.ipynb", ("lr = 0.1", ["parameters"]), G06_BODY)
    proc = batch(nb, "-p", "lr", "0.2", "--experiment", "g06", cwd=tmp_path, uri=uri, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [run] = runs_of(uri, "g06")
    assert run.info.status == "FINISHED"
    own = runs_of(uri, "churn-model")
    assert len(own) == 2, [r.info.run_id for r in own]
    outer = next(r for r in own if "acc" in r.data.metrics)
    inner = next(r for r in own if "inner" in r.data.metrics)
    assert outer.data.params["lr"] == "0.2"
    # Linked both ways: the notebook's runs name the batch's run, the batch's run lists them.
    for r in own:
        assert r.data.tags["jupyter_repro.batch.run_id"] == run.info.run_id
    assert inner.data.tags["mlflow.parentRunId"] == outer.info.run_id
    listed = set(run.data.tags["jupyter_repro.notebook_runs"].split(","))
    assert listed == {f"{r.info.experiment_id}/{r.info.run_id}" for r in own}


@pytest.mark.slow
def test_g06_plain_start_run_still_logs_into_the_batch_run(tmp_path):
    uri = ready_store(tmp_path)
    body = (
        "import mlflow\nwith mlflow.start_run():\n    mlflow.log_metric('m', lr)\n"
        "with mlflow.start_run(nested=True):\n    pass\n"
    )
    nb = _repo(tmp_path, "plain.ipynb", ("lr = 0.1", ["parameters"]), body)
    proc = batch(nb, "-p", "lr", "0.5", "--experiment", "plain", cwd=tmp_path, uri=uri, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    runs = runs_of(uri, "plain")
    top = [r for r in runs if "jupyter_repro.batch.run_id" not in r.data.tags]
    assert len(top) == 1 and top[0].data.metrics["m"] == 0.5
    assert top[0].info.status == "FINISHED"
    children = [r for r in runs if r.data.tags.get("jupyter_repro.batch.run_id")]
    assert len(children) == 1
    assert children[0].data.tags["mlflow.parentRunId"] == top[0].info.run_id


# -- G05: types kept on injection under batch -p / --grid, and in MLflow params -----------------
@pytest.mark.slow
def test_g05_grid_and_p_values_keep_their_types(tmp_path):
    uri = ready_store(tmp_path)
    nb = _repo(
        tmp_path,
        "g05_types.ipynb",
        ("class_weight = {0: 1.0, 1: 1.0}\nshape = (2, 2)", ["parameters"]),
        "rows, cols = shape\nprint('weight', class_weight[1], rows, cols, type(shape).__name__)",
    )
    (tmp_path / "grid.yaml").write_text("class_weight: [{0: 1.0, 1: 5.0}]\n")
    proc = batch(
        nb, "--grid", tmp_path / "grid.yaml", "-p", "shape", "(3, 4)", "--experiment", "g05",
        cwd=tmp_path, uri=uri, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [run] = runs_of(uri, "g05")
    assert run.info.status == "FINISHED"
    assert run.data.params["class_weight"] == "{0: 1.0, 1: 5.0}"
    assert run.data.params["shape"] == "(3, 4)"
    path = client(uri).download_artifacts(run.info.run_id, "")
    text = "".join(p.read_text(errors="replace") for p in Path(path).rglob("*.ipynb"))
    assert "weight 5.0 3 4 tuple" in text


# -- G12: nothing a run started survives it -----------------------------------------------------
@pytest.mark.slow
def test_g12_detached_children_of_a_run_are_gone_after_it(tmp_path):
    import time

    uri = ready_store(tmp_path)
    cell = (
        "import subprocess, sys\n"
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)'], "
        "start_new_session=True)\n"
        "q = subprocess.run([sys.executable, '-c', \"import subprocess, sys; p = subprocess.Popen("
        "[sys.executable, '-c', 'import time; time.sleep(300)'], start_new_session=True, "
        "stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); "  # not holding q's pipes
        'print(p.pid)"], capture_output=True, text=True)\n'
        "open('pids.txt', 'w').write(f'{p.pid} {q.stdout.strip()}')\n"
        "if fail: raise ValueError('fails after starting them')"
    )
    nb = _repo(tmp_path, "g12.ipynb", ("fail = False", ["parameters"]), cell)
    for fail in ("False", "True"):
        proc = batch(
            nb, "-p", "fail", fail, "--experiment", "g12", cwd=tmp_path, uri=uri, timeout=600
        )
        assert proc.returncode == (1 if fail == "True" else 0), proc.stdout + proc.stderr
        pids = [int(x) for x in (tmp_path / "pids.txt").read_text().split()]
        assert len(pids) == 2
        deadline = time.monotonic() + 15
        alive = pids
        while alive and time.monotonic() < deadline:
            alive = [p for p in pids if _running(p)]
            time.sleep(0.3)
        assert not alive, f"still running after the run (fail={fail}): {alive}"


def _running(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
