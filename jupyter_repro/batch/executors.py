"""Where runs happen: a local pool of worker processes (``-j N``, the default), or a
dask.distributed cluster (``--executor dask``, :mod:`.dask_executor`). Both implement
:class:`Executor` (submit a picklable function, stop on request).

Workers are long-lived: each imports papermill/MLflow/nbconvert once and then runs many
notebooks, each in its own fresh kernel. They start from a ``forkserver`` (a clean
process that has pre-imported those modules), never by forking the batch process, which
holds sqlite connections and threads.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any, Protocol


class Executor(Protocol):
    """What the batch needs from a place that runs :func:`execute_run`."""

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        """Schedule ``fn(*args)``; the future holds its return value."""
        ...

    def submit_run(self, spec: Any) -> Future:
        """Schedule one batch run (:func:`~.execute.execute_run` of ``spec`` or its
        equivalent); the future holds its :class:`~.execute.RunResult`."""
        ...

    def stop(self) -> None:
        """Ask every in-flight run to end now as KILLED (their kernels shut down)."""
        ...

    def cancel_pending(self) -> None:
        """Drop runs not yet started, without waiting."""
        ...

    def kill(self) -> None:
        """Last resort after :meth:`stop` and a grace period: end workers forcibly."""
        ...

    def shutdown(self, cancel_pending: bool = False) -> None:
        """Release the workers; with ``cancel_pending`` drop runs not yet started."""
        ...


PRELOAD = ["jupyter_repro.batch.preload", "jupyter_repro.batch.execute"]


def _context() -> Any:
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(PRELOAD)
        return ctx
    return multiprocessing.get_context("spawn")  # pragma: no cover - non-POSIX


def prestart() -> None:
    """Start the forkserver now: its imports then overlap with the batch's own set-up.

    Cheap and safe to call early (it does not wait); the forkserver exits with this
    process if no executor is ever made.
    """
    if _context().get_start_method() == "forkserver":
        from multiprocessing import forkserver

        forkserver.ensure_running()


class LocalProcessExecutor:
    """``-j N``: N worker processes on this machine, each running one notebook at a time."""

    def __init__(self, jobs: int) -> None:
        from .execute import worker_init

        self.jobs = max(1, int(jobs))
        self._pool = ProcessPoolExecutor(
            self.jobs, mp_context=_context(), initializer=worker_init, initargs=(os.getpid(),)
        )

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        """Schedule ``fn(*args)`` on the next free worker."""
        return self._pool.submit(fn, *args)

    def submit_run(self, spec: Any) -> Future:
        """Schedule one batch run on the next free worker."""
        from .execute import execute_run

        return self._pool.submit(execute_run, spec)

    def worker_pids(self) -> list[int]:
        """Process ids of the live workers."""
        procs = getattr(self._pool, "_processes", None) or {}
        return [p.pid for p in list(procs.values()) if p.pid and p.is_alive()]

    def stop(self) -> None:
        """SIGTERM every worker: each kills its kernel and closes its run as KILLED."""
        for pid in self.worker_pids():
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue

    def kill(self) -> None:
        """Last resort after :meth:`stop`'s grace period: SIGKILL workers and kernels."""
        from ..processes import kill_tree

        for pid in self.worker_pids():
            kill_tree(pid)

    def cancel_pending(self) -> None:
        """Drop queued runs; in-flight ones go on (until :meth:`stop`)."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    def shutdown(self, cancel_pending: bool = False) -> None:
        """Wait for running work (unless stopped) and release the pool."""
        self._pool.shutdown(wait=True, cancel_futures=cancel_pending)


def make_executor(
    kind: str,
    jobs: int,
    *,
    scheduler: str | None = None,
    batch_id: str = "",
    payload: Any = None,
    connect_timeout: float = 30.0,
) -> Executor:
    """The executor for a batch.

    Args:
        kind: ``"local"`` (a pool of ``jobs`` processes) or ``"dask"`` (the cluster at
            ``scheduler``, or a LocalCluster of ``jobs`` workers when it is None).
        payload: for dask, the :class:`~.dask_executor.Payload` shipped with every run
            (None: the workers share this file system).

    Raises:
        ReproError: an unknown kind, or a dask scheduler that cannot be used.
    """
    if kind == "local":
        return LocalProcessExecutor(jobs)
    if kind == "dask":
        from .dask_executor import DaskExecutor

        return DaskExecutor(scheduler, jobs, batch_id, payload, connect_timeout)
    from ..errors import ReproError

    raise ReproError(f"--executor must be 'local' or 'dask', not {kind!r}")
