"""Bad input fails before any MLflow run exists (F08, F10); faulty runs end FAILED with a
clear reason while the others finish (F13 and issue 5 item 6)."""

from __future__ import annotations

import pytest
from batch_support import (
    batch,
    client,
    make_notebook,
    read_executed,
    ready_store,
    run_once,
    run_spec,
    runs_of,
    sqlite_uri,
)


def _store_has_no_runs(uri: str, experiment: str) -> bool:
    return runs_of(uri, experiment) == []


@pytest.mark.parametrize(
    ("cells", "args", "fragments"),
    [
        (
            ["alpha = 0.5", 'print("alpha =", alpha)'],
            ["-p", "alpha", "0.1"],
            ["f10.ipynb", "no cell tagged 'parameters'"],
        ),
        (
            [("alpha = 0.5", ["parameters"]), 'print("alpha =", alpha)'],
            ["-p", "alpah", "0.1"],
            ["f10.ipynb", "'alpah'", "alpha"],
        ),
        ([("alpha = 0.5", ["parameters"])], ["--grid", "GRID"], ["f10.ipynb", "'beta'", "alpha"]),
    ],
    ids=["no-parameters-cell", "misspelt-name", "unknown-name-in-grid"],
)
def test_unknown_parameters_exit_2_before_any_run(tmp_path, cells, args, fragments):
    nb = make_notebook(tmp_path / "f10.ipynb", *cells)
    (tmp_path / "g.yaml").write_text("alpha: [1.0]\nbeta: [2]\n")
    args = [str(tmp_path / "g.yaml") if a == "GRID" else a for a in args]
    uri = sqlite_uri(tmp_path / "store")
    proc = batch(nb, *args, cwd=tmp_path, uri=uri)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("jupyter-repro: error:")
    for fragment in fragments:
        assert fragment in lines[0]
    assert not (tmp_path / "store").exists(), "no store, so certainly no MLflow run"
    assert not (tmp_path / "runs").exists()


def test_allow_unknown_runs_and_flags_the_run(tmp_path):
    nb = make_notebook(tmp_path / "f10.ipynb", "alpha = 0.5", 'print("alpha =", alpha)')
    uri = ready_store(tmp_path / "store")
    proc = batch(nb, "-p", "alpha", "0.1", "--allow-unknown", cwd=tmp_path, uri=uri)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "warning:" in proc.stderr and "no cell tagged 'parameters'" in proc.stderr
    (run,) = runs_of(uri, "f10")
    assert run.info.status == "FINISHED"
    assert "overwritten" in run.data.tags["jupyter_repro.params.unverified"]


def test_missing_kernelspec_fails_before_any_run(tmp_path):
    spec = {"name": "py39_projenv", "display_name": "Python (projenv)", "language": "python"}
    nb = make_notebook(tmp_path / "f_kernel.ipynb", 'print("hello")', kernelspec=spec)
    uri = sqlite_uri(tmp_path / "store")
    proc = batch(nb, cwd=tmp_path, uri=uri)
    assert proc.returncode == 2
    line = proc.stderr.strip()
    assert "\n" not in line
    assert "py39_projenv" in line and "python3" in line and "--kernel NAME" in line
    assert not (tmp_path / "store").exists()
    uri = ready_store(tmp_path / "store2")
    ok = batch(nb, "--kernel", "python3", cwd=tmp_path, uri=uri)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert [r.info.status for r in runs_of(uri, "f_kernel")] == ["FINISHED"]


FAULTS = [
    ('mode = "ok"\nn = 3', ["parameters"]),
    "if mode in ('raise', 'exit'):  # F13: the notebook starts its own MLflow run\n"
    "    import mlflow\n    run = mlflow.start_run()\n    mlflow.log_metric('m', 1.0)",
    "total = sum(range(n))",
    "import os, sys, time\n"
    "if mode == 'raise':\n    raise RuntimeError('boom')\n"
    "if mode == 'exit':\n    sys.exit(1)\n"
    "if mode == 'die':\n    os.kill(os.getpid(), 9)\n"
    "if mode == 'sleep':\n    time.sleep(120)",
    "print('done')",
]
GRID = """runs:
  - {mode: ok}
  - {mode: raise}
  - {mode: exit}
  - {mode: die}
  - {mode: sleep}
  - {n: x}
"""


@pytest.fixture(scope="module")
def fault_batch(tmp_path_factory):
    def build(tmp):
        nb = make_notebook(tmp / "faults.ipynb", *FAULTS)
        (tmp / "g.yaml").write_text(GRID)
        uri = ready_store(tmp / "store")
        return batch(
            nb,
            "--grid",
            tmp / "g.yaml",
            "-j",
            "2",
            "--timeout",
            "20",
            "--json",
            tmp / "r.json",
            cwd=tmp,
            uri=uri,
        )

    tmp, proc = run_once(tmp_path_factory, "faults", build)
    runs = {
        r.data.params["mode"] + ("" if r.data.params["n"] == "3" else "-n"): r
        for r in runs_of(sqlite_uri(tmp / "store"), "faults")
    }
    return proc, runs, tmp


def test_one_run_per_grid_point_and_none_left_running(fault_batch):
    proc, runs, _ = fault_batch
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert sorted(runs) == ["die", "exit", "ok", "ok-n", "raise", "sleep"]
    assert {k for k, r in runs.items() if r.info.status == "FINISHED"} == {"ok"}
    assert all(r.info.end_time for r in runs.values())
    assert "1/6 runs finished" in proc.stdout


def test_type_mismatch_is_warned_before_running(fault_batch):
    proc, _, _ = fault_batch
    assert "parameter 'n' gets a str ('x') but its default is a int (3)" in proc.stderr


def test_notebook_start_run_then_raise_is_failed_not_finished(fault_batch):
    _, runs, tmp = fault_batch
    run = runs["raise"]
    assert run.info.status == "FAILED"
    assert run.data.tags["jupyter_repro.error.cell_index"] == "3"
    assert run.data.tags["jupyter_repro.error.ename"] == "RuntimeError"
    assert run.data.tags["jupyter_repro.error.evalue"] == "boom"
    assert run.data.metrics["m"] == 1.0, "the notebook's own start_run resumed the batch run"
    executed = read_executed(tmp / "runs" / "faults" / f"{run.info.run_name}.ipynb")
    failing = [c for c in executed.cells if "raise RuntimeError" in c.source]
    assert [o.get("ename") for o in failing[0].outputs] == ["RuntimeError"], (
        "the failed run keeps its partial output notebook"
    )
    assert "done" not in str(executed.cells[-1].get("outputs"))


def test_sys_exit_is_failed(fault_batch):
    run = fault_batch[1]["exit"]
    assert run.info.status == "FAILED"
    assert run.data.tags["jupyter_repro.error.ename"] == "SystemExit"


def test_kernel_that_kills_itself_is_failed(fault_batch):
    run = fault_batch[1]["die"]
    assert run.info.status == "FAILED"
    assert "kernel died" in run.data.tags["jupyter_repro.status_reason"]


def test_run_over_its_timeout_is_failed_at_its_cell(fault_batch):
    run = fault_batch[1]["sleep"]
    assert run.info.status == "FAILED"
    assert run.data.tags["jupyter_repro.status_reason"] == "timed out after 20s in cell 3"
    assert (run.info.end_time - run.info.start_time) / 1000 < 60


def test_bad_grid_value_fails_only_its_run(fault_batch):
    run = fault_batch[1]["ok-n"]
    assert run.info.status == "FAILED"
    assert run.data.tags["jupyter_repro.error.ename"] == "TypeError"
    assert run.data.tags["jupyter_repro.error.cell_index"] == "2"


def test_json_report_has_every_run_with_status_and_reason(fault_batch):
    import json

    _proc, runs, tmp = fault_batch
    report = json.loads((tmp / "r.json").read_text())
    assert report["exit_code"] == 1 and report["interrupted_by"] is None
    by_id = {r["run_id"]: r for r in report["runs"]}
    assert set(by_id) == {r.info.run_id for r in runs.values()}
    assert by_id[runs["raise"].info.run_id]["reason"] == "cell 3 raised RuntimeError: boom"
    assert by_id[runs["ok-n"].info.run_id]["params"] == {"n": "x"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.ipynb"], "missing.ipynb: no such file"),
        (["NB", "-j", "0"], "-j must be at least 1, not 0"),
        (["NB", "--data", "nope.csv"], "nope.csv: --data path does not exist"),
        (["NB", "--timeout", "0"], "--timeout must be positive"),
        (["NB", "--grid", "BAD"], "bad.yaml:2:1: invalid YAML"),
        (["NB", "-f", "nofile.yaml"], "nofile.yaml: no such file"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_no_store(tmp_path, monkeypatch, capsys, args, message):
    from jupyter_repro.cli import main

    monkeypatch.chdir(tmp_path)
    nb = make_notebook(tmp_path / "nb.ipynb", ("a = 1", ["parameters"]))
    (tmp_path / "bad.yaml").write_text("a: [1,\n")
    argv = [str(nb) if a == "NB" else "bad.yaml" if a == "BAD" else a for a in args]
    uri = sqlite_uri(tmp_path / "store")
    assert main(["batch", *argv, "--tracking-uri", uri]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and message in err
    assert not (tmp_path / "store").exists()


@pytest.mark.slow
def test_a_failure_while_logging_still_ends_the_run_with_its_status(tmp_path, monkeypatch):
    """The notebook ran; writing its results to MLflow failed (e.g. a dataset insert race):
    the run keeps its id and its real status, with the logging failure as its reason."""
    from jupyter_repro.batch import execute
    from jupyter_repro.batch.execute import execute_run

    nb = make_notebook(tmp_path / "n.ipynb", ("x = 1", ["parameters"]), "print(x)")
    uri = ready_store(tmp_path / "store")
    spec = run_spec(nb, uri, "n", params={"x": 2})

    def broken(*args, **kwargs):
        raise RuntimeError("UNIQUE constraint failed: datasets.experiment_id")

    monkeypatch.setattr(execute, "close_run", broken)
    result = execute_run(spec)
    assert result.status == "FINISHED" and result.run_id
    assert "logging the run's results failed (RuntimeError: UNIQUE constraint" in result.reason
    run = client(uri).get_run(result.run_id)
    assert run.info.status == "FINISHED"
    assert "logging the run's results failed" in run.data.tags["jupyter_repro.status_reason"]
    assert (tmp_path / "runs" / "n-000.ipynb").exists(), "the executed notebook is kept"
