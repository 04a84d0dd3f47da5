"""The one logging path other tools (nb-smoke --mlflow) use for a finished notebook run."""

from __future__ import annotations

import nbformat
from batch_support import client, make_notebook, ready_store, runs_of

from jupyter_repro.provenance.mlflow_log import log_finished_notebook


def test_a_finished_smoke_run_is_logged_with_its_coordinates(tmp_path):
    uri = ready_store(tmp_path / "store")
    nb_path = make_notebook(
        tmp_path / "smoke.ipynb", ("alpha = 0.5\nbeta = 'x'", ["parameters"]), "print(alpha)"
    )
    executed = nbformat.read(nb_path, as_version=4)
    executed.cells[1].outputs = [
        nbformat.v4.new_output(
            "error", ename="ZeroDivisionError", evalue="division by zero", traceback=[]
        )
    ]
    run_id = log_finished_notebook(
        nb_path,
        executed,
        "FAILED",
        reason="cell 1 raised ZeroDivisionError",
        error={"cell_index": 1, "ename": "ZeroDivisionError"},
        params={"alpha": 0.1},
        tracking_uri=uri,
        extra_tags={"jupyter_repro.tool": "nb-smoke"},
    )
    (run,) = runs_of(uri, "smoke")
    assert run.info.run_id == run_id and run.info.status == "FAILED" and run.info.end_time
    assert run.data.params == {"alpha": "0.1", "beta": "x"}
    assert run.data.tags["jupyter_repro.params.defaults"] == "beta"
    assert run.data.tags["jupyter_repro.error.ename"] == "ZeroDivisionError"
    assert run.data.tags["jupyter_repro.notebook.git_status"] == "outside-repo"
    assert run.data.tags["jupyter_repro.tool"] == "nb-smoke"
    paths = {a.path for a in client(uri).list_artifacts(run_id)}
    assert {"notebook", "diff", "outputs", "environment.json", "error.json"} <= paths


def test_two_data_inputs_with_one_file_name_keep_both_digests(tmp_path):
    from jupyter_repro.provenance.data import digest_input
    from jupyter_repro.provenance.mlflow_log import collect_provenance

    for folder, text in (("a", "1"), ("b", "2")):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "train.csv").write_text(text)
    (tmp_path / "labels.csv").write_text("x")
    nb = make_notebook(tmp_path / "n.ipynb", "x = 1")
    inputs = [digest_input(tmp_path / p) for p in ("a/train.csv", "b/train.csv", "labels.csv")]
    tags = collect_provenance(nb, inputs).tags()
    assert tags["jupyter_repro.data.a/train.csv.sha256"] == inputs[0].sha256
    assert tags["jupyter_repro.data.b/train.csv.sha256"] == inputs[1].sha256
    assert tags["jupyter_repro.data.labels.csv.sha256"] == inputs[2].sha256
    assert "jupyter_repro.data.train.csv.sha256" not in tags
