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
    store_reachable,
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
    ("uri", "local"),
    [
        ("sqlite:////tmp/x/mlflow.db", True),
        ("file:///tmp/mlruns", True),
        ("/tmp/mlruns", True),
        ("http://mlflow.example.org:5000", False),
        ("https://mlflow.example.org", False),
        ("databricks", False),  # MLflow's name for a Databricks workspace, not a path
        ("databricks-runs", True),  # a folder that happens to start with that word
    ],
)
def test_store_is_local(uri, local):
    assert store_is_local(uri) is local


def _facts(host="w", kernels=("python3",), version=__version__, store=""):
    return {"host": host, "kernels": list(kernels), "version": version, "store": store}


def test_judge_workers_rules():
    w1, w2 = "tcp://127.0.0.1:1", "tcp://203.0.113.7:1"
    assert judge_workers({w1: _facts(), w2: _facts()}, "python3") == []
    with pytest.raises(ReproError, match=r"dask worker tcp://203\.0\.113\.7:1 \(far\) cannot use"):
        judge_workers({w1: _facts(), w2: _facts(host="far", store="cannot connect")}, "python3")
    with pytest.raises(ReproError, match=r"has no kernel named 'julia-1\.9'.*python3"):
        judge_workers({w2: _facts()}, "julia-1.9")
    with pytest.raises(ReproError, match=r"cannot run jupyter-repro.*ModuleNotFoundError"):
        judge_workers({w2: ModuleNotFoundError("No module named 'jupyter_repro'")}, "python3")
    (warning,) = judge_workers({w2: _facts(version="0.0.1")}, "python3")
    assert "runs jupyter-repro 0.0.1" in warning


def test_store_reachable_checks_what_a_worker_really_sees(tmp_path):
    # a file store: only the folder the client wrote the probe into counts
    probe = tmp_path / ".jrepro-probe-x"
    probe.write_text("token-1")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert store_reachable(uri, (str(probe), "token-1")) == ""
    assert "does not see that folder" in store_reachable(uri, (str(probe), "token-2"))
    assert "does not see that folder" in store_reachable(uri, (str(tmp_path / "nope"), "t"))
    # an HTTP server nobody listens on
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert "cannot connect to http://127.0.0.1:" in store_reachable(
        f"http://127.0.0.1:{port}", timeout=3
    )


def test_store_reachable_says_when_a_server_wants_credentials(tmp_path, monkeypatch):
    import http.server
    import threading

    class Auth(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            ok = self.headers.get("Authorization") == "Basic dTpw"  # u:p
            self.send_response(200 if ok else 401)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Auth)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
        assert "refused it (HTTP 401)" in store_reachable(url)
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "u")
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "p")
        assert store_reachable(url) == ""
    finally:
        server.shutdown()


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
