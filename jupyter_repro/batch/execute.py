"""One batch run: a fresh kernel under papermill, logged to MLflow, ended cleanly.

:func:`execute_run` is what executors call (a top-level function of picklable
arguments, so a process pool or a dask cluster can run it). It never raises for a
notebook's own failure: every outcome becomes a :class:`RunResult` and an MLflow status.

Stopping: every run in flight has a :class:`_RunState` holding its kernel's process id.
:func:`stop_runs` (called by the local pool's SIGTERM handler, by a dask client through
``Client.run``, and by a watcher that sees the batch process or the dask task go away)
kills the kernels of the runs it names; papermill then fails fast with a dead kernel,
and the run is closed as KILLED with its partial notebook. A per-run timeout kills the
same way and closes the run as FAILED. Nothing here touches process-wide state while a
run is in flight (the kernel's environment and stderr are given to its own launch), so
several runs can share one process, as on a dask worker with several threads.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..processes import create_time, host_key, kill_children, kill_tree, pid_alive
from ..provenance.env import kernel_environment
from ..provenance.gc import Heartbeat, heartbeat_tags
from ..provenance.mlflow_log import (
    FinishedRun,
    Provenance,
    close_run,
    end_run,
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
    #: (host key, pid, process start time) of the batch process: a run on the same host stops
    #: as KILLED once that process is gone (set by executors whose workers can outlive it).
    owner: tuple[str, int, float] | None = None
    #: Look for earlier attempts of this run (a dask worker died running it) before
    #: starting: close them as FAILED and give up after :data:`MAX_ATTEMPTS`.
    check_attempts: bool = False


#: Attempts of one run when the worker running it dies: the first and one retry.
MAX_ATTEMPTS = 2
ATTEMPT_TAG = "jupyter_repro.batch.attempt"
WORKER_TAG = "jupyter_repro.batch.worker"
RETRY_OF_TAG = "jupyter_repro.batch.retry_of"


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
    worker: str = ""  # host:pid of the process that ran it
    attempt: int = 1
    #: the executed notebook as JSON text, when it was written on another machine and
    #: must be shipped back to the client (dask without a shared file system)
    notebook_text: str | None = field(default=None, repr=False)

    @classmethod
    def not_started(cls, spec: RunSpec, reason: str) -> RunResult:
        """A run the batch stopped before it began: KILLED, no MLflow run, no time spent."""
        return cls(spec.index, spec.run_name, spec.params, "KILLED", None, 0.0, reason)


class _WorkerState:
    """Process-wide stop requests, shared with the signal handler and the watchers."""

    def __init__(self) -> None:
        self.stopping = False  # SIGTERM / owner gone: every run in this process stops
        self.stopped_batches: set[str] = set()  # batches whose client asked to stop
        self.runs: dict[int, _RunState] = {}  # id(state) -> state, runs in flight
        self.lock = threading.Lock()

    @property
    def running(self) -> bool:
        """Whether a run is in flight in this process."""
        return bool(self.runs)


class _RunState:
    """One run in flight: why it may stop, and its kernel's process id once started."""

    def __init__(self, batch_id: str) -> None:
        self.batch_id = batch_id
        self.stopped = False  # this run was asked to stop (KILLED)
        self.stop_reason = ""
        self.timed_out = False
        self.kernel_pid: int | None = None
        self.kernel_started: float | None = None  # create time, against pid reuse

    @property
    def stopping(self) -> bool:
        return self.stopped or _STATE.stopping or self.batch_id in _STATE.stopped_batches

    def kill_kernel(self) -> None:
        """Kill this run's kernel and everything it started (no-op before it starts)."""
        pid, started = self.kernel_pid, self.kernel_started
        if pid is not None:
            kill_tree(pid, started)


_STATE = _WorkerState()


def stop_runs(batch_id: str | None = None, reason: str = "") -> int:
    """Stop the runs of ``batch_id`` in this process (all runs when None): they end KILLED.

    Runs of that batch not yet started here will not start (they return KILLED at once).
    Safe to call from any thread, a signal handler or ``distributed.Client.run``.

    Returns:
        How many runs in flight were stopped.
    """
    if batch_id is None:
        _STATE.stopping = True
    else:
        _STATE.stopped_batches.add(batch_id)
    stopped = 0
    for state in list(_STATE.runs.values()):
        if batch_id is None or state.batch_id == batch_id:
            state.stopped = True
            state.stop_reason = state.stop_reason or reason
            state.kill_kernel()
            stopped += 1
    return stopped


def _on_stop_signal(signum: int, frame: Any) -> None:
    stop_runs(None, "batch interrupted (SIGTERM/SIGINT)")
    kill_children()


def worker_init(batch_pid: int | None = None) -> None:
    """Run once in each worker process: signal handlers, batch-death watch, warm imports.

    SIGINT is ignored (Ctrl-C reaches the whole process group; the batch process decides);
    SIGTERM means "stop now, close runs as KILLED". A worker's parent is the forkserver,
    not the batch, so the parent-death signal cannot tell that the batch died: a daemon
    thread watches ``batch_pid`` every second and, once it is gone (SIGKILL, crash), stops
    the run in flight exactly as SIGTERM would, so it ends KILLED and its kernel is shut.
    """
    from ..provenance.store import quiet_mlflow

    quiet_mlflow()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _on_stop_signal)
    if batch_pid is not None:
        threading.Thread(target=_watch_batch, args=(batch_pid,), daemon=True).start()
    warm_imports()


def _watch_batch(batch_pid: int) -> None:
    started = create_time(batch_pid)
    while True:
        time.sleep(1.0)
        if started is None or not pid_alive(batch_pid, started):
            stop_runs(None, "the batch process is gone (killed or crashed)")
            kill_children()
            deadline = time.monotonic() + 120
            while _STATE.running and time.monotonic() < deadline:
                time.sleep(0.2)  # the run closes itself as KILLED
            os._exit(0)  # nobody will send this worker another run


class _RunWatcher:
    """Stops one run when its owner goes away: the batch process on this host (by pid),
    or, on a dask worker, the task itself (cancelled, or released because the client
    disconnected). Polls every ``interval`` seconds in a daemon thread."""

    def __init__(self, spec: RunSpec, state: _RunState, interval: float = 0.5) -> None:
        self.spec, self.state, self.interval = spec, state, interval
        self._done = threading.Event()
        self._task = _current_dask_task()
        self._thread = threading.Thread(target=self._loop, name="jrepro-watch", daemon=True)

    def __enter__(self) -> _RunWatcher:
        if self._task is not None or self._owner_here():
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()

    def _owner_here(self) -> bool:
        return self.spec.owner is not None and self.spec.owner[0] == host_key()

    def _loop(self) -> None:
        owner_here = self._owner_here()
        while not self._done.wait(self.interval):
            reason = ""
            if owner_here and not pid_alive(self.spec.owner[1], self.spec.owner[2]):
                reason = "the batch process is gone (killed or crashed)"
            elif self._task is not None and not _dask_task_wanted(*self._task):
                reason = "the dask client cancelled the run or went away"
            if reason:
                self.state.stopped = True
                self.state.stop_reason = self.state.stop_reason or reason
                self.state.kill_kernel()
                return


def _current_dask_task() -> tuple[Any, Any] | None:
    """(worker, task key) when this thread runs a dask task, else None."""
    if "distributed" not in sys.modules:
        return None
    try:
        from distributed import get_worker

        worker = get_worker()
        key = worker.get_current_task()
    except Exception:
        return None
    return worker, key


def _dask_task_wanted(worker: Any, key: Any) -> bool:
    """False once the scheduler released the task (cancelled, or its client is gone)."""
    try:
        ts = worker.state.tasks.get(key)
    except Exception:
        return True
    return ts is not None and ts.state not in ("cancelled", "released", "forgotten")


def _kernel_manager_class(
    state: _RunState, env: dict[str, str], stderr_path: Path, cwd: str
) -> type:
    """An ``AsyncKernelManager`` that starts this run's kernel in ``cwd``, with ``env``
    added to its environment and its stderr in ``stderr_path``, and records its pid.

    Given to nbclient through papermill (``kernel_manager_class``), so nothing
    process-wide changes while the run is in flight: no ``os.environ``, no file
    descriptor, and no ``os.chdir`` (papermill's own ``cwd=`` changes the directory of
    the whole process, which runs sharing a dask worker would race on).
    """
    from jupyter_client import AsyncKernelManager

    class RunKernelManager(AsyncKernelManager):
        async def _async_launch_kernel(self, kernel_cmd: list[str], **kw: Any) -> None:
            kw["env"] = {**(kw.get("env") or os.environ), **env}
            kw["cwd"] = cwd
            with open(stderr_path, "ab") as err:
                kw["stderr"] = err
                await super()._async_launch_kernel(kernel_cmd, **kw)
            pid = getattr(self.provisioner, "pid", None)
            if isinstance(pid, int):
                state.kernel_started = create_time(pid)
                state.kernel_pid = pid if state.kernel_started is not None else None
            if state.stopping or state.timed_out:
                state.kill_kernel()  # a stop that arrived while the kernel was starting

    return RunKernelManager


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
    """Run one parameter set (see :func:`_execute_run`), registered as in flight so that
    :func:`stop_runs` and the watchers can reach its kernel."""
    state = _RunState(spec.batch_id)
    with _STATE.lock:
        _STATE.runs[id(state)] = state
    try:
        with _RunWatcher(spec, state):
            return _execute_run(spec, state)
    finally:
        with _STATE.lock:
            _STATE.runs.pop(id(state), None)


def _worker_label() -> str:
    import socket

    return f"{socket.gethostname()}:{os.getpid()}"


def earlier_attempts(spec: RunSpec) -> list[Any]:
    """MLflow runs of the same batch and index as ``spec`` (attempts whose worker died)."""
    from mlflow.tracking import MlflowClient

    from ..provenance.store import retry_locked

    return retry_locked(
        MlflowClient(spec.uri).search_runs,
        [spec.experiment_id],
        filter_string=(
            f"tags.`{BATCH_TAG}` = '{spec.batch_id}' and "
            f"tags.`jupyter_repro.batch.index` = '{spec.index}'"
        ),
    )


def _died(run: Any) -> bool:
    """Whether an earlier attempt's MLflow run is one whose worker died: still RUNNING
    (nobody closed it), or already closed by a later attempt as having died."""
    reason = run.data.tags.get("jupyter_repro.status_reason", "")
    return run.info.status == "RUNNING" or "died mid-run" in reason


def _close_dead_attempts(spec: RunSpec, runs: list[Any], retried: bool) -> None:
    """End attempts left RUNNING by a worker that died as FAILED, saying what happened."""
    for run in runs:
        if run.info.status != "RUNNING":
            continue
        where = run.data.tags.get(WORKER_TAG, "a worker")
        reason = f"the worker running it ({where}) died mid-run" + (
            "; retried on another worker" if retried else "; not retried again"
        )
        end_run(spec.uri, run.info.run_id, "FAILED", reason)


def _execute_run(spec: RunSpec, state: _RunState) -> RunResult:
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
    worker = _worker_label()
    if state.stopping:
        return RunResult.not_started(spec, "batch stopped before this run started")
    attempt, retry_of = 1, None
    if spec.check_attempts:
        earlier = earlier_attempts(spec)
        done = [r for r in earlier if not _died(r)]
        if done:  # it already ran to an end (dask recomputed a released result): no rerun
            run = max(done, key=lambda r: r.info.start_time)
            return RunResult(
                spec.index,
                spec.run_name,
                spec.params,
                run.info.status,
                run.info.run_id,
                0.0,
                run.data.tags.get("jupyter_repro.status_reason", ""),
                worker=run.data.tags.get(WORKER_TAG, ""),
                attempt=int(run.data.tags.get(ATTEMPT_TAG, "1")),
            )
        attempt = len(earlier) + 1
        if earlier:
            retry_of = max(earlier, key=lambda r: r.info.start_time).info.run_id
        if attempt > MAX_ATTEMPTS:
            _close_dead_attempts(spec, earlier, retried=False)
            where = sorted({r.data.tags.get(WORKER_TAG, "?") for r in earlier})
            return RunResult(
                spec.index,
                spec.run_name,
                spec.params,
                "FAILED",
                retry_of,
                0.0,
                f"worker died {len(earlier)} times mid-run; not retried again ({', '.join(where)})",
                worker=", ".join(where),
                attempt=len(earlier),
            )
        _close_dead_attempts(spec, earlier, retried=True)
    nb = inject_parameters(papermill_ready(read_notebook(spec.notebook)), spec.params)
    # The environment coordinate is the one the run executes in: the kernel's interpreter
    # (a kernelspec may name another venv's python; this worker's when it is the same),
    # which on a dask cluster may differ from the client's (cached per process).
    provenance = dataclasses.replace(
        spec.provenance, environment=kernel_environment(spec.kernel_name)
    )
    extra = {
        **heartbeat_tags(),
        BATCH_TAG: spec.batch_id,
        "jupyter_repro.batch.index": str(spec.index),
        WORKER_TAG: worker,
        **spec.flags,
    }
    if spec.check_attempts:
        extra[ATTEMPT_TAG] = str(attempt)
    if attempt > 1:
        extra[RETRY_OF_TAG] = str(retry_of)
    run_id = open_run(
        spec.uri,
        spec.experiment_id,
        spec.run_name,
        spec.params,
        spec.defaults,
        provenance,
        extra,
    )
    start_ms = int(time.time() * 1000)
    timings["open_run"] = time.time() - t0
    out = Path(spec.output_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tag = f"{os.getpid()}.{threading.get_ident()}"
    tmp = out.with_name(f".{out.stem}.{tag}.partial.ipynb")
    stderr_log = out.with_name(f".{out.stem}.{tag}.stderr.txt")
    kernel_env = {
        "MLFLOW_RUN_ID": run_id,
        "MLFLOW_TRACKING_URI": spec.uri,
        "MLFLOW_EXPERIMENT_ID": spec.experiment_id,
    }
    km_class = _kernel_manager_class(state, kernel_env, stderr_log, spec.cwd)

    def on_timeout() -> None:
        state.timed_out = True
        state.kill_kernel()

    timer = threading.Timer(spec.timeout, on_timeout) if spec.timeout else None
    executed = None
    failure: BaseException | None = None
    status, reason, error = "FINISHED", "", {}
    t1 = time.time()
    with Heartbeat(spec.uri, run_id, spec.heartbeat_interval):
        try:
            if timer:
                timer.start()
            if state.stopping:
                raise RuntimeError("batch stopped")
            for attempt_start in (1, 2):
                try:
                    executed = papermill.execute_notebook(
                        nb,
                        str(tmp),
                        kernel_name=spec.kernel_name,
                        progress_bar=False,
                        start_timeout=spec.start_timeout,
                        execution_timeout=None,  # the run-wide watchdog below ends it
                        request_save_on_cell_execute=True,
                        kernel_manager_class=km_class,
                    )
                    break
                except RuntimeError as exc:
                    # A kernel that dies while starting (e.g. a port taken between
                    # jupyter_client choosing it and the kernel binding it, under load)
                    # ran no user code: start a fresh one once before calling it FAILED.
                    if (
                        attempt_start == 2
                        or state.stopping
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
                state.stopped = True
        finally:
            if timer:
                timer.cancel()
            state.kernel_pid = None  # gone: a late stop must not kill a reused pid
    timings["execute"] = time.time() - t1
    # A run that completed, or failed in a cell of its own, before the signal or the
    # deadline keeps that outcome (the deadline can pass while the kernel shuts down).
    from papermill.exceptions import PapermillExecutionError

    cell_failed = isinstance(failure, PapermillExecutionError)
    if status == "FAILED" and not cell_failed and state.stopping:
        status = "KILLED"
        cell = _running_cell(executed)
        why = state.stop_reason or "batch interrupted (SIGTERM/SIGINT)"
        reason = f"{why}: kernel shut down" + (
            f" while cell {cell} was running" if cell is not None else ""
        )
        error = {"cell_index": cell} if cell is not None else {}
    elif status == "FAILED" and not cell_failed and state.timed_out:
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
    try:
        close_run(spec.uri, run_id, finished, provenance)
    except Exception as exc:  # logging failed: the run still gets its real status
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        problem = f"logging the run's results failed ({type(exc).__name__}: {first})"
        reason = f"{reason}; {problem}" if reason else problem
        end_run(spec.uri, run_id, status, reason)
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
        worker=worker,
        attempt=attempt,
    )


def close_orphans(uri: str, experiment_id: str, batch_id: str, status: str) -> int:
    """Backstop: a run of this batch still RUNNING now has no owner left; end it.

    Returns how many runs were closed.
    """
    from mlflow.tracking import MlflowClient

    from ..provenance.store import retry_locked

    runs = retry_locked(
        MlflowClient(uri).search_runs,
        [experiment_id],
        filter_string=f"tags.`{BATCH_TAG}` = '{batch_id}' and attributes.status = 'RUNNING'",
    )
    reason = (
        "worker process ended without closing the run"
        if status == "FAILED"
        else "batch interrupted: run closed by the batch process"
    )
    for run in runs:
        end_run(uri, run.info.run_id, status, reason)
    return len(runs)
