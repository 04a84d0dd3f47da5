"""One batch run: a fresh kernel under papermill, logged to MLflow, ended cleanly.

:func:`execute_run` is what executors call (a top-level function of picklable
arguments, so a process pool or a dask cluster can run it). It never raises for a
notebook's own failure: every outcome becomes a :class:`RunResult` and an MLflow status.

Signals: the executor asks a worker to stop with SIGTERM (:func:`worker_init` installs
the handler). The handler kills this worker's kernel processes at once; papermill then
fails fast with a dead kernel, and the run is closed as KILLED with its partial notebook.
A per-run timeout uses the same path and closes the run as FAILED.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..provenance.gc import Heartbeat, heartbeat_tags
from ..provenance.mlflow_log import (
    FinishedRun,
    Provenance,
    close_run,
    open_run,
    source_cell_index,
)

BATCH_TAG = "jupyter_repro.batch.id"


@dataclass
class RunSpec:
    """Everything one run needs, computed by the batch before any run starts.

    Attributes:
        params: the overrides to inject (already validated against the notebook).
        defaults: parameters-cell names not overridden -> default as written.
        output_path: final place of the executed notebook (written atomically).
        timeout: seconds for the whole run, or None.
        cwd: the kernel's working directory (the notebook's folder, as in Jupyter).
    """

    index: int
    run_name: str
    notebook: str
    params: dict[str, Any]
    defaults: dict[str, str]
    output_path: str
    kernel_name: str
    cwd: str
    timeout: float | None
    start_timeout: float
    uri: str
    experiment_id: str
    batch_id: str
    provenance: Provenance
    heartbeat_interval: float = 30.0
    flags: dict[str, str] = field(default_factory=dict)


@dataclass
class RunResult:
    """How a run ended, for the batch's table and exit code."""

    index: int
    run_name: str
    params: dict[str, Any]
    status: str
    run_id: str | None
    duration: float
    reason: str = ""
    output_path: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    @classmethod
    def not_started(cls, spec: RunSpec, reason: str) -> RunResult:
        """A run the batch stopped before it began: KILLED, no MLflow run, no time spent."""
        return cls(spec.index, spec.run_name, spec.params, "KILLED", None, 0.0, reason)


class _WorkerState:
    """Per-process state shared with the signal handler and the timeout timer."""

    def __init__(self) -> None:
        self.stopping = False  # SIGTERM/SIGINT received: finish the current run as KILLED
        self.timed_out = False
        self.running = False  # a run is in flight in this worker


_STATE = _WorkerState()


def kill_kernels() -> None:
    """Kill every child process of this process (a worker's children are its kernels)."""
    import psutil

    try:
        children = psutil.Process().children(recursive=True)
    except psutil.Error:
        return
    for child in children:
        try:
            child.kill()
        except psutil.Error:
            continue


def _on_stop_signal(signum: int, frame: Any) -> None:
    _STATE.stopping = True
    kill_kernels()


def worker_init(batch_pid: int | None = None) -> None:
    """Run once in each worker process: signal handlers, batch-death watch, warm imports.

    SIGINT is ignored (Ctrl-C reaches the whole process group; the batch process decides);
    SIGTERM means "stop now, close runs as KILLED". A worker's parent is the forkserver,
    not the batch, so the parent-death signal cannot tell that the batch died: a daemon
    thread watches ``batch_pid`` every second and, once it is gone (SIGKILL, crash), stops
    the run in flight exactly as SIGTERM would, so it ends KILLED and its kernel is shut.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _on_stop_signal)
    if batch_pid is not None:
        threading.Thread(target=_watch_batch, args=(batch_pid,), daemon=True).start()
    warm_imports()


def _watch_batch(batch_pid: int) -> None:
    import psutil

    try:
        batch = psutil.Process(batch_pid)
        started = batch.create_time()
    except psutil.Error:
        started = None
    while True:
        time.sleep(1.0)
        try:
            alive = started is not None and psutil.Process(batch_pid).create_time() == started
        except psutil.Error:
            alive = False
        if not alive:
            _STATE.stopping = True
            kill_kernels()
            os.kill(os.getpid(), signal.SIGTERM)  # same path as a stop request
            deadline = time.monotonic() + 120
            while _STATE.running and time.monotonic() < deadline:
                time.sleep(0.2)  # the run closes itself as KILLED
            os._exit(0)  # nobody will send this worker another run


def warm_imports() -> None:
    """Import the heavy modules once per worker instead of once per run (a no-op when
    the forkserver already preloaded them)."""
    from . import preload  # noqa: F401


def _classify(exc: BaseException, executed: Any) -> tuple[str, dict[str, Any]]:
    """A one-line reason and the failing cell's facts for an execution exception."""
    from papermill.exceptions import PapermillExecutionError

    if isinstance(exc, PapermillExecutionError):
        # papermill's index is into the notebook before it added its error-marker cells
        cells = [
            c
            for c in (executed or {}).get("cells", [])
            if "papermill-error-cell-tag" not in (c.get("metadata", {}).get("tags") or [])
        ]
        index = source_cell_index({"cells": cells}, exc.cell_index)
        cell_id = cells[exc.cell_index].get("id") if exc.cell_index < len(cells) else None
        error = {
            "cell_index": index,
            "cell_id": cell_id,
            "execution_count": exc.exec_count,
            "ename": exc.ename,
            "evalue": exc.evalue,
            "traceback": [str(line) for line in (exc.traceback or [])][-30:],
        }
        return f"cell {index} raised {exc.ename}: {exc.evalue}", error
    name = type(exc).__name__
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    if name == "DeadKernelError":
        return f"the kernel died ({first or 'DeadKernelError'})", {"ename": name, "evalue": first}
    if name == "CellTimeoutError":
        return f"a cell timed out: {first}", {"ename": name, "evalue": first}
    return f"{name}: {first}", {"ename": name, "evalue": first}


def _running_cell(executed: Any) -> int | None:
    """Source index of the cell that was running when the kernel was stopped.

    papermill marks every cell "completed" when it gives up, so the running cell is the
    last one that has a start time.
    """
    if executed is None:
        return None
    last = None
    for index, cell in enumerate(executed.get("cells", [])):
        if cell.get("metadata", {}).get("papermill", {}).get("start_time"):
            last = index
    return source_cell_index(executed, last) if last is not None else None


@contextlib.contextmanager
def _stderr_to(path: Path) -> Iterator[None]:
    """Send this process's (and so the kernel's) stderr to ``path`` during a run.

    The kernel's own chatter (connection warnings, C-library messages) then becomes the
    run's ``kernel_stderr.txt`` artifact instead of interleaving on the batch's terminal.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(path, "wb") as fh:
            os.dup2(fh.fileno(), 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def papermill_ready(nb: Any) -> Any:
    """The metadata papermill's own loader adds (tags lists, ``papermill`` dicts).

    Notebooks read by :func:`~jupyter_repro.notebook.read_notebook` (including jupytext
    ones) lack them, and papermill's parameterize step fails with AttributeError without.
    """
    import nbformat

    nb = nbformat.from_dict(nb)
    nb.metadata.setdefault(
        "papermill",
        {"default_parameters": {}, "parameters": {}, "environment_variables": {}},
    )
    for cell in nb.cells:
        cell.setdefault("metadata", {}).setdefault("tags", [])
        cell.metadata.setdefault("papermill", {})
    return nbformat.from_dict(nb)


def execute_run(spec: RunSpec) -> RunResult:
    """Run one parameter set (see :func:`_execute_run`), noting that a run is in flight."""
    _STATE.running = True
    try:
        return _execute_run(spec)
    finally:
        _STATE.running = False


def _execute_run(spec: RunSpec) -> RunResult:
    """Run one parameter set: MLflow run, papermill in a fresh kernel, artifacts, status.

    Returns a result for every outcome (FINISHED, FAILED, KILLED). A run not started
    because the batch is stopping has status KILLED and no MLflow run.
    """
    import nbformat
    import papermill

    from ..notebook import read_notebook
    from ..parameters import inject_parameters

    t0 = time.time()
    timings: dict[str, float] = {}
    if _STATE.stopping:
        return RunResult.not_started(spec, "batch stopped before this run started")
    _STATE.timed_out = False
    nb = inject_parameters(papermill_ready(read_notebook(spec.notebook)), spec.params)
    extra = {
        **heartbeat_tags(),
        BATCH_TAG: spec.batch_id,
        "jupyter_repro.batch.index": str(spec.index),
        **spec.flags,
    }
    run_id = open_run(
        spec.uri,
        spec.experiment_id,
        spec.run_name,
        spec.params,
        spec.defaults,
        spec.provenance,
        extra,
    )
    start_ms = int(time.time() * 1000)
    timings["open_run"] = time.time() - t0
    out = Path(spec.output_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.{os.getpid()}.partial.ipynb")
    env_keys = {
        "MLFLOW_RUN_ID": run_id,
        "MLFLOW_TRACKING_URI": spec.uri,
        "MLFLOW_EXPERIMENT_ID": spec.experiment_id,
    }
    saved_env = {k: os.environ.get(k) for k in env_keys}
    os.environ.update(env_keys)

    def on_timeout() -> None:
        _STATE.timed_out = True
        kill_kernels()

    timer = threading.Timer(spec.timeout, on_timeout) if spec.timeout else None
    executed = None
    failure: BaseException | None = None
    status, reason, error = "FINISHED", "", {}
    t1 = time.time()
    stderr_log = out.with_name(f".{out.stem}.{os.getpid()}.stderr.txt")
    with Heartbeat(spec.uri, run_id, spec.heartbeat_interval), _stderr_to(stderr_log):
        try:
            if timer:
                timer.start()
            if _STATE.stopping:
                raise RuntimeError("batch stopped")
            for attempt in (1, 2):
                try:
                    executed = papermill.execute_notebook(
                        nb,
                        str(tmp),
                        kernel_name=spec.kernel_name,
                        cwd=spec.cwd,
                        progress_bar=False,
                        start_timeout=spec.start_timeout,
                        execution_timeout=None,  # the run-wide watchdog below ends it
                        request_save_on_cell_execute=True,
                    )
                    break
                except RuntimeError as exc:
                    # A kernel that dies while starting (e.g. a port taken between
                    # jupyter_client choosing it and the kernel binding it, under load)
                    # ran no user code: start a fresh one once before calling it FAILED.
                    if (
                        attempt == 2
                        or _STATE.stopping
                        or "before replying to kernel_info" not in str(exc)
                    ):
                        raise
        except BaseException as exc:  # every outcome, even KeyboardInterrupt, is a status
            failure = exc
            if tmp.exists():
                try:
                    executed = nbformat.read(str(tmp), as_version=4)
                except Exception:
                    executed = None
            status = "FAILED"
            reason, error = _classify(exc, executed)
            if not isinstance(exc, Exception):
                _STATE.stopping = True
        finally:
            if timer:
                timer.cancel()
            for k, v in saved_env.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    timings["execute"] = time.time() - t1
    # A run that completed, or failed in a cell of its own, before the signal or the
    # deadline keeps that outcome (the deadline can pass while the kernel shuts down).
    from papermill.exceptions import PapermillExecutionError

    cell_failed = isinstance(failure, PapermillExecutionError)
    if status == "FAILED" and not cell_failed and _STATE.stopping:
        status = "KILLED"
        cell = _running_cell(executed)
        reason = "batch interrupted (SIGTERM/SIGINT): kernel shut down" + (
            f" while cell {cell} was running" if cell is not None else ""
        )
        error = {"cell_index": cell} if cell is not None else {}
    elif status == "FAILED" and not cell_failed and _STATE.timed_out:
        cell = _running_cell(executed)
        reason = f"timed out after {spec.timeout:g}s" + (
            f" in cell {cell}" if cell is not None else ""
        )
        error = {"cell_index": cell, "ename": "Timeout", "evalue": reason}
    if tmp.exists():
        os.replace(tmp, out)  # atomic: a reader sees the old file or the whole new one
    output_path = str(out) if out.exists() and executed is not None else None
    t2 = time.time()
    kernel_stderr = stderr_log.read_text(errors="replace") if stderr_log.exists() else ""
    stderr_log.unlink(missing_ok=True)
    finished = FinishedRun(
        spec.run_name,
        status,
        executed,
        output_path,
        reason,
        error,
        start_ms,
        int(time.time() * 1000),
        kernel_stderr=kernel_stderr[-200_000:],
    )
    close_run(spec.uri, run_id, finished, spec.provenance)
    timings["close_run"] = time.time() - t2
    from ..metrics import read_metrics

    metrics = {m.name: m.value for m in read_metrics(executed)} if executed is not None else {}
    return RunResult(
        spec.index,
        spec.run_name,
        spec.params,
        status,
        run_id,
        time.time() - t0,
        reason,
        output_path,
        metrics,
        timings,
    )


def close_orphans(uri: str, experiment_id: str, batch_id: str, status: str) -> int:
    """Backstop: a run of this batch still RUNNING now has no owner left; end it.

    Returns how many runs were closed.
    """
    from mlflow.entities import RunTag
    from mlflow.tracking import MlflowClient

    from ..provenance.store import retry_locked

    client = MlflowClient(uri)
    runs = retry_locked(
        client.search_runs,
        [experiment_id],
        filter_string=f"tags.`{BATCH_TAG}` = '{batch_id}' and attributes.status = 'RUNNING'",
    )
    reason = (
        "worker process ended without closing the run"
        if status == "FAILED"
        else "batch interrupted: run closed by the batch process"
    )
    for run in runs:
        retry_locked(
            client.log_batch,
            run.info.run_id,
            tags=[
                RunTag("jupyter_repro.status", status),
                RunTag("jupyter_repro.status_reason", reason),
            ],
        )
        retry_locked(client.set_terminated, run.info.run_id, status, int(time.time() * 1000))
    return len(runs)
