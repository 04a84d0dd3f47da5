"""The example: the scikit-learn notebook's grid lands in MLflow with its coordinates."""

from __future__ import annotations

from pathlib import Path

import pytest
from batch_support import batch, client, ready_store, runs_of

EXAMPLES = Path(__file__).parent.parent / "example_notebooks"


@pytest.mark.slow
def test_example_grid_lands_in_mlflow(tmp_path):
    uri = ready_store(tmp_path / "store")
    proc = batch(
        EXAMPLES / "train_model.ipynb",
        "--grid",
        EXAMPLES / "train_grid.yaml",
        "-j",
        "2",
        "--output-dir",
        tmp_path / "runs",
        cwd=tmp_path,
        uri=uri,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    runs = runs_of(uri, "train_model")
    assert sorted((r.data.params["C"], r.data.params["seed"]) for r in runs) == [
        (c, s) for c in ("0.01", "0.1", "1.0") for s in ("0", "1")
    ]
    c = client(uri)
    for run in runs:
        assert run.info.status == "FINISHED"
        assert 0.8 < run.data.metrics["accuracy"] <= 1.0
        assert run.data.params["test_size"] == "0.25"  # default, logged and marked
        assert run.data.tags["mlflow.source.name"] == "example_notebooks/train_model.ipynb"
        assert run.data.tags["mlflow.source.git.commit"]
        images = c.list_artifacts(run.info.run_id, "outputs/images")
        assert len(images) == 1 and images[0].path.endswith(".png")
