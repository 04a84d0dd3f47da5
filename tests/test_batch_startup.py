"""Lean start-up of ``jupyter-repro batch`` (issue 19, part B): what a command imports
before it needs it, the worker pool started while inputs are validated (and ended when
they are bad), the environment fingerprint taken once per batch, the start-up timings
in the JSON report. Speed itself is measured in benchmarks/batch_overhead.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from batch_support import batch, client, runs_of, sqlite_uri
from helpers import cli, make_notebook


def _modules_after(code: str) -> set[str]:
    """Top-level module names a fresh interpreter holds after running ``code``."""
    probe = code + (
        "\nimport sys, json\nprint(json.dumps(sorted("
        "{m.split('.')[0] for m in sys.modules if sys.modules[m] is not None})))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True
    )
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_command_parser_imports_no_notebook_or_tracking_library():
    mods = _modules_after("from jupyter_repro.cli import build_parser\nbuild_parser()")
    assert not mods & {"nbformat", "jsonschema", "mlflow", "pandas", "nbconvert", "optuna"}
    smoke = _modules_after(
        "import argparse\nfrom jupyter_repro.smoke.cli import add_arguments\n"
        "add_arguments(argparse.ArgumentParser())"
    )
    assert not smoke & {"nbformat", "mlflow", "pandas"}


def test_worker_preload_has_mlflow_store_and_no_pandas(tmp_path):
    """The forkserver's preload: MLflow's sqlite store, papermill and the HTML exporter
    are ready, pandas is not imported, and a full run's logging (params, tags, metrics,
    artifacts, a dataset input) works without it."""
    uri = sqlite_uri(tmp_path / "store")
    code = f"""
import jupyter_repro.batch.preload, sys
assert "pandas" not in sys.modules or sys.modules["pandas"] is None
assert "mlflow.store.tracking.sqlalchemy_store" in sys.modules and "papermill" in sys.modules
from pathlib import Path
from jupyter_repro.provenance.data import digest_input
from jupyter_repro.provenance.mlflow_log import FinishedRun, collect_provenance, log_run
from jupyter_repro.provenance.store import prepare_experiment
data = Path({str(tmp_path)!r}) / "d.csv"
data.write_text("a,b\\n1,2\\n")
nb = Path({str(tmp_path)!r}) / "nb.ipynb"
import nbformat
nbformat.write(nbformat.v4.new_notebook(), nb)
prov = collect_provenance(nb, [digest_input(str(data))])
eid = prepare_experiment({uri!r}, "nopandas")
run_id = log_run({uri!r}, eid, FinishedRun("r", "FINISHED", nbformat.v4.new_notebook()), prov,
                 {{"a": 1}})
assert sys.modules.get("pandas") is None
print(run_id)
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr[-3000:]
    run = client(uri).get_run(out.stdout.strip().splitlines()[-1])
    assert run.info.status == "FINISHED" and run.data.params == {"a": "1"}
    assert [d.dataset.name for d in run.inputs.dataset_inputs] == ["d.csv"]
    names = {f.path for f in client(uri).list_artifacts(run.info.run_id)}
    assert {"environment.json", "requirements.lock.txt", "notebook"} <= names


def test_adopt_fingerprint_only_of_this_interpreter(monkeypatch):
    from jupyter_repro.provenance import env

    monkeypatch.setattr(env, "_FINGERPRINT", {})
    other = {"python_executable": "/elsewhere/bin/python", "lock_format": env.LOCK_FORMAT}
    assert not env.adopt_fingerprint({**other, "distributions": []})
    stale = {"python_executable": sys.executable, "lock_format": 1, "distributions": []}
    assert not env.adopt_fingerprint(stale)
    mine = {
        "python_executable": sys.executable,
        "lock_format": env.LOCK_FORMAT,
        "distributions": [{"name": "x", "version": "1"}],
    }
    assert env.adopt_fingerprint(mine)
    assert env.environment_fingerprint() is mine
    assert env.interpreter_fingerprint.__wrapped__(sys.executable) is mine
    assert not env.adopt_fingerprint(dict(mine))  # one is cached: it stays


def _processes_with(marker: str) -> dict[int, str]:
    """Live processes whose environment holds ``marker`` (this test's batch and anything
    it started: the forkserver, workers, kernels), with their command lines."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if marker.encode() in environ and state != "Z":
            found[int(entry.name)] = cmdline
    return found


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs /proc")
@pytest.mark.parametrize(
    "bad",
    [
        ["--data", "nope.csv"],  # found after the workers' start began
        ["--kernel", "no_such_kernel_xyz"],
        ["--tracking-uri", "bogus://x"],
    ],
)
def test_bad_input_exits_2_and_leaves_no_worker_process(tmp_path, bad):
    """The worker pool's forkserver starts before the inputs are checked; on bad input
    it is ended with the batch, mid-import, not left to finish its imports alone."""
    nb = make_notebook(tmp_path / "nb.ipynb", ("a = 1", ["parameters"]))
    marker = f"JREPRO_TEST_{uuid.uuid4().hex}"
    uri = sqlite_uri(tmp_path / "store")
    args = [nb, *bad] if bad[0] == "--tracking-uri" else [nb, "--tracking-uri", uri, *bad]
    env = {**os.environ, marker: "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    err = tmp_path / "stderr.txt"
    with open(err, "w") as fh:  # a file, not a pipe: wait for the batch process alone
        proc = subprocess.Popen(
            [cli("jupyter-repro"), "batch", *map(str, args), "--no-progress"],
            cwd=tmp_path,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=fh,
        )
        assert proc.wait(timeout=120) == 2, err.read_text()
    # the forkserver (mid-import) is gone when the batch process has exited...
    left = _processes_with(marker)
    assert not [c for c in left.values() if "forkserver" in c], left
    # ...and multiprocessing's resource tracker follows as soon as it sees its pipe close
    deadline = time.monotonic() + 10
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = _processes_with(marker)
    assert left == {}, f"left running after exit 2: {left}"
    assert "\n" not in err.read_text().strip()
    assert not (tmp_path / "store").exists()


@pytest.mark.slow
def test_report_times_the_kernel_launch_and_environment_is_the_kernels(tmp_path):
    nb = make_notebook(tmp_path / "st.ipynb", ("a = 1", ["parameters"]), "print(a)")
    uri = sqlite_uri(tmp_path / "store")
    report = tmp_path / "r.json"
    before = time.time()
    proc = batch(nb, "-p", "a", "2", "--json", report, cwd=tmp_path, uri=uri)
    after = time.time()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (run,) = json.loads(report.read_text())["runs"]
    assert before < run["started_at"] < after
    timings = run["timings"]
    # from the run's start to its kernel's first reply: after the MLflow run opened, and
    # at least the wait for the kernel itself
    assert 0 < timings["open_run"] <= timings["until_kernel"] < run["duration"]
    assert 0 < timings["kernel_start"] <= timings["until_kernel"]
    (logged,) = runs_of(uri, "st")
    path = client(uri).download_artifacts(logged.info.run_id, "environment.json", str(tmp_path))
    environment = json.loads(Path(path).read_text())
    # the kernelspec's interpreter is this one: the fingerprint the batch process took
    # (adopted by the worker) is logged as the kernel's
    assert environment["source"] == "kernel"
    assert environment["python_executable"] == sys.executable
    names = {d["name"] for d in environment["distributions"]}
    assert {"jupyter-repro", "mlflow", "papermill"} <= names


@pytest.mark.skipif(sys.platform == "win32", reason="no forkserver")
@pytest.mark.parametrize(
    "module, name, fault",
    [
        # Ctrl-C while the notebook's provenance (git, environment) is collected
        ("jupyter_repro.batch.runner", "collect_provenance", "KeyboardInterrupt()"),
        # the pool's private folder cannot be made (a full disk)
        (
            "jupyter_repro.batch.executors",
            "LocalProcessExecutor.__init__",
            "OSError(28, 'No space left on device')",
        ),
    ],
)
def test_a_failure_before_the_pool_takes_over_ends_the_prestarted_forkserver(
    tmp_path, module, name, fault
):
    """``run_batch`` called from Python (tune, the server): a failure after the inputs
    were checked but before the executor took the forkserver over ends the forkserver at
    once, not when the calling process exits. The fault is raised where it would arise
    (injected: neither can be caused on demand), everything else is real."""
    nb = make_notebook(tmp_path / "nb.ipynb", ("a = 1", ["parameters"]))
    owner, _, attr = name.rpartition(".")
    code = f"""
import importlib, json, os
from multiprocessing import forkserver
from jupyter_repro.batch.runner import BatchOptions, run_batch
target = importlib.import_module({module!r})
for part in filter(None, {owner!r}.split(".")):
    target = getattr(target, part)
def fault(*args, **kwargs):
    raise {fault}
setattr(target, {attr!r}, fault)
options = BatchOptions(tracking_uri={sqlite_uri(tmp_path / "store")!r}, jobs=1)
try:
    run_batch({str(nb)!r}, [{{"a": 2}}], options, echo=lambda line: None)
    error = None
except BaseException as exc:
    error = type(exc).__name__
pid = forkserver._forkserver._forkserver_pid
alive = False
if pid is not None:
    try:
        os.kill(pid, 0)
        alive = True
    except ProcessLookupError:
        pass
print(json.dumps({{"error": error, "forkserver": pid, "alive": alive}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["error"] == fault.split("(")[0], result
    assert result["forkserver"] is None and not result["alive"], result
