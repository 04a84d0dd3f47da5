"""``jupyter-repro server``: a real team MLflow server started by the installed CLI.

Each slow test starts one real server (10-30 s on a busy 2-core machine) and checks what a
user relies on: the printed export line works, runs land in DIR/mlflow.db and artifact
bytes in DIR/artifacts (uploaded through the server), and a signal stops every process of
the server's tree. The fast tests cover the checks made before anything starts.
"""

from __future__ import annotations

import itertools
import os
import queue
import signal
import socket
import sqlite3
import subprocess
import threading
import urllib.error
import urllib.request
from pathlib import Path

import psutil
import pytest
from helpers import cli, free_port, run_cli

START_TIMEOUT = 300  # seconds; the CLI's own --timeout is below this


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(extra)
    return env


def _processes_on_port(port: int) -> list[psutil.Process]:
    """Processes whose command line has ``--port PORT`` (the server's own tree)."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmd = proc.info["cmdline"] or []
        if any(a == "--port" and b == str(port) for a, b in itertools.pairwise(cmd)):
            found.append(proc)
    return found


class ServerCLI:
    """``jupyter-repro server`` running in the background; stderr goes to a file."""

    def __init__(self, tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.dir = tmp_path / "team-server"
        self.err_path = tmp_path / "server.stderr"
        self._err = self.err_path.open("w")
        self.proc = subprocess.Popen(
            [
                *(cli("jupyter-repro"), "server", "--port", str(self.port)),
                *("--dir", str(self.dir), "--workers", "1", "--timeout", "240", *args),
            ],
            stdout=subprocess.PIPE,
            stderr=self._err,
            stdin=subprocess.DEVNULL,
            text=True,
            env=env or _clean_env(),
            cwd=tmp_path,
        )
        self._lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put("")

    @property
    def stderr(self) -> str:
        return self.err_path.read_text()

    def ready_line(self) -> str:
        """The first stdout line, once the server answers; fails with the server's log."""
        try:
            line = self._lines.get(timeout=START_TIMEOUT)
        except queue.Empty:
            line = ""
        assert line, f"no export line (exit {self.proc.poll()}):\n{self.stderr[-4000:]}"
        return line

    def tree(self) -> list[psutil.Process]:
        return psutil.Process(self.proc.pid).children(recursive=True)

    def stop(self, sig: int) -> int:
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=90)
        finally:
            self._err.close()

    def kill(self) -> None:
        """Test clean-up only: whatever is left, killed."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
        for proc in _processes_on_port(self.port):
            proc.kill()
        self._err.close()


def assert_tree_gone(tree: list[psutil.Process], port: int) -> None:
    _, alive = psutil.wait_procs(tree, timeout=30)
    assert not alive, f"left running: {alive}"
    assert not _processes_on_port(port), "a process of the server's tree is still running"


@pytest.mark.slow
def test_server_stores_runs_in_its_database_serves_artifacts_and_stops_on_sigterm(tmp_path):
    server = ServerCLI(tmp_path)
    try:
        line = server.ready_line()
        url = f"http://127.0.0.1:{server.port}"
        assert line == f"export MLFLOW_TRACKING_URI={url}\n"
        assert f"sqlite:///{server.dir / 'mlflow.db'}" in server.stderr
        assert str(server.dir / "artifacts") in server.stderr

        from mlflow.tracking import MlflowClient

        client = MlflowClient(url)
        exp_id = client.create_experiment("team")
        run = client.create_run(exp_id, run_name="first")
        run_id = run.info.run_id
        client.log_param(run_id, "lr", "0.001")
        client.log_metric(run_id, "score", 0.75)
        payload = os.urandom(2048)
        (tmp_path / "model.bin").write_bytes(payload)
        client.log_artifact(run_id, str(tmp_path / "model.bin"), artifact_path="weights")
        client.set_terminated(run_id)
        assert run.info.artifact_uri.startswith("mlflow-artifacts:"), "served, not a path"

        # The bytes went through the server into DIR/artifacts ...
        (stored,) = (server.dir / "artifacts").rglob("model.bin")
        assert stored.read_bytes() == payload
        assert run_id in stored.parts and "weights" in stored.parts
        # ... and the run, its parameter and metric into DIR/mlflow.db.
        with sqlite3.connect(server.dir / "mlflow.db") as db:
            assert db.execute(
                "SELECT name, status FROM runs WHERE run_uuid = ?", (run_id,)
            ).fetchall() == [("first", "FINISHED")]
            assert db.execute(
                "SELECT key, value FROM params WHERE run_uuid = ?", (run_id,)
            ).fetchall() == [("lr", "0.001")]
            assert db.execute(
                "SELECT key, value FROM metrics WHERE run_uuid = ?", (run_id,)
            ).fetchall() == [("score", 0.75)]

        tree = server.tree()
        names = " ".join(" ".join(p.cmdline()) for p in tree)
        assert "mlflow server" in names and "uvicorn" in names, names
        huey = {p.environ().get("_MLFLOW_HUEY_STORAGE_PATH") for p in tree} - {None}

        assert server.stop(signal.SIGTERM) == 143
        assert_tree_gone(tree, server.port)
        assert server.stderr.rstrip().endswith("jupyter-repro: terminated")
        assert not any(Path(p).exists() for p in huey), "MLflow's per-start queue folder"
    finally:
        server.kill()


@pytest.mark.slow
def test_a_world_readable_existing_dir_gets_owner_only_database_and_artifacts(tmp_path):
    """Issue 15 item 7: modes are set on the files, not only on a folder this creates."""
    old = os.umask(0o022)
    try:
        (tmp_path / "team-server").mkdir()
        os.chmod(tmp_path / "team-server", 0o777)
        (tmp_path / "team-server" / "mlflow.db").write_bytes(b"")  # left by an older start
        os.chmod(tmp_path / "team-server" / "mlflow.db", 0o644)
    finally:
        os.umask(old)
    server = ServerCLI(tmp_path)
    try:
        server.ready_line()
        db = server.dir / "mlflow.db"
        assert db.stat().st_size > 0, "MLflow created its tables in the file"
        assert db.stat().st_mode & 0o777 == 0o600
        assert (server.dir / "artifacts").stat().st_mode & 0o777 == 0o700
        extra = [p for p in server.dir.glob("mlflow.db-*") if p.stat().st_mode & 0o077]
        assert extra == [], "journal / WAL files readable by others"
        assert server.stop(signal.SIGTERM) == 143
    finally:
        server.kill()


@pytest.mark.parametrize("host", ["0.0.0.0", "::"])
def test_all_interfaces_without_authentication_is_refused_unless_no_auth(tmp_path, host):
    base = ("server", "--print-command", "--host", host)
    proc = run_cli("jupyter-repro", *base, cwd=tmp_path)
    assert proc.returncode == 2 and proc.stdout == ""
    (line,) = proc.stderr.splitlines()
    assert "without authentication" in line and "--no-auth" in line and "basic-auth" in line
    assert run_cli("jupyter-repro", *base, "--no-auth", cwd=tmp_path).returncode == 0


@pytest.mark.slow
def test_basic_auth_server_on_all_interfaces_answers_by_hostname_and_stops_on_ctrl_c(
    tmp_path, monkeypatch
):
    pytest.importorskip("flask_wtf", reason="basic-auth needs mlflow[auth] (Flask-WTF)")
    password = "correct-horse-battery"
    env = _clean_env(MLFLOW_AUTH_ADMIN_PASSWORD=password)
    server = ServerCLI(tmp_path, "--host", "0.0.0.0", "--app-name", "basic-auth", env=env)
    try:
        line = server.ready_line()
        assert line.startswith("export MLFLOW_TRACKING_URI=http://")
        url = line.strip().split("=", 1)[1]
        host = url.split("//", 1)[1].rsplit(":", 1)[0]
        assert url.endswith(f":{server.port}") and host not in ("0.0.0.0", "127.0.0.1")
        assert (server.dir / "basic_auth.db").is_file()
        for name in ("flask-secret-key", "basic_auth.db", "basic_auth.ini", "mlflow.db"):
            assert (server.dir / name).stat().st_mode & 0o777 == 0o600, name

        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient

        # By the printed name (not a localhost or private-IP Host header, which MLflow
        # would accept anyway): only with a password.
        monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
        monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
        with pytest.raises(MlflowException, match="not authenticated"):
            MlflowClient(url).search_experiments()
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password)
        client = MlflowClient(url)
        run = client.create_run(client.create_experiment("authed"))
        (tmp_path / "notes.txt").write_text("through the server, with a password")
        client.log_artifact(run.info.run_id, str(tmp_path / "notes.txt"))
        (stored,) = (server.dir / "artifacts").rglob("notes.txt")
        assert stored.read_text() == "through the server, with a password"

        # The Host check is still on: a name the machine does not have is refused.
        request = urllib.request.Request(
            f"http://127.0.0.1:{server.port}/api/2.0/mlflow/experiments/search?max_results=1",
            headers={"Host": f"attacker.example:{server.port}"},
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.build_opener(urllib.request.ProxyHandler({})).open(request)
        assert refused.value.code == 403

        tree = server.tree()
        assert server.stop(signal.SIGINT) == 130
        assert_tree_gone(tree, server.port)
        assert server.stderr.rstrip().endswith("jupyter-repro: interrupted")
    finally:
        server.kill()


@pytest.mark.slow
def test_a_server_that_cannot_start_exits_1_with_the_line_that_says_why(tmp_path):
    port = free_port()
    proc = run_cli(
        "jupyter-repro",
        "server",
        "--port",
        port,
        "--dir",
        tmp_path / "srv",
        "--workers",
        "1",
        # no PostgreSQL driver (or no database) here: the server exits while starting
        "--backend-store-uri",
        "postgresql://user:secret@127.0.0.1:1/mlflow",
        cwd=tmp_path,
        env=_clean_env(),
        timeout=START_TIMEOUT,
    )
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout == ""
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("jupyter-repro: error: mlflow server exited with status ")
    assert any(word in last for word in ("psycopg", "connect", "Connection")), last
    assert not _processes_on_port(port)


@pytest.mark.slow
def test_a_server_that_does_not_answer_in_time_is_stopped_and_reported(tmp_path):
    port = free_port()
    proc = run_cli(
        "jupyter-repro",
        *("server", "--port", port, "--dir", tmp_path / "srv", "--timeout", "0.5"),
        cwd=tmp_path,
        env=_clean_env(),
        timeout=START_TIMEOUT,
    )
    assert proc.returncode == 1, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert f"did not answer http://127.0.0.1:{port}/health within 0.5 s" in last
    assert not _processes_on_port(port)


def test_port_already_in_use_is_bad_input_and_starts_nothing(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = run_cli(
            "jupyter-repro", "server", "--port", port, "--dir", tmp_path / "srv", cwd=tmp_path
        )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr == (
        f"jupyter-repro: error: port {port} on 127.0.0.1 is already in use; "
        "stop what listens there or pass --port N\n"
    )
    assert not (tmp_path / "srv").exists()


def test_print_command_shows_the_database_backend_and_served_artifacts(tmp_path):
    proc = run_cli(
        "jupyter-repro", "server", "--print-command", "--dir", "team", "--", "--dev", cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    (line,) = proc.stdout.splitlines()
    assert " -m mlflow server --host 127.0.0.1 --port 5000 " in line
    assert f"--backend-store-uri sqlite:///{tmp_path / 'team' / 'mlflow.db'} " in line
    assert f"--artifacts-destination {tmp_path / 'team' / 'artifacts'} " in line
    assert line.endswith(" --serve-artifacts --dev")
    assert "--allowed-hosts" not in line, "loopback: MLflow's defaults are right"
    assert not (tmp_path / "team").exists(), "prints, creates nothing"


def test_print_command_on_all_interfaces_allows_the_machine_name(tmp_path):
    proc = run_cli(
        "jupyter-repro",
        *("server", "--dry-run", "--host", "0.0.0.0", "--no-auth", "--backend-store-uri"),
        "postgresql://u:p@db/mlflow",
        *("--artifacts-destination", "s3://bucket/mlflow"),
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    args = proc.stdout.split()
    allowed = args[args.index("--allowed-hosts") + 1].strip("'").split(",")
    assert {"localhost:*", "192.168.*"} <= set(allowed), "MLflow's defaults are kept"
    assert any(name.split(".")[0] == socket.gethostname().split(".")[0] for name in allowed)
    assert "--cors-allowed-origins" in args
    assert "s3://bucket/mlflow" in args
    # the password stays off the command line (ps shows it to everyone) and off the screen
    assert "u:p@" not in proc.stdout + proc.stderr
    assert "MLFLOW_BACKEND_STORE_URI=postgresql://u:***@db/mlflow" in proc.stderr
    assert not (tmp_path / "mlflow-server").exists(), "no local store needed"


def test_a_backend_uri_from_the_environment_stays_off_the_command_line(tmp_path):
    uri = "postgresql://mlflow:s3cret@db/mlflow"
    proc = run_cli(
        "jupyter-repro",
        *("server", "--print-command"),
        cwd=tmp_path,
        env={"MLFLOW_BACKEND_STORE_URI": uri},
    )
    assert proc.returncode == 0, proc.stderr
    assert "--backend-store-uri" not in proc.stdout and "s3cret" not in proc.stdout
    assert f"--artifacts-destination {tmp_path / 'mlflow-server' / 'artifacts'} " in proc.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["--port", "abc"], "--port must be an integer from 1 to 65535, not 'abc'"),
        (["--port", "70000"], "--port must be an integer from 1 to 65535, not '70000'"),
        (["--workers", "0"], "--workers must be an integer from 1 to 1024, not '0'"),
        (["--timeout", "soon"], "--timeout must be a number of seconds, not 'soon'"),
        (["--dir", "afile"], "afile: is not a folder"),
        (["--dir", "afile/sub"], "afile is not a writable folder"),
        (["--app-name", "nope"], "--app-name nope: MLflow has no such server app"),
        (["--", "--port", "5001"], "--port cannot be passed to mlflow server after --"),
        (["--public-url", "mlflow.example.org"], "expected http(s)://HOST[:PORT][/PATH]"),
    ],
)
def test_bad_input_exits_2_with_one_line_naming_the_cause(tmp_path, args, message):
    (tmp_path / "afile").write_text("not a folder")
    proc = run_cli("jupyter-repro", "server", "--print-command", *args, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stdout == ""
    (line,) = proc.stderr.splitlines()
    assert line.startswith("jupyter-repro: error: ") and message in line


def test_basic_auth_first_start_needs_the_admin_password(tmp_path):
    pytest.importorskip("flask_wtf", reason="basic-auth needs mlflow[auth] (Flask-WTF)")
    proc = run_cli(
        "jupyter-repro",
        *("server", "--port", free_port(), "--dir", tmp_path / "srv", "--app-name"),
        "basic-auth",
        cwd=tmp_path,
        env={"MLFLOW_AUTH_ADMIN_PASSWORD": ""},
    )
    assert proc.returncode == 2
    (line,) = proc.stderr.splitlines()
    assert "set MLFLOW_AUTH_ADMIN_PASSWORD (12+ characters)" in line
    assert not (tmp_path / "srv").exists()
