"""Helpers for the batch / provenance / gc tests: notebooks, stores, the CLI, processes."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import nbformat
from helpers import cli, make_notebook

PNG_1PX = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="


def sqlite_uri(folder: Path) -> str:
    """An sqlite store in ``folder`` (not created yet)."""
    return f"sqlite:///{folder / 'mlflow.db'}"


def client(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(uri)


def runs_of(uri: str, experiment: str) -> list:
    """Every run of ``experiment`` (none if the store or experiment does not exist)."""
    path = uri[len("sqlite:///") :] if uri.startswith("sqlite:///") else None
    if path is not None and not Path(path).exists():
        return []
    c = client(uri)
    exp = c.get_experiment_by_name(experiment)
    if exp is None:
        return []
    return c.search_runs([exp.experiment_id], max_results=1000)


def batch(*args, cwd: Path, uri: str | None = None, timeout: float = 240, env: dict | None = None):
    """Run the installed ``jupyter-repro batch`` for real; returns the completed process."""
    full_env = {**os.environ, **(env or {})}
    full_env.pop("MLFLOW_TRACKING_URI", None)
    if uri:
        full_env["MLFLOW_TRACKING_URI"] = uri
    return subprocess.run(
        [cli("jupyter-repro"), "batch", *map(str, args), "--no-progress"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
        stdin=subprocess.DEVNULL,
    )


def gc(*args, uri: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run the installed ``jupyter-repro gc``."""
    return subprocess.run(
        [cli("jupyter-repro"), "gc", "--tracking-uri", uri, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def start_batch(*args, cwd: Path, uri: str, log: Path) -> subprocess.Popen:
    """Start ``jupyter-repro batch`` in its own process group (for signal tests)."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    fh = log.open("w")
    return subprocess.Popen(
        [cli("jupyter-repro"), "batch", *map(str, args), "--no-progress"],
        cwd=cwd,
        stdout=fh,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
        stdin=subprocess.DEVNULL,
    )


def wait_for(predicate, timeout: float, what: str, interval: float = 0.3):
    """Poll ``predicate`` until it returns something truthy; fail naming ``what``."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def pid_running(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def kill_pids(pids) -> None:
    """Clean-up for tests that leave kernels behind on purpose (SIGKILL scenario)."""
    for pid in pids:
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            continue


def sleeper_notebook(path: Path, pid_dir: Path, seconds: int = 120) -> Path:
    """Cell 0 params; cell 1 writes the kernel pid to ``pid_dir`` then sleeps (F12)."""
    return make_notebook(
        path,
        ("i = 0", ["parameters"]),
        f"import os, time\nopen(os.path.join({str(pid_dir)!r}, str(os.getpid())), 'w').close()\n"
        f"time.sleep({seconds})",
    )


def healthy(url: str) -> bool:
    """Whether an MLflow server at ``url`` answers ``/health`` (not whatever else took
    the port first: a kernel's ZMQ socket answers with bytes that are not HTTP)."""
    import http.client
    import urllib.request

    try:
        with urllib.request.urlopen(url + "/health", timeout=2) as response:
            return response.status == 200
    except (OSError, http.client.HTTPException):
        return False


def run_spec(nb: Path, uri: str, experiment: str, **fields):
    """A :class:`RunSpec` for calling ``execute_run`` in-process on ``nb``: run 0 into
    ``<nb folder>/runs/``, kernel python3, a fresh provenance; ``fields`` override."""
    from jupyter_repro.batch.execute import RunSpec
    from jupyter_repro.provenance.mlflow_log import collect_provenance
    from jupyter_repro.provenance.store import prepare_experiment

    name = f"{nb.stem}-000"
    values = dict(
        index=0,
        run_name=name,
        notebook=str(nb),
        params={},
        defaults={},
        output_path=str(nb.parent / "runs" / f"{name}.ipynb"),
        kernel_name="python3",
        cwd=str(nb.parent),
        timeout=None,
        start_timeout=120,
        uri=uri,
        experiment_id=prepare_experiment(uri, experiment),
        batch_id="b",
        provenance=collect_provenance(nb),
    )
    values.update(fields)
    return RunSpec(**values)


def read_executed(path: str | Path):
    return nbformat.read(str(path), as_version=4)


__all__ = ["PNG_1PX", "make_notebook"]


_TEMPLATE: list[Path] = []


def ready_store(folder: Path) -> str:
    """A copy of a pre-initialised sqlite store in ``folder``; returns its URI.

    Creating MLflow's schema takes seconds; tests that are not about store creation
    (F14 is) start from a copy of one store made once per test process.
    """
    import shutil
    import tempfile

    from jupyter_repro.provenance.store import prepare_store

    if not _TEMPLATE:
        import atexit

        template = Path(tempfile.mkdtemp(prefix="jrepro-store-")) / "mlflow.db"
        atexit.register(shutil.rmtree, template.parent, True)  # not left in /tmp
        prepare_store(f"sqlite:///{template}")
        _TEMPLATE.append(template)
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(_TEMPLATE[0], folder / "mlflow.db")
    return sqlite_uri(folder)


class Completed:
    """The parts of a ``subprocess.CompletedProcess`` a test reads, JSON-serialisable."""

    def __init__(self, returncode: int, stdout: str, stderr: str) -> None:
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def run_once(tmp_path_factory, key: str, build) -> tuple[Path, Completed]:
    """Run ``build(folder) -> CompletedProcess`` once per test session, even under xdist.

    Module fixtures run once per xdist worker; an expensive batch shared by several
    tests runs once here (under a file lock in the session's shared temp root) and the
    other workers read its folder and recorded outcome.
    """
    import json

    from filelock import FileLock

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the session's root, shared by its xdist workers
    folder = root / f"shared-{key}"
    done = folder / "completed.json"
    with FileLock(str(root / f"shared-{key}.lock")):
        if not done.exists():
            folder.mkdir(parents=True, exist_ok=True)
            proc = build(folder)
            done.write_text(json.dumps([proc.returncode, proc.stdout, proc.stderr]))
    return folder, Completed(*json.loads(done.read_text()))


@contextlib.contextmanager
def running_mlflow_server(folder: Path, timeout: float = 400) -> Iterator[str]:
    """A real ``mlflow server`` on a free loopback port (sqlite store and served artifacts
    in ``folder``, no authentication), its URL while the block runs; its whole process
    group is stopped afterwards. ``timeout``: seconds to wait for ``/health``."""
    import sys

    from helpers import free_port

    url = f"http://127.0.0.1:{free_port()}"
    log = (folder / "server.log").open("w")
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "mlflow"),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            url.rsplit(":", 1)[1],
            "--workers",
            "1",
            "--backend-store-uri",
            f"sqlite:///{folder / 'server.db'}",
            "--artifacts-destination",
            str(folder / "server-artifacts"),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        cwd=folder,
    )
    try:
        wait_for(lambda: proc.poll() is not None or healthy(url), timeout, "mlflow server")
        assert proc.poll() is None, (folder / "server.log").read_text()
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
