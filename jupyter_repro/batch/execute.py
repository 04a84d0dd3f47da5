"""One batch run: a fresh kernel under papermill, logged to MLflow, ended cleanly.

:func:`execute_run` is what executors call (a top-level function of picklable
arguments, so a process pool or a dask cluster can run it). It never raises for a
notebook's own failure: every outcome becomes a :class:`~.spec.RunResult` and an MLflow
status. :func:`_execute_run` reads as its steps: resolve the attempt, open the run, run
the notebook, classify the outcome, finish the run.

The parts live by concern: the types in :mod:`.spec`; stopping (signals, watchers, the
owner's liveness) in :mod:`.supervise`; the papermill call in :mod:`.papermill_call`;
attempts and orphans in :mod:`jupyter_repro.provenance.attempts`; what is logged in
:mod:`jupyter_repro.provenance.mlflow_log`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..processes import host_key
from ..provenance.attempts import Attempt, attempt_number, close_orphans, resolve_attempt
from ..provenance.env import adopt_fingerprint, kernel_environment
from ..provenance.gc import Heartbeat, heartbeat_tags
from ..provenance.mlflow_log import (
    FinishedRun,
    Provenance,
    close_run,
    end_run,
    open_run,
    warm_html_in_background,
)
from ..provenance.names import (
    BATCH_ATTEMPT,
    BATCH_ID,
    BATCH_INDEX,
    BATCH_RETRY_OF,
    BATCH_WORKER,
    STATUS_REASON,
    RunStatus,
)
from .notebook_mlflow import PER_RUN_VARIABLES, link_notebook_runs, notebook_mlflow_env
from .papermill_call import (
    describe_failure,
    execute_notebook,
    is_cell_error,
    papermill_ready,
    running_cell,
)
from .spec import RunResult, RunSpec
from .supervise import RunState, stop_runs, supervised, worker_init, worker_kernels

__all__ = ["RunResult", "RunSpec", "close_orphans", "execute_run", "stop_runs", "worker_init"]

#: Characters of the kernel's stderr kept as an artifact (the end of it).
KERNEL_STDERR_CHARS = 200_000


def execute_run(spec: RunSpec) -> RunResult:
    """Run one parameter set (see :func:`_execute_run`), registered as in flight so that
    :func:`~.supervise.stop_runs` and the watchers can reach its kernel."""
    with supervised(spec) as state:
        return _execute_run(spec, state)


def _execute_run(spec: RunSpec, state: RunState) -> RunResult:
    """Run one parameter set: MLflow run, papermill in a fresh kernel, artifacts, status.

    Returns a result for every outcome (FINISHED, FAILED, KILLED). A run not started
    because the batch is stopping has status KILLED and no MLflow run.
    """
    t0 = time.time()
    worker = f"{socket.gethostname()}:{os.getpid()}"
    if state.stopping:
        return RunResult.not_started(spec, "batch stopped before this run started")
    attempt = (
        resolve_attempt(spec.uri, spec.experiment_id, spec.batch_id, spec.index)
        if (spec.check_attempts)
        else Attempt()
    )
    if attempt.done is not None or attempt.given_up:
        return _earlier_outcome(spec, attempt)
    run = _open(spec, attempt, worker)
    run.timings["open_run"] = time.time() - t0
    _run_notebook(spec, state, run)
    if run.kernel_ready_at is not None:  # from the run's start on its worker
        run.timings["until_kernel"] = run.kernel_ready_at - t0
    _classify_outcome(spec, state, run)
    result = _finish(spec, run)
    result.duration, result.worker, result.attempt = time.time() - t0, worker, attempt.number
    result.started_at = t0
    return result


def _earlier_outcome(spec: RunSpec, attempt: Attempt) -> RunResult:
    """The result of a run that does not start again: an earlier attempt already ended
    on its own, or workers died running it :data:`MAX_ATTEMPTS` times."""
    if attempt.done is not None:
        run = attempt.done
        return RunResult(
            spec.index,
            spec.run_name,
            spec.params,
            run.info.status,
            run.info.run_id,
            0.0,
            run.data.tags.get(STATUS_REASON, ""),
            worker=run.data.tags.get(BATCH_WORKER, ""),
            attempt=attempt_number(run),
        )
    where = attempt.workers
    return RunResult(
        spec.index,
        spec.run_name,
        spec.params,
        RunStatus.FAILED,
        attempt.retry_of,
        0.0,
        f"worker died {len(attempt.earlier)} times mid-run; not retried again ({', '.join(where)})",
        worker=", ".join(where),
        attempt=len(attempt.earlier),
    )


@dataclass
class _OpenRun:
    """One run between opening its MLflow run and closing it: where its files go, what
    papermill produced, and the outcome as it is being decided."""

    run_id: str
    provenance: Provenance
    start_ms: int
    output: Path
    partial: Path
    executed: Any = None
    kernel_stderr: str = ""
    kernel_starts: int = 0
    kernel_forked: bool | None = None  # the last kernel was forked from a template
    end_kernels: Callable[[], None] = lambda: None
    kernels_ended: bool = False
    kernel_ready_at: float | None = None  # time.time() when its kernel first answered
    failure: BaseException | None = None
    status: str = RunStatus.FINISHED
    reason: str = ""
    error: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)


def _open(spec: RunSpec, attempt: Attempt, worker: str) -> _OpenRun:
    """Open the MLflow run (RUNNING, with heartbeat and batch tags) and name its files."""
    # The environment coordinate is the one the run executes in: the kernel's interpreter
    # (a kernelspec may name another venv's python; this worker's when it is the same),
    # which on a dask cluster may differ from the client's (cached per process).
    if spec.owner is not None and spec.owner[0] == host_key():
        # this machine's interpreter, fingerprinted by the batch process moments ago
        adopt_fingerprint(spec.provenance.environment)
    provenance = dataclasses.replace(
        spec.provenance, environment=kernel_environment(spec.kernel_name)
    )
    extra = {
        **heartbeat_tags(),
        BATCH_ID: spec.batch_id,
        BATCH_INDEX: str(spec.index),
        BATCH_WORKER: worker,
        **spec.flags,
    }
    if spec.check_attempts:
        extra[BATCH_ATTEMPT] = str(attempt.number)
    if attempt.number > 1:
        extra[BATCH_RETRY_OF] = str(attempt.retry_of)
    run_id = open_run(
        spec.uri,
        spec.experiment_id,
        spec.run_name,
        spec.params,
        spec.defaults,
        provenance,
        extra,
    )
    out = Path(spec.output_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tag = f"{os.getpid()}.{threading.get_ident()}"
    return _OpenRun(
        run_id,
        provenance,
        int(time.time() * 1000),
        out,
        out.with_name(f".{out.stem}.{tag}.partial.ipynb"),
    )


def _run_notebook(spec: RunSpec, state: RunState, run: _OpenRun) -> None:
    """Execute the notebook in a fresh kernel under the run's heartbeat and deadline;
    ``run.executed`` is the (partial) executed notebook, ``run.failure`` what ended it.

    The kernel comes from this worker's :class:`~jupyter_repro.kernels.KernelPool` (the
    spare started during the previous run when it fits, else one started now). The
    spare for the next run (``spec.warm_next``) starts when this run takes the spare, or,
    when this run's kernel started cold, once that kernel has answered. Outside a pool
    worker the run uses a kernel folder of its own, removed at the end.
    """
    import nbformat

    from ..kernels import KernelFolder, KernelPool, forked
    from ..notebook import read_notebook, without_outputs
    from ..parameters import inject_parameters

    t1 = time.time()
    # from a clean copy: papermill keeps the notebook it is given in the executed one's
    # metadata, and the working copy's saved outputs must not reach the run's artifacts
    nb = inject_parameters(
        papermill_ready(without_outputs(read_notebook(spec.notebook))), spec.params
    )
    mlflow_env = notebook_mlflow_env(nb, spec.uri, spec.experiment_id, run.run_id)
    # what differs from run to run reaches a pre-started kernel just before the first
    # cell: the run's MLflow variables, and whatever the spec carries (tune's trial)
    per_run = set(PER_RUN_VARIABLES) | set(spec.kernel_env)
    kernel_env = {**spec.kernel_env, **mlflow_env}  # the run's MLflow variables win
    shared = {k: v for k, v in kernel_env.items() if k not in per_run}
    own = {k: v for k, v in kernel_env.items() if k in per_run}
    pool = worker_kernels()
    own_pool = KernelPool(KernelFolder(), warm=False) if pool is None else None
    kernels = pool or own_pool
    used: list[Any] = []

    asked: list[float] = []

    warm = {"started": False}

    def take_kernel(cold: bool) -> tuple[Any, dict[str, str]]:
        from jupyter_core.utils import run_sync

        asked.append(time.time())
        taken = kernels.take(spec.kernel_name, spec.cwd, shared, own, cold=cold)
        # a worker's kernel exits while the run is logged (_finish waits before the status)
        taken.km.defer_exit = pool is not None
        if taken.spare and spec.warm_next and not state.stopping:
            # this run got the spare (booted, or booting): the next one starts now
            run_sync(kernels.prestart)(spec.kernel_name, spec.cwd, shared)
            warm["started"] = True
        return taken.km, taken.late_env

    async def kernel_ready() -> None:
        # what the run waited for its kernel (the spare, or one started now)
        run.kernel_ready_at = time.time()
        warm_html_in_background()  # needed when the run closes; built while it executes
        run.timings["kernel_start"] = run.kernel_ready_at - asked[-1]
        if spec.warm_next and not warm["started"] and not state.stopping:
            # a kernel started cold for this run: the spare waits until it answered,
            # so the two do not compete for the CPU while the run waits
            await kernels.prestart(spec.kernel_name, spec.cwd, shared)
            warm["started"] = True

    def on_timeout() -> None:
        state.timed_out = True
        state.kill_kernel()

    timer = threading.Timer(spec.timeout, on_timeout) if spec.timeout else None
    with Heartbeat(spec.uri, run.run_id, spec.heartbeat_interval):
        try:
            if timer:
                timer.start()
            run.executed = execute_notebook(
                nb, run.partial, spec.start_timeout, state, take_kernel, used, kernel_ready
            )
        except BaseException as exc:  # every outcome, even KeyboardInterrupt, is a status
            run.failure = exc
            if run.partial.exists():
                try:
                    run.executed = nbformat.read(str(run.partial), as_version=4)
                except Exception:
                    run.executed = None
            if not isinstance(exc, Exception):
                state.stopped = True
        finally:
            if timer:
                timer.cancel()
            run.kernel_starts = len(used)
            if used:
                run.kernel_forked = forked(used[-1])
            run.end_kernels = functools.partial(_end_kernels, state, run, used)
            if not any(getattr(km, "exit_pending", False) for km in used):
                run.end_kernels()  # else in _finish, once the run's artifacts are logged
            if own_pool is not None:
                own_pool.close()
    run.timings["execute"] = time.time() - t1


def _end_kernels(state: RunState, run: _OpenRun, used: list[Any]) -> None:
    """The run's kernels are gone: wait for an exit still under way (deferred: it overlapped
    the run's logging; ``timings.kernel_exit``), remove their files, read their stderr.
    Runs once; later calls do nothing."""
    from jupyter_core.utils import run_sync

    from ..kernels import discard

    if run.kernels_ended:
        return
    run.kernels_ended = True
    t = time.time()
    for km in used:
        if getattr(km, "exit_pending", False):
            with contextlib.suppress(Exception):
                run_sync(km.finish_exit)()  # its last words reach its stderr file
    run.timings["kernel_exit"] = time.time() - t
    run.kernel_stderr = "".join(_read_tail(km.stderr_path) for km in used)
    for km in used:
        discard(km)  # nbclient shut it down, or it exited above; also a failed start
    state.kernel_gone()


def _read_tail(path: str | None) -> str:
    """The last :data:`KERNEL_STDERR_CHARS` characters of a kernel's stderr file."""
    if not path or not os.path.exists(path):
        return ""
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        fh.seek(max(0, fh.tell() - 4 * KERNEL_STDERR_CHARS))
        return fh.read().decode(errors="replace")[-KERNEL_STDERR_CHARS:]


def _classify_outcome(spec: RunSpec, state: RunState, run: _OpenRun) -> None:
    """FINISHED, FAILED (a cell raised, the kernel died, the deadline passed) or KILLED
    (stopped), with a one-line reason and the failing cell's facts.

    A run that completed, or failed in a cell of its own, before the signal or the
    deadline keeps that outcome (the deadline can pass while the kernel shuts down).
    """
    if run.failure is None:
        return
    run.status = RunStatus.FAILED
    run.reason, run.error = describe_failure(run.failure, run.executed)
    if is_cell_error(run.failure):
        return
    if state.stopping:
        run.status = RunStatus.KILLED
        cell = running_cell(run.executed)
        why = state.stop_reason or "batch interrupted (SIGTERM/SIGINT)"
        run.reason = f"{why}: kernel shut down" + (
            f" while cell {cell} was running" if cell is not None else ""
        )
        run.error = {"cell_index": cell} if cell is not None else {}
    elif state.timed_out:
        cell = running_cell(run.executed)
        run.reason = f"timed out after {spec.timeout:g}s" + (
            f" in cell {cell}" if cell is not None else ""
        )
        run.error = {"cell_index": cell, "ename": "Timeout", "evalue": run.reason}


def _input_as_path(executed: Any, notebook: str | Path, saved: Path) -> None:
    """Replace the copy of the input notebook papermill keeps in
    ``metadata.papermill.input_path`` by the notebook's path (papermill's value when it
    is given a path), in ``executed`` and in the file ``saved``."""
    import nbformat

    pm = executed.get("metadata", {}).get("papermill")
    if not isinstance(pm, dict) or isinstance(pm.get("input_path"), str | None):
        return
    pm["input_path"] = str(notebook)
    if saved.exists():
        nbformat.write(executed, str(saved))


def _finish(spec: RunSpec, run: _OpenRun) -> RunResult:
    """Put the executed notebook in place (atomically), log what the run produced and end
    its MLflow run with its status; a logging failure is added to the reason, never lost."""
    from ..metrics import read_metrics

    if run.executed is not None:
        _input_as_path(run.executed, spec.notebook, run.partial)
    if run.partial.exists():
        os.replace(run.partial, run.output)  # a reader sees the old file or the new one
    output_path = str(run.output) if run.output.exists() and run.executed is not None else None
    t2 = time.time()
    finished = FinishedRun(
        spec.run_name,
        run.status,
        run.executed,
        output_path,
        run.reason,
        run.error,
        run.start_ms,
        int(time.time() * 1000),
        kernel_stderr=run.kernel_stderr[-KERNEL_STDERR_CHARS:],
        kernel_forked=run.kernel_forked,
    )
    deferred = not run.kernels_ended

    def kernels_gone(finished: FinishedRun) -> None:
        # before the status: the kernel has exited (a notebook's own MLflow exit hook
        # has run), then the notebook's own runs are linked
        run.end_kernels()
        finished.kernel_stderr = run.kernel_stderr[-KERNEL_STDERR_CHARS:]
        link_notebook_runs(spec.uri, run.run_id)

    try:
        if not deferred:
            link_notebook_runs(spec.uri, run.run_id)
        close_run(
            spec.uri, run.run_id, finished, run.provenance, kernels_gone if deferred else None
        )
    except Exception as exc:  # logging failed: the run still gets its real status
        run.end_kernels()
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        problem = f"logging the run's results failed ({type(exc).__name__}: {first})"
        run.reason = f"{run.reason}; {problem}" if run.reason else problem
        end_run(spec.uri, run.run_id, run.status, run.reason)
    finally:
        run.end_kernels()
    run.timings["close_run"] = time.time() - t2
    executed = run.executed
    metrics = {m.name: m.value for m in read_metrics(executed)} if executed is not None else {}
    return RunResult(
        spec.index,
        spec.run_name,
        spec.params,
        run.status,
        run.run_id,
        0.0,
        run.reason,
        output_path,
        metrics,
        run.timings,
        kernel_starts=run.kernel_starts,
        kernel_forked=run.kernel_forked,
    )
