"""An ``mlflow server`` over HTTP works the same way as the local sqlite store."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from batch_support import batch, client, healthy, make_notebook, wait_for
from helpers import free_port


@pytest.fixture
def mlflow_server(tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = (tmp_path / "server.log").open("w")
    mlflow_bin = str(Path(sys.executable).parent / "mlflow")
    proc = subprocess.Popen(
        [
            mlflow_bin,
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--backend-store-uri",
            f"sqlite:///{tmp_path / 'server.db'}",
            "--artifacts-destination",
            str(tmp_path / "server-artifacts"),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        cwd=tmp_path,
    )
    try:
        wait_for(lambda: proc.poll() is not None or healthy(url), 180, "mlflow server")
        assert proc.poll() is None, (tmp_path / "server.log").read_text()
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


@pytest.mark.slow
def test_batch_logs_to_a_real_mlflow_server_over_http(tmp_path, mlflow_server):
    nb = make_notebook(
        tmp_path / "http.ipynb",
        ("lr = 0.1", ["parameters"]),
        "import jupyter_repro, mlflow\njupyter_repro.record('score', lr * 10)\n"
        "mlflow.log_metric('direct', 3.0)",
    )
    proc = batch(nb, "-p", "lr", "1e-3", "--tracking-uri", mlflow_server, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    c = client(mlflow_server)
    exp = c.get_experiment_by_name("http")
    (run,) = c.search_runs([exp.experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.params["lr"] == "0.001"
    assert run.data.metrics == {"score": 0.01, "direct": 3.0}
    assert run.data.tags["mlflow.source.type"] == "NOTEBOOK"
    top = {a.path for a in c.list_artifacts(run.info.run_id)}
    assert {"notebook", "diff", "outputs", "environment.json"} <= top
    diff = {a.path for a in c.list_artifacts(run.info.run_id, "diff")}
    assert diff == {"diff/nbdiff.json", "diff/nbdiff.txt", "diff/nbdiff.html"}
    assert any((tmp_path / "server-artifacts").rglob("nbdiff.json")), "stored by the server"
