"""Executors come from one registry (entry point group ``jupyter_repro.executors``): its
names are ``--executor``'s choices, and a new executor is one module plus one entry."""

from __future__ import annotations

import json
import os
import subprocess
import textwrap

import pytest
from batch_support import ready_store, runs_of
from helpers import cli, make_notebook

from jupyter_repro.batch.registry import (
    ENTRY_POINT_GROUP,
    executor_class,
    executor_names,
    register_executor,
)
from jupyter_repro.errors import ReproError

TOY = '''
"""A toy executor: runs in threads of the batch process itself."""
import os
from concurrent.futures import ThreadPoolExecutor

from jupyter_repro.batch.execute import execute_run
from jupyter_repro.batch.executors import BaseExecutor
from jupyter_repro.batch.supervise import stop_runs


class ToyExecutor(BaseExecutor):
    @classmethod
    def create(cls, options, notebook, batch_id, jobs):
        return cls(jobs, batch_id)

    def __init__(self, jobs, batch_id):
        self.pool, self.batch_id = ThreadPoolExecutor(jobs), batch_id

    def describe(self, runs):
        return f"toy: {runs} run(s) in threads of process {os.getpid()}"

    def submit(self, fn, *args):
        return self.pool.submit(fn, *args)

    def submit_run(self, spec):
        return self.pool.submit(execute_run, spec)

    def stop(self):
        stop_runs(self.batch_id, "toy stopped")

    def cancel_pending(self):
        self.pool.shutdown(wait=False, cancel_futures=True)

    def shutdown(self, cancel_pending=False):
        self.pool.shutdown(wait=True, cancel_futures=cancel_pending)
'''


def test_the_built_in_executors_are_registered_and_unknown_names_refused():
    assert executor_names()[:1] == ["local"] and "dask" in executor_names()
    assert executor_class("local").__name__ == "LocalProcessExecutor"
    assert executor_class("dask").reruns_lost_runs is True
    with pytest.raises(ReproError, match=r"must be one of local, .*dask.*not 'nope'"):
        executor_class("nope")
    register_executor("broken", "no_such_module_here:Thing")
    with pytest.raises(ReproError, match="--executor broken: cannot load"):
        executor_class("broken")


def test_the_cli_offers_the_registered_names(tmp_path):
    nb = make_notebook(tmp_path / "a.ipynb", ("x = 1", ["parameters"]))
    done = subprocess.run(
        [cli("jupyter-repro"), "batch", str(nb), "--executor", "nope"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "invalid choice: 'nope'" in done.stderr and "'local'" in done.stderr
    assert "'dask'" in done.stderr


@pytest.mark.slow
def test_a_new_executor_is_one_module_and_one_entry_point(tmp_path):
    """The toy executor's module and an entry point in a dist-info folder on the path
    are all it takes: ``--executor toy`` offers it and runs the batch through it."""
    site = tmp_path / "site"
    (site / "toy_executor-0.1.dist-info").mkdir(parents=True)
    (site / "toy_executor.py").write_text(textwrap.dedent(TOY))
    info = site / "toy_executor-0.1.dist-info"
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-executor\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        f"[{ENTRY_POINT_GROUP}]\ntoy = toy_executor:ToyExecutor\n"
    )
    nb = make_notebook(tmp_path / "toy.ipynb", ("x = 1", ["parameters"]), "y = x * 2")
    uri = ready_store(tmp_path / "store")
    env = {**os.environ, "PYTHONPATH": str(site), "MLFLOW_TRACKING_URI": uri}
    helped = subprocess.run(
        [cli("jupyter-repro"), "batch", "--help"], capture_output=True, text=True, env=env
    )
    assert "toy" in helped.stdout
    proc = subprocess.Popen(
        [
            *(cli("jupyter-repro"), "batch", str(nb), "-p", "x", "3", "--executor", "toy"),
            *("--no-progress", "--json", str(tmp_path / "report.json")),
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, out + err
    assert f"toy: 1 run(s) in threads of process {proc.pid}" in err
    report = json.loads((tmp_path / "report.json").read_text())
    (run,) = report["runs"]
    assert run["status"] == "FINISHED" and run["worker"].endswith(f":{proc.pid}")
    (logged,) = runs_of(uri, "toy")
    assert logged.info.status == "FINISHED" and logged.data.params["x"] == "3"
