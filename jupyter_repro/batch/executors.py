"""Where runs happen: executors behind one interface, chosen by name from a registry.

An executor is a class implementing :class:`Executor`; its name maps to it in the entry
point group ``jupyter_repro.executors`` (``pyproject.toml``, as papermill registers its
engines), read by :mod:`.registry`.
The names feed ``--executor``'s choices; :func:`~.runner.run_batch` only talks to the
interface, never to one executor. Built in:

- ``local`` (the default, :class:`LocalProcessExecutor`): ``-j N`` long-lived worker
  processes on this machine, each importing papermill/MLflow/nbconvert once and then
  running many notebooks, each in its own fresh kernel. They start from a ``forkserver``
  (a clean process that has pre-imported those modules), never by forking the batch
  process, which holds sqlite connections and threads.
- ``dask`` (:class:`~.dask_executor.DaskExecutor`): a dask.distributed cluster.

A new executor is one module with one class, plus one line in ``pyproject.toml``
(docs/architecture.md, "A new executor").
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import signal
import tempfile
import weakref
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

if TYPE_CHECKING:
    from .runner import BatchOptions


class Executor(Protocol):
    """What the batch needs from a place that runs :func:`~.execute.execute_run`.

    Class-level (before any run exists): :meth:`check_options`, :meth:`prepare`,
    :meth:`default_jobs`, :meth:`create`. Instance-level: :meth:`check` the workers,
    :meth:`describe` them, run (:meth:`submit`, :meth:`submit_run`) and stop.
    """

    #: Whether a run may be started again after the worker running it died (the run
    #: then looks for its earlier attempts first: ``RunSpec.check_attempts``).
    reruns_lost_runs: ClassVar[bool]

    @classmethod
    def check_options(cls, options: BatchOptions) -> list[str]:
        """Warnings about ``options`` for this executor (options it ignores).

        Raises:
            ReproError: options this executor cannot honour.
        """
        ...

    @classmethod
    def prepare(cls) -> bool:
        """Start cheap background preparation early (it overlaps with the batch's own
        validation and set-up); must not wait. Returns whether it started something
        that :meth:`unprepare` should undo when the batch does not start (bad input)."""
        ...

    @classmethod
    def unprepare(cls) -> None:
        """Undo what :meth:`prepare` started, for a batch that never starts (bad input:
        no process may be left behind)."""
        ...

    @classmethod
    def default_jobs(cls) -> int:
        """Runs at a time when ``-j`` is not given."""
        ...

    @classmethod
    def create(cls, options: BatchOptions, notebook: Path, batch_id: str, jobs: int) -> Executor:
        """The executor for one batch of ``notebook``, running ``jobs`` runs at a time
        (it ships the notebook and ``options.data`` to its workers when they need them).

        Raises:
            ReproError: it cannot be used (one line saying why).
        """
        ...

    def check(self, uri: str, kernel: str) -> list[str]:
        """Whether the workers can run the batch (kernelspec ``kernel``, the tracking
        store at ``uri``) before any run exists; returns warnings.

        Raises:
            ReproError: a worker cannot run it.
        """
        ...

    def describe(self, runs: int) -> str | None:
        """One line for the batch's log about where ``runs`` runs go (None: nothing
        worth saying)."""
        ...

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        """Schedule ``fn(*args)`` on a worker; the future holds its return value."""
        ...

    def submit_run(self, spec: Any) -> Future:
        """Schedule one batch run (:func:`~.execute.execute_run` of ``spec`` or its
        equivalent); the future holds its :class:`~.spec.RunResult`."""
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


class BaseExecutor:
    """Defaults for the parts of :class:`Executor` most executors do not need: no option
    of their own, nothing to prepare or check, one run at a time, nothing to describe,
    :meth:`kill` as :meth:`stop`. A subclass writes :meth:`create`, :meth:`submit`,
    :meth:`submit_run`, :meth:`stop`, :meth:`cancel_pending` and :meth:`shutdown`."""

    reruns_lost_runs: ClassVar[bool] = False

    @classmethod
    def check_options(cls, options: BatchOptions) -> list[str]:
        """The dask-only options are refused; no warnings."""
        from ..errors import ReproError

        if options.scheduler or options.shared_fs:
            raise ReproError("--scheduler and --shared-fs need --executor dask")
        return []

    @classmethod
    def prepare(cls) -> bool:
        """Nothing to start early."""
        return False

    @classmethod
    def unprepare(cls) -> None:
        """Nothing to undo."""

    @classmethod
    def default_jobs(cls) -> int:
        """One run at a time."""
        return 1

    def check(self, uri: str, kernel: str) -> list[str]:
        """Nothing to check: the workers are this machine, checked by the batch itself."""
        return []

    def describe(self, runs: int) -> str | None:
        """Nothing worth saying."""
        return None

    def kill(self) -> None:
        """As :meth:`stop` (an executor whose workers can hang overrides this)."""
        self.stop()

    def stop(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


# --- local: a pool of worker processes ----------------------------------------------

PRELOAD = ["jupyter_repro.batch.preload", "jupyter_repro.batch.execute"]


#: Prefix of the folder that holds multiprocessing's forkserver socket, in the temp dir
#: (or in ``/tmp`` when the temp dir's path is too long for a socket).
MP_DIR_PREFIX = "jrepro-mp-"


def _multiprocessing_dir() -> None:
    """Give this process's multiprocessing a private temp folder of ours, once.

    ``multiprocessing`` puts the forkserver's listening socket in ``pymp-*`` under the
    temp dir. Two faults follow on CPython 3.11: a long ``$TMPDIR`` (a CI job's, a
    pytest ``tmp_path``) makes the socket path exceed ``sun_path`` and the batch dies
    with ``OSError: AF_UNIX path too long``; and a batch SIGKILLed leaves ``pymp-*``
    behind. Here the folder is ``jrepro-mp-*``, in ``/tmp`` when the temp dir is too long
    (as CPython 3.13's ``multiprocessing.util._get_base_temp_dir`` does), with an owner
    record, so the next batch removes one a killed batch left
    (:func:`..processes.remove_stale_folders`). Uses ``multiprocessing``'s private
    per-process ``_config['tempdir']`` (read by ``util.get_temp_dir``); left alone when
    that is absent or already set.
    """
    from multiprocessing import process, util

    from ..kernels import MAX_SOCKET_PATH
    from ..processes import remove_stale_folders, write_owner

    config = getattr(process.current_process(), "_config", None)
    if not isinstance(config, dict) or config.get("tempdir") is not None:
        return
    # the socket: <dir>/jrepro-mp-XXXXXXXX/listener-XXXXXXXX
    room = MAX_SOCKET_PATH - len(MP_DIR_PREFIX) - 8 - len("/listener-XXXXXXXX") - 1
    base = tempfile.gettempdir()
    if len(base.encode()) > room and os.path.isdir("/tmp"):
        base = "/tmp"
    remove_stale_folders(MP_DIR_PREFIX, base)
    folder = tempfile.mkdtemp(prefix=MP_DIR_PREFIX, dir=base)
    write_owner(folder)
    util.Finalize(None, shutil.rmtree, args=(folder, True), exitpriority=-100)
    config["tempdir"] = folder


def _context() -> Any:
    if "forkserver" in multiprocessing.get_all_start_methods():
        _multiprocessing_dir()
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(PRELOAD)
        return ctx
    return multiprocessing.get_context("spawn")  # pragma: no cover - non-POSIX


def prestart() -> bool:
    """Start the forkserver now: its imports then overlap with the batch's own
    validation and set-up. Returns whether this call started it (False: it was already
    running, or this platform has no forkserver).

    Cheap and safe to call early (it does not wait); :func:`stop_prestarted` ends it
    at once when no pool will use it.
    """
    if _context().get_start_method() != "forkserver":
        return False  # pragma: no cover - non-POSIX
    from multiprocessing import forkserver

    server = forkserver._forkserver
    before = getattr(server, "_forkserver_pid", None)
    forkserver.ensure_running()
    return getattr(server, "_forkserver_pid", None) != before


def stop_prestarted() -> None:
    """End the forkserver :func:`prestart` started, now (SIGKILL: it may be in the middle
    of its preload imports, seconds before it would notice this process's exit).

    Only for a batch that never made a pool (bad input). Uses the private state of
    ``multiprocessing.forkserver`` (CPython 3.8+); does nothing if that is absent.
    """
    from multiprocessing import forkserver

    server = forkserver._forkserver
    pid = getattr(server, "_forkserver_pid", None)
    if pid is None or not hasattr(server, "_stop"):
        return
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    server._stop()  # closes its pipe, reaps it, removes its socket; the next pool restarts it


#: Prefix of the batch's private folder for its workers' kernels, in the temp dir.
KERNEL_DIR_PREFIX = "jrepro-batch-"


class LocalProcessExecutor(BaseExecutor):
    """``-j N``: N worker processes on this machine, each running one notebook at a time."""

    def __init__(self, jobs: int, fork_kernels: bool = True) -> None:
        from ..processes import remove_stale_folders, write_owner
        from .supervise import worker_init

        self.jobs = max(1, int(jobs))
        # Private folder (0700) for the workers' kernel files (connection files, IPC
        # sockets, stderr): removed here at the end, even after workers were SIGKILLed.
        # (a batch SIGKILLed with its workers leaves it: the next batch removes it)
        remove_stale_folders(KERNEL_DIR_PREFIX)
        self.kernel_dir = tempfile.mkdtemp(prefix=KERNEL_DIR_PREFIX)
        write_owner(self.kernel_dir)
        self._remove_kernel_dir = weakref.finalize(
            self, shutil.rmtree, self.kernel_dir, ignore_errors=True
        )
        self._pool = ProcessPoolExecutor(
            self.jobs,
            mp_context=_context(),
            initializer=worker_init,
            initargs=(os.getpid(), self.kernel_dir, fork_kernels),
        )

    @classmethod
    def prepare(cls) -> bool:
        """Start the forkserver (:func:`prestart`)."""
        return prestart()

    @classmethod
    def unprepare(cls) -> None:
        """End the forkserver :meth:`prepare` started (:func:`stop_prestarted`)."""
        stop_prestarted()

    @classmethod
    def create(
        cls, options: BatchOptions, notebook: Path, batch_id: str, jobs: int
    ) -> LocalProcessExecutor:
        """A pool of ``jobs`` workers (they read the notebook from this file system)."""
        return cls(jobs, options.fork_kernels)

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
        self._remove_kernel_dir()

    def cancel_pending(self) -> None:
        """Drop queued runs; in-flight ones go on (until :meth:`stop`)."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    def shutdown(self, cancel_pending: bool = False) -> None:
        """Wait for running work (unless stopped) and release the pool."""
        self._pool.shutdown(wait=True, cancel_futures=cancel_pending)
        self._remove_kernel_dir()
