"""The dask executor's rules without a cluster: what is shipped, which store a worker can
reach, which workers can run a batch, and bad options (exit 2 before any run)."""

from __future__ import annotations

import socket

import pytest
from batch_support import batch, make_notebook

from jupyter_repro import __version__
from jupyter_repro.batch.dask_executor import (
    build_payload,
    judge_workers,
    store_is_local,
    worker_is_local,
)
from jupyter_repro.errors import ReproError


def test_payload_keeps_the_layout_of_notebook_and_data_relative_to_each_other(tmp_path):
    nb = make_notebook(tmp_path / "proj" / "nbs" / "a.ipynb", "x = 1")
    (tmp_path / "proj" / "data" / "sub").mkdir(parents=True)
    (tmp_path / "proj" / "data" / "train.csv").write_text("1,2\n")
    (tmp_path / "proj" / "data" / "sub" / "more.bin").write_bytes(b"\0\1")
    (tmp_path / "proj" / "labels.txt").write_text("cat\n")
    payload = build_payload(
        nb, [str(tmp_path / "proj" / "data"), str(tmp_path / "proj" / "labels.txt")]
    )
    assert payload.notebook == "nbs/a.ipynb"
    assert sorted(payload.files) == [
        "data/sub/more.bin",
        "data/train.csv",
        "labels.txt",
        "nbs/a.ipynb",
    ]
    assert payload.files["data/sub/more.bin"] == b"\0\1"
    assert payload.size == sum(len(v) for v in payload.files.values())


@pytest.mark.parametrize(
    ("address", "local"),
    [
        ("tcp://127.0.0.1:8786", True),
        ("tcp://[::1]:8786", True),
        (f"tcp://{socket.gethostname()}:8786", True),
        ("tcp://203.0.113.7:8786", False),  # TEST-NET-3: never this machine
        ("tls://worker-17.example.org:40000", False),
    ],
)
def test_worker_is_local(address, local):
    assert worker_is_local(address) is local


@pytest.mark.parametrize(
    ("uri", "local"),
    [
        ("sqlite:////tmp/x/mlflow.db", True),
        ("file:///tmp/mlruns", True),
        ("/tmp/mlruns", True),
        ("http://mlflow.example.org:5000", False),
        ("https://mlflow.example.org", False),
        ("databricks", False),  # MLflow's name for a Databricks workspace, not a path
    ],
)
def test_store_is_local(uri, local):
    assert store_is_local(uri) is local


def _facts(host="w", kernels=("python3",), version=__version__):
    return {"host": host, "kernels": list(kernels), "version": version}


def test_judge_workers_rules():
    remote = "tcp://203.0.113.7:1"
    here = "tcp://127.0.0.1:1"
    assert judge_workers({here: _facts()}, "sqlite:////tmp/a.db", "python3", False) == []
    # a local store with a remote worker: refused unless the disk is shared
    with pytest.raises(ReproError, match="is a file on this machine and dask worker"):
        judge_workers({here: _facts(), remote: _facts()}, "sqlite:////tmp/a.db", "python3", False)
    assert judge_workers({remote: _facts()}, "sqlite:////tmp/a.db", "python3", True) == []
    assert judge_workers({remote: _facts()}, "http://m:5000", "python3", False) == []
    with pytest.raises(ReproError, match=r"has no kernel named 'julia-1\.9'.*python3"):
        judge_workers({remote: _facts()}, "http://m:5000", "julia-1.9", False)
    with pytest.raises(ReproError, match=r"cannot run jupyter-repro.*ModuleNotFoundError"):
        judge_workers(
            {remote: ModuleNotFoundError("No module named 'jupyter_repro'")},
            "http://m:5000",
            "python3",
            False,
        )
    (warning,) = judge_workers({remote: _facts(version="0.0.1")}, "http://m:5000", "python3", False)
    assert "runs jupyter-repro 0.0.1" in warning


@pytest.mark.slow
def test_bad_dask_options_exit_2_before_any_run(tmp_path):
    nb = make_notebook(tmp_path / "n.ipynb", ("x = 1", ["parameters"]), "print(x)")
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    wrong = batch(nb, "--scheduler", "tcp://127.0.0.1:1", cwd=tmp_path, uri=uri)
    assert wrong.returncode == 2 and "need --executor dask" in wrong.stderr
    port = socket.socket()
    port.bind(("127.0.0.1", 0))
    free = port.getsockname()[1]
    port.close()
    gone = batch(
        nb,
        "--executor",
        "dask",
        "--scheduler",
        f"tcp://127.0.0.1:{free}",
        "--connect-timeout",
        "2",
        cwd=tmp_path,
        uri=uri,
    )
    assert gone.returncode == 2
    assert f"cannot reach the dask scheduler at tcp://127.0.0.1:{free}" in gone.stderr
    assert len(gone.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "store").exists(), "no store, no run"
