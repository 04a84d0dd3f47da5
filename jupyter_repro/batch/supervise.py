"""Supervision of the batch runs in one worker process: who may stop them, and how.

Every run in flight has a :class:`RunState` holding its kernel's process id.
:func:`stop_runs` (called by the local pool's SIGTERM handler, by a dask client through
``Client.run``, and by a watcher that sees the batch process or the dask task go away)
kills the kernels of the runs it names; papermill then fails fast with a dead kernel,
and the run is closed as KILLED with its partial notebook. A per-run timeout kills the
same way and the run is closed as FAILED. Nothing here touches process-wide state while
a run is in flight, so several runs can share one process, as on a dask worker with
several threads.

Liveness and host identity come from :mod:`jupyter_repro.processes` (the rule ``gc``
uses too).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

from ..kernels import KernelFolder, KernelPool
from ..processes import (
    create_time,
    host_key,
    kill_children,
    kill_tree,
    pid_alive,
    remove_stale_folders,
)
from .spec import RunSpec


class _WorkerState:
    """Process-wide stop requests, shared with the signal handler and the watchers."""

    def __init__(self) -> None:
        self.stopping = False  # SIGTERM / owner gone: every run in this process stops
        self.stopped_batches: set[str] = set()  # batches whose client asked to stop
        self.runs: dict[int, RunState] = {}  # id(state) -> state, runs in flight
        self.lock = threading.Lock()
        #: this worker's kernels (a spare started ahead), set by :func:`worker_init`
        self.kernels: KernelPool | None = None

    @property
    def running(self) -> bool:
        """Whether a run is in flight in this process."""
        return bool(self.runs)


class RunState:
    """One run in flight: why it may stop, and its kernel's process id once started."""

    def __init__(self, batch_id: str) -> None:
        self.batch_id = batch_id
        self.stopped = False  # this run was asked to stop (KILLED)
        self.stop_reason = ""
        self.timed_out = False
        self.kernel_pid: int | None = None
        self.kernel_started: float | None = None  # create time, against pid reuse
        self.launched_at: float | None = None  # time.time() when the kernel was launched

    @property
    def stopping(self) -> bool:
        """Whether this run, its batch or the whole process was asked to stop."""
        return self.stopped or _STATE.stopping or self.batch_id in _STATE.stopped_batches

    def stop(self, reason: str) -> None:
        """Stop this run (it ends KILLED with ``reason``, unless a reason was set first)."""
        self.stopped = True
        self.stop_reason = self.stop_reason or reason
        self.kill_kernel()

    def kernel_launched(self, pid: int) -> None:
        """Record the kernel's pid (with its start time, against pid reuse); kill it at
        once when a stop or the deadline arrived while it was starting."""
        self.launched_at = time.time()
        self.kernel_started = create_time(pid)
        self.kernel_pid = pid if self.kernel_started is not None else None
        if self.stopping or self.timed_out:
            self.kill_kernel()

    def kernel_gone(self) -> None:
        """The kernel has ended: a late stop must not kill a process that reused its pid."""
        self.kernel_pid = None

    def kill_kernel(self) -> None:
        """Kill this run's kernel and everything it started (no-op before it starts)."""
        pid, started = self.kernel_pid, self.kernel_started
        if pid is not None:
            kill_tree(pid, started)


_STATE = _WorkerState()


@contextlib.contextmanager
def supervised(spec: RunSpec) -> Iterator[RunState]:
    """Register one run as in flight for the length of the block, so that
    :func:`stop_runs` and its :class:`RunWatcher` can reach its kernel."""
    state = RunState(spec.batch_id)
    with _STATE.lock:
        _STATE.runs[id(state)] = state
    try:
        with RunWatcher(spec, state):
            yield state
    finally:
        with _STATE.lock:
            _STATE.runs.pop(id(state), None)


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
            state.stop(reason)
            stopped += 1
    return stopped


def _on_stop_signal(signum: int, frame: Any) -> None:
    stop_runs(None, "batch interrupted (SIGTERM/SIGINT)")
    kill_children()  # the runs' kernels and the spare; the spare's files go at exit


def worker_kernels() -> KernelPool | None:
    """This worker's :class:`~jupyter_repro.kernels.KernelPool` (None outside a local
    pool worker: each run then starts its kernel in a folder of its own)."""
    return _STATE.kernels


def _close_kernels() -> None:
    pool = _STATE.kernels
    if pool is not None:
        pool.close()
        # the batch's folder too when the batch is gone (killed with -9): nobody else will
        parent = os.path.dirname(pool.folder.path)
        remove_stale_folders(os.path.basename(parent), os.path.dirname(parent))


def worker_init(
    batch_pid: int | None = None, kernel_dir: str | None = None, fork_kernels: bool = False
) -> None:
    """Run once in each worker process: signal handlers, batch-death watch, warm imports,
    and with ``kernel_dir`` (a private folder of the batch) this worker's kernel pool,
    forking Python kernels from a template when ``fork_kernels``.

    SIGINT is ignored (Ctrl-C reaches the whole process group; the batch process decides);
    SIGTERM means "stop now, close runs as KILLED". A worker's parent is the forkserver,
    not the batch, so the parent-death signal cannot tell that the batch died: a daemon
    thread watches ``batch_pid`` every second and, once it is gone (SIGKILL, crash), stops
    the run in flight exactly as SIGTERM would, so it ends KILLED and its kernel is shut.
    The pool's spare kernel is killed and its folder removed when the worker exits (a
    ``multiprocessing`` finalizer, which runs when the pool shuts the worker down).
    """
    from multiprocessing import util

    from ..provenance.store import quiet_mlflow

    quiet_mlflow()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _on_stop_signal)
    if kernel_dir is not None:
        # runs execute in this process's main thread: its kernels die with it
        _STATE.kernels = KernelPool(
            KernelFolder(parent=kernel_dir), die_with_owner=True, fork=fork_kernels
        )
        _STATE.kernels.prepare_template(sys.executable)  # the usual kernelspec's Python
        util.Finalize(None, _close_kernels, exitpriority=50)
    if batch_pid is not None:
        threading.Thread(target=_watch_batch, args=(batch_pid,), daemon=True).start()
    warm_imports()


def warm_imports() -> None:
    """Import the heavy modules once per worker instead of once per run (a no-op when
    the forkserver already preloaded them)."""
    from . import preload  # noqa: F401


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
            _close_kernels()  # os._exit runs no finalizer
            os._exit(0)  # nobody will send this worker another run


class RunWatcher:
    """Stops one run when its owner goes away: the batch process on this host key (by pid
    and start time), or, on a dask worker, the task itself (cancelled, or released
    because the client disconnected). Polls every ``interval`` seconds in a daemon thread."""

    def __init__(self, spec: RunSpec, state: RunState, interval: float = 0.5) -> None:
        self.spec, self.state, self.interval = spec, state, interval
        self._done = threading.Event()
        self._task = _current_dask_task()
        self._thread = threading.Thread(target=self._loop, name="jrepro-watch", daemon=True)

    def __enter__(self) -> RunWatcher:
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
                self.state.stop(reason)
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
