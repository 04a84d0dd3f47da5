"""An ``mlflow server`` over HTTP works the same way as the local sqlite store."""

from __future__ import annotations

import pytest
from batch_support import batch, client, make_notebook, running_mlflow_server


@pytest.fixture
def mlflow_server(tmp_path):
    with running_mlflow_server(tmp_path, 180) as url:
        yield url


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
