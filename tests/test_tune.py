"""``jupyter-repro tune``: Optuna studies over a notebook, every trial a batch run.

Real components: the installed CLI in a subprocess, real kernels, a real sqlite Optuna
storage and MLflow store in ``tmp_path``. Trials are expensive (a kernel each), so each
slow test runs a small study and checks many facts of it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
from batch_support import kill_pids, ready_store, runs_of, wait_for
from helpers import cli, make_notebook

from jupyter_repro.errors import ReproError
from jupyter_repro.tune.space import load_space
from jupyter_repro.tune.storage import public_url

# --- a notebook with a known optimum: loss = (x - 2)^2, minimum 0 at x = 2 ---------------


def quad_notebook(path: Path) -> Path:
    return make_notebook(
        path,
        ("x = 0.0\nfail = False\nlayers = 1\nwidth2 = 4", ["parameters"]),
        "import jupyter_repro\n"
        "if fail:\n    raise ValueError('boom: asked to fail')\n"
        "loss = (x - 2.0) ** 2 + (layers - 1) * 0.5\n"
        "for k in range(3):\n    jupyter_repro.record('loss', loss + 10 - k, step=k)\n"
        "jupyter_repro.record('loss', loss, step=3)",
        "jupyter_repro.record('reached_end', 1.0)",
    )


def tune(*args, cwd: Path, uri: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    return subprocess.run(
        [cli("jupyter-repro"), "tune", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        stdin=subprocess.DEVNULL,
    )


def load(storage: str, name: str):
    import optuna

    return optuna.load_study(study_name=name, storage=storage)


def running_trials(storage: str) -> list:
    import optuna

    out = []
    for s in optuna.get_all_study_summaries(storage):
        study = load(storage, s.study_name)
        out += study.get_trials(states=(optuna.trial.TrialState.RUNNING,))
    return out


# --- spaces (no kernels) -------------------------------------------------------------


def test_yaml_space_speaks_optunas_words(tmp_path):
    import optuna

    p = tmp_path / "space.yaml"
    p.write_text(
        "lr: {type: float, low: 1.0e-4, high: 1.0e-1, log: true}\n"
        "layers: {type: int, low: 1, high: 4, step: 1}\n"
        "act: {type: categorical, choices: [relu, tanh]}\n"
        "seed: 7\n"
    )
    space = load_space(p)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    values = space.suggest(trial)
    assert set(values) == {"lr", "layers", "act", "seed"}
    assert 1e-4 <= values["lr"] <= 1e-1 and values["layers"] in range(1, 5)
    assert values["act"] in ("relu", "tanh") and values["seed"] == 7
    dists = trial.distributions
    assert dists["lr"].log and isinstance(dists["layers"], optuna.distributions.IntDistribution)


@pytest.mark.parametrize(
    "text, cause",
    [
        ("x: {type: float, low: 1}\n", "needs high"),
        ("x: {type: float, low: 0, high: 1, choices: [1]}\n", "does not take choices"),
        ("x: {type: gaussian, low: 0, high: 1}\n", "type must be one of"),
        ("x: {type: float, low: 0, high: 1, log: true}\n", "log needs low > 0"),
        ("x: {type: int, low: 0.5, high: 3}\n", "must be integers"),
        ("x: {type: float, low: 2, high: 1}\n", "is above high"),
        ("x: {type: categorical, choices: []}\n", "non-empty list"),
        ("x: 3\n", "no searched parameter"),
        ("- 1\n", "non-empty mapping"),
    ],
)
def test_bad_yaml_space_is_one_line_naming_the_file(tmp_path, text, cause):
    p = tmp_path / "space.yaml"
    p.write_text(text)
    with pytest.raises(ReproError) as info:
        load_space(p)
    assert str(p) in str(info.value) and cause in str(info.value)


def test_conditional_space_py_names_are_found_by_probing(tmp_path):
    p = tmp_path / "space.py"
    p.write_text(
        "def space(trial):\n"
        "    layers = trial.suggest_int('layers', 1, 3)\n"
        "    out = {'layers': layers}\n"
        "    if layers >= 2:\n"
        "        out['width2'] = trial.suggest_int('width2', 4, 64, log=True)\n"
        "    return out\n"
    )
    assert load_space(p).names() == {"layers", "width2"}


def test_grid_sampler_needs_finite_axes(tmp_path):
    p = tmp_path / "space.yaml"
    p.write_text("x: {type: float, low: 0, high: 1, step: 0.5}\nn: {type: int, low: 1, high: 3}\n")
    assert load_space(p).grid() == {"x": [0, 0.5, 1.0], "n": [1, 2, 3]}
    p.write_text("x: {type: float, low: 0, high: 1}\n")
    with pytest.raises(ReproError, match="no finite set of values"):
        load_space(p).grid()


def test_storage_tag_has_no_credentials():
    assert public_url("postgresql://ann:s3cret@db.example:5432/optuna") == (
        "postgresql://db.example:5432/optuna"
    )
    assert public_url("sqlite:////tmp/a/optuna.db") == "sqlite:////tmp/a/optuna.db"


def test_space_naming_an_unknown_parameter_fails_before_any_trial(tmp_path):
    nb = quad_notebook(tmp_path / "quad.ipynb")
    (tmp_path / "space.yaml").write_text("y: {type: float, low: 0, high: 1}\n")
    store = tmp_path / "store"
    done = tune(
        nb,
        "--space",
        "space.yaml",
        "--trials",
        "2",
        "--metric",
        "loss",
        "--storage",
        f"sqlite:///{store / 'optuna.db'}",
        cwd=tmp_path,
        uri=f"sqlite:///{store / 'mlflow.db'}",
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if "error" in line]
    assert len(lines) == 1 and "quad.ipynb" in lines[0] and "'y'" in lines[0], done.stderr
    assert not store.exists()  # neither store touched


# --- real studies ----------------------------------------------------------------------


@pytest.mark.slow
def test_grid_study_finds_the_optimum_with_failing_trials_and_linked_runs(tmp_path):
    nb = quad_notebook(tmp_path / "quad.ipynb")
    (tmp_path / "space.yaml").write_text(
        "x: {type: categorical, choices: [1.0, 2.0]}\n"
        "fail: {type: categorical, choices: [false, true]}\n"
    )
    uri = ready_store(tmp_path / "store")
    storage = f"sqlite:///{tmp_path / 'store' / 'optuna.db'}"
    done = tune(
        nb,
        "--space",
        "space.yaml",
        "--trials",
        "4",
        "--metric",
        "loss",
        "--sampler",
        "grid",
        "--pruner",
        "none",
        "-j",
        "2",
        "--seed",
        "0",
        "--notify-command",
        "cat > notified.json",
        cwd=tmp_path,
        uri=uri,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "default storage" not in done.stderr
    study = load(storage, "quad")  # default study name: the notebook's stem
    trials = study.trials
    assert [t.state.name for t in trials].count("COMPLETE") == 2
    assert [t.state.name for t in trials].count("FAIL") == 2
    assert study.best_params == {"x": 2.0, "fail": False} and study.best_value == 0.0

    runs = {r.info.run_id: r for r in runs_of(uri, "quad")}
    parents = [r for r in runs.values() if r.data.tags.get("jupyter_repro.tune.parent")]
    assert len(parents) == 1
    parent = parents[0]
    for t in trials:
        run = runs[t.user_attrs["mlflow_run_id"]]
        assert t.user_attrs["mlflow_run_url"].endswith(run.info.run_id)
        tags = run.data.tags
        assert tags["jupyter_repro.tune.study"] == "quad"
        assert tags["jupyter_repro.tune.storage"] == storage
        assert tags["jupyter_repro.tune.trial"] == str(t.number)
        assert tags["mlflow.parentRunId"] == parent.info.run_id
        assert tags["jupyter_repro.tune.trial_state"] == t.state.name
        assert run.data.params["x"] == repr(t.params["x"])
        assert run.data.params["fail"] == repr(t.params["fail"])
        if t.state.name == "COMPLETE":
            assert run.info.status == "FINISHED"
            assert run.data.metrics["loss"] == t.value == (t.params["x"] - 2.0) ** 2
        else:
            assert run.info.status == "FAILED"
            assert tags["jupyter_repro.error.cell_index"] == "1"
            assert tags["jupyter_repro.error.ename"] == "ValueError"
            assert "ValueError" in t.user_attrs["jupyter_repro.fail_reason"]
    assert parent.info.status == "FINISHED"
    assert parent.data.params["best.x"] == "2.0"
    assert parent.data.metrics["best_loss"] == 0.0
    from batch_support import client

    art = {a.path for a in client(uri).list_artifacts(parent.info.run_id, "study")}
    assert {"study/optimization_history.png", "study/param_importances.png"} <= art
    assert not [r for r in runs.values() if r.info.status == "RUNNING"]
    assert not running_trials(storage)
    notified = json.loads((tmp_path / "notified.json").read_text())
    assert notified["best"]["params"] == {"x": "2.0", "fail": "False"}
    assert notified["counts"] == {"COMPLETE": 2, "FAIL": 2}
    assert "best: trial" in done.stdout and "2 failed" in done.stdout


@pytest.mark.slow
def test_pruned_trials_stop_their_notebook_and_conditional_space_is_injected(tmp_path):
    import optuna

    nb = quad_notebook(tmp_path / "quad.ipynb")
    (tmp_path / "space.py").write_text(
        "def space(trial):\n"
        "    layers = trial.suggest_int('layers', 1, 2)\n"
        "    out = {'layers': layers, 'x': 2.0}\n"
        "    if layers == 2:\n"
        "        out['width2'] = trial.suggest_int('width2', 8, 16)\n"
        "    return out\n"
    )
    uri = ready_store(tmp_path / "store")
    storage = f"sqlite:///{tmp_path / 'store' / 'optuna.db'}"
    # One earlier complete trial with intermediate values 0: with n_startup_trials=1 the
    # median pruner stops any trial whose first report (>= 8) is above it.
    study = optuna.create_study(study_name="pr", storage=storage)
    study.add_trial(
        optuna.trial.create_trial(value=0.0, intermediate_values={0: 0.0, 1: 0.0, 2: 0.0})
    )
    done = tune(
        nb,
        "--space",
        "space.py",
        "--trials",
        "2",
        "--metric",
        "loss",
        "--study",
        "pr",
        "--pruner",
        "median",
        "--pruner-startup-trials",
        "1",
        "--sampler",
        "random",
        "--seed",
        "3",
        "--storage",
        storage,
        cwd=tmp_path,
        uri=uri,
    )
    assert done.returncode == 1, done.stdout + done.stderr  # no trial completed
    trials = load(storage, "pr").trials[1:]
    assert [t.state.name for t in trials] == ["PRUNED", "PRUNED"], done.stdout
    runs = {r.info.run_id: r for r in runs_of(uri, "quad")}
    for t in trials:
        assert t.intermediate_values == {0: 10.0 + 0.5 * (t.params["layers"] - 1)}
        assert ("width2" in t.params) == (t.params["layers"] == 2)
        run = runs[t.user_attrs["mlflow_run_id"]]
        assert run.info.status == "FINISHED"
        assert run.data.tags["jupyter_repro.tune.trial_state"] == "PRUNED"
        assert "pruned" in run.data.tags["jupyter_repro.status_reason"]
        assert run.data.tags["jupyter_repro.error.ename"] == "TrialPruned"
        assert "reached_end" not in run.data.metrics  # the notebook stopped at that cell
        for name, value in t.params.items():
            assert run.data.params[name] == repr(value)
    assert not running_trials(storage)
    assert not [r for r in runs.values() if r.info.status == "RUNNING"]


@pytest.mark.slow
def test_sigkill_of_tune_then_gc_leaves_nothing_running(tmp_path):
    proc, uri, storage, pid_dir = _sleepy_study(tmp_path)
    try:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
        # The workers see their tune gone and end their runs KILLED themselves.
        wait_for(
            lambda: all(
                r.info.status != "RUNNING"
                for r in runs_of(uri, "sleepy")
                if "jupyter_repro.tune.trial" in r.data.tags
            ),
            120,
            "the trials' runs to end",
        )
        assert len(running_trials(storage)) == 2  # Optuna cannot know by itself
        done = subprocess.run(
            [cli("jupyter-repro"), "gc", "--tracking-uri", uri, "--storage", storage],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        assert "2 dangling trial(s) marked FAIL" in done.stderr
        assert "1 dangling run(s) marked KILLED" in done.stderr  # the study's parent run
        assert not running_trials(storage)
        runs = runs_of(uri, "sleepy")
        assert len(runs) == 3 and not [r for r in runs if r.info.status == "RUNNING"]
        for t in load(storage, "sleepy").trials:
            assert "is gone" in t.user_attrs["jupyter_repro.fail_reason"]
    finally:
        proc.kill()
        kill_pids(p.name for p in pid_dir.iterdir())


def _sleepy_study(tmp_path, trials: int = 3):
    """Start ``tune`` (its own session) on a notebook whose trials sleep; wait for two."""
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()
    nb = make_notebook(
        tmp_path / "sleepy.ipynb",
        ("i = 0", ["parameters"]),
        "import os, time\n"
        f"open(os.path.join({str(pid_dir)!r}, str(os.getpid())), 'w').close()\n"
        "time.sleep(300)",
    )
    (tmp_path / "space.yaml").write_text("i: {type: int, low: 0, high: 9}\n")
    uri = ready_store(tmp_path / "store")
    storage = f"sqlite:///{tmp_path / 'store' / 'optuna.db'}"
    log = (tmp_path / "tune.log").open("w")
    proc = subprocess.Popen(
        [
            cli("jupyter-repro"),
            "tune",
            str(nb),
            "--space",
            "space.yaml",
            "--trials",
            str(trials),
            "--metric",
            "m",
            "-j",
            "2",
            "--heartbeat-interval",
            "1",
        ],
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "MLFLOW_TRACKING_URI": uri},
        start_new_session=True,
        stdin=subprocess.DEVNULL,
    )
    log.close()
    try:
        wait_for(
            lambda: len(list(pid_dir.iterdir())) == 2 and len(running_trials(storage)) == 2,
            300,
            "two trials sleeping",
        )
    except AssertionError:
        proc.kill()
        kill_pids(p.name for p in pid_dir.iterdir())
        raise AssertionError((tmp_path / "tune.log").read_text()) from None
    return proc, uri, storage, pid_dir


@pytest.mark.slow
def test_sigterm_fails_in_flight_trials_and_kills_their_runs(tmp_path):
    proc, uri, storage, pid_dir = _sleepy_study(tmp_path)
    try:
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(120) == 143, (tmp_path / "tune.log").read_text()
        study = load(storage, "sleepy")
        assert [t.state.name for t in study.trials] == ["FAIL", "FAIL"]  # the 3rd never asked
        for t in study.trials:
            assert "interrupted" in t.user_attrs["jupyter_repro.fail_reason"]
        runs = runs_of(uri, "sleepy")
        trial_runs = [r for r in runs if "jupyter_repro.tune.trial" in r.data.tags]
        assert sorted(r.info.status for r in trial_runs) == ["KILLED", "KILLED"]
        assert [r.info.status for r in runs if r not in trial_runs] == ["KILLED"]  # study run
        assert not [p for p in pid_dir.iterdir() if _alive(int(p.name))]  # kernels gone
    finally:
        proc.kill()
        kill_pids(p.name for p in pid_dir.iterdir())


def _alive(pid: int) -> bool:
    from batch_support import pid_running

    return pid_running(pid)


def _get_json(url: str):
    import urllib.request

    with urllib.request.urlopen(url, timeout=30) as response:
        assert response.status == 200, url
        return json.loads(response.read())


@contextlib.contextmanager
def running_optuna_dashboard(storage: str, folder: Path, url: str):
    """A real ``optuna-dashboard`` server over an existing ``storage`` at ``url``
    (``http://127.0.0.1:PORT``, a free port)."""
    import sys
    import urllib.request

    from batch_support import wait_for

    log = (folder / "dashboard.log").open("w")
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "optuna-dashboard"),
            storage,
            "--host",
            "127.0.0.1",
            "--port",
            url.rsplit(":", 1)[1],
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        stdin=subprocess.DEVNULL,
    )

    def up() -> bool:
        try:
            with urllib.request.urlopen(url + "/api/studies", timeout=2):
                return True
        except OSError:
            return proc.poll() is not None

    try:
        wait_for(up, 120, "optuna-dashboard")
        assert proc.poll() is None, (folder / "dashboard.log").read_text()
        yield url
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        log.close()


@pytest.mark.slow
def test_every_trial_is_linked_between_optuna_dashboard_and_the_mlflow_ui(tmp_path):
    """The done-when of issue 18: each trial seen in optuna-dashboard (its HTTP API, as its
    page reads it) names its MLflow run by id and by a URL that the MLflow server resolves;
    each run names its study, storage (no credentials) and trial, and links back."""
    import urllib.parse
    import urllib.request

    from batch_support import running_mlflow_server

    nb = quad_notebook(tmp_path / "quad.ipynb")
    (tmp_path / "space.yaml").write_text(
        "x: {type: float, low: 0, high: 4}\nlayers: {type: int, low: 1, high: 2}\n"
    )
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    with running_mlflow_server(tmp_path) as ui:
        # the store the server reads: tune writes to it directly, as beside `mlflow ui`
        uri = f"sqlite:///{tmp_path / 'server.db'}"
        from helpers import free_port

        dash = f"http://127.0.0.1:{free_port()}"  # where the dashboard will serve the study
        done = tune(
            nb,
            "--space",
            "space.yaml",
            "--trials",
            "3",
            "--metric",
            "loss",
            "-j",
            "2",
            "--sampler",
            "random",
            "--seed",
            "1",
            "--storage",
            storage,
            "--mlflow-ui",
            ui,
            "--dashboard-url",
            dash,
            cwd=tmp_path,
            uri=uri,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        with running_optuna_dashboard(storage, tmp_path, dash):
            studies = _get_json(dash + "/api/studies")["study_summaries"]
            [summary] = [s for s in studies if s["study_name"] == "quad"]
            detail = _get_json(f"{dash}/api/studies/{summary['study_id']}")
            # the trial page the runs link to is served (the dashboard's own route)
            with urllib.request.urlopen(
                f"{dash}/dashboard/studies/{summary['study_id']}/trials?numbers=0", timeout=30
            ) as page:
                assert page.status == 200 and b"<html" in page.read().lower()
        trials = detail["trials"]
        assert sorted(t["number"] for t in trials) == [0, 1, 2]
        for t in trials:
            assert t["state"] == "Complete", t
            attrs = {a["key"]: a["value"] for a in t["user_attrs"]}
            run_id, link = attrs["mlflow_run_id"], attrs["mlflow_run_url"]
            # the URL is the MLflow UI's page of that run: the server serves the UI at its
            # base, and the ids in the fragment name the run it holds
            base, _, fragment = link.partition("#")
            assert base.rstrip("/") == ui
            with urllib.request.urlopen(base, timeout=30) as page:
                assert page.status == 200 and b"<html" in page.read().lower()
            _, exps, experiment_id, runs, linked = fragment.split("/")
            assert (exps, runs, linked) == ("experiments", "runs", run_id)
            q = urllib.parse.urlencode({"run_id": run_id})
            run = _get_json(f"{ui}/api/2.0/mlflow/runs/get?{q}")["run"]
            assert run["info"]["experiment_id"] == experiment_id
            assert run["info"]["status"] == "FINISHED"
            tags = {x["key"]: x["value"] for x in run["data"]["tags"]}
            assert tags["jupyter_repro.tune.study"] == "quad"
            assert tags["jupyter_repro.tune.storage"] == storage
            assert tags["jupyter_repro.tune.trial"] == str(t["number"])
            back = f"{dash}/dashboard/studies/{summary['study_id']}/trials?numbers={t['number']}"
            assert tags["jupyter_repro.tune.dashboard_url"] == back
            assert f"]({back})" in tags["mlflow.note.content"]
            params = {x["key"]: x["value"] for x in run["data"]["params"]}
            for p in t["params"]:  # the dashboard's values are the run's parameters
                assert float(params[p["name"]]) == float(p["param_external_value"])
            metrics = {x["key"]: x["value"] for x in run["data"]["metrics"]}
            assert metrics["loss"] == pytest.approx(t["values"][0])
