"""``jupyter-repro tune --executor dask`` against real components (issue 18, deliverable 6).

A real ``dask scheduler`` and two single-threaded ``dask worker`` processes on 127.0.0.1
(separate process trees: they do not inherit anything from the ``tune`` process), a real
sqlite MLflow store and Optuna storage, and the installed CLI in a subprocess. The trials'
kernels run on the workers and report intermediate values to the one shared storage,
so pruning on a worker is part of what is checked.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
from batch_support import ready_store, runs_of
from helpers import cli, free_port
from test_tune import load, quad_notebook, running_trials

pytestmark = [pytest.mark.dask, pytest.mark.slow, pytest.mark.xdist_group("dask")]

BIN = Path(sys.executable).parent


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture
def cluster(tmp_path):
    """A real scheduler and two single-threaded workers, each its own process group."""
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    folder = tmp_path / "dask"
    folder.mkdir()
    procs = [
        subprocess.Popen(
            [
                str(BIN / "dask"),
                "scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--no-dashboard",
            ],
            stdout=(folder / "scheduler.log").open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    ]
    for name in ("w1", "w2"):
        procs.append(
            subprocess.Popen(
                [
                    str(BIN / "dask"),
                    "worker",
                    address,
                    "--nthreads",
                    "1",
                    "--name",
                    name,
                    "--host",
                    "127.0.0.1",
                    "--no-dashboard",
                    "--local-directory",
                    str(folder / name),
                ],
                stdout=(folder / f"{name}.log").open("w"),
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=folder,
                # nothing of a tune's channel can reach the workers through their environment
                env={k: v for k, v in os.environ.items() if not k.startswith("JUPYTER_REPRO")},
            )
        )
    from distributed import Client

    try:
        with Client(address, timeout=120) as c:
            c.wait_for_workers(2, timeout=180)
        yield address
    finally:
        for proc in reversed(procs):
            _stop(proc)


def test_a_study_on_a_dask_cluster_prunes_and_links_every_trial(tmp_path, cluster):
    import optuna

    nb = quad_notebook(tmp_path / "quad.ipynb")
    (tmp_path / "space.yaml").write_text(
        "x: {type: categorical, choices: [2.0, 30.0]}\n"
        "fail: {type: categorical, choices: [false, true]}\n"
    )
    uri = ready_store(tmp_path / "store")
    storage = f"sqlite:///{tmp_path / 'store' / 'optuna.db'}"
    # One earlier complete trial whose intermediate values are 100: with
    # --pruner-startup-trials 1 the median pruner stops a trial whose first report is
    # above it (x=30: 794) and lets x=2 (10, 9, 8, 0) run to the end.
    earlier = optuna.create_study(study_name="quad", storage=storage)
    earlier.add_trial(
        optuna.trial.create_trial(
            params={"x": 2.0, "fail": False},
            distributions={
                "x": optuna.distributions.CategoricalDistribution([2.0, 30.0]),
                "fail": optuna.distributions.CategoricalDistribution([False, True]),
            },
            value=100.0,
            intermediate_values={k: 100.0 for k in range(4)},
        )
    )
    log = tmp_path / "tune.log"
    done = subprocess.run(
        [
            cli("jupyter-repro"),
            "tune",
            str(nb),
            "--space",
            "space.yaml",
            "--trials",
            "4",
            "--metric",
            "loss",
            "--sampler",
            "grid",
            "--pruner-startup-trials",
            "1",
            "--executor",
            "dask",
            "--scheduler",
            cluster,
            "-j",
            "2",
            "--storage",
            storage,
            "--tracking-uri",
            uri,
            "--json",
            "report.json",
        ],
        cwd=tmp_path,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        timeout=900,
        env={k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"},
    )
    text = log.read_text()
    assert done.returncode == 0, text
    assert f"on 2 worker(s) at {cluster}" in text

    # one shared storage: the earlier trial and this tune's four, in one study
    study = load(storage, "quad")
    trials = study.trials[1:]
    states = sorted(t.state.name for t in trials)
    assert states == ["COMPLETE", "FAIL", "FAIL", "PRUNED"], text
    by_state = {t.state.name: t for t in trials}
    # the kernels on the workers reported through the storage
    assert by_state["COMPLETE"].intermediate_values == {0: 10.0, 1: 9.0, 2: 8.0, 3: 0.0}
    assert by_state["COMPLETE"].params == {"x": 2.0, "fail": False}
    assert by_state["PRUNED"].intermediate_values == {0: 794.0}
    assert by_state["PRUNED"].params == {"x": 30.0, "fail": False}
    assert study.best_trial.number == by_state["COMPLETE"].number and study.best_value == 0.0

    runs = {r.info.run_id: r for r in runs_of(uri, "quad")}
    parent = [r for r in runs.values() if r.data.tags.get("jupyter_repro.tune.parent")]
    assert len(parent) == 1
    workers = set()
    for t in trials:
        run = runs[t.user_attrs["mlflow_run_id"]]
        tags = run.data.tags
        assert tags["jupyter_repro.tune.study"] == "quad"
        assert tags["jupyter_repro.tune.storage"] == storage
        assert tags["jupyter_repro.tune.trial"] == str(t.number)
        assert tags["jupyter_repro.tune.trial_state"] == t.state.name
        assert tags["mlflow.parentRunId"] == parent[0].info.run_id
        assert {k: run.data.params[k] for k in ("x", "fail")} == {
            k: repr(v) for k, v in t.params.items()
        }
        expected = {"COMPLETE": "FINISHED", "PRUNED": "FINISHED", "FAIL": "FAILED"}
        assert run.info.status == expected[t.state.name]
        if t.state.name == "COMPLETE":
            assert run.data.metrics["loss"] == t.value == 0.0
        workers.add(tags["jupyter_repro.batch.worker"])
    for worker in workers:  # host:pid of the process that ran the trial: a dask worker
        chain = [psutil.Process(int(worker.rsplit(":", 1)[1]))]
        chain += chain[0].parents()
        assert any("worker" in p.cmdline() and cluster in p.cmdline() for p in chain), worker
    assert not [r for r in runs.values() if r.info.status == "RUNNING"]
    assert not running_trials(storage)
    assert "JUPYTER_REPRO_TUNE_STORAGE" not in os.environ
