"""``--executor dask``: the runs of a batch on a dask.distributed cluster.

Design (the reasons are in docs/architecture.md): a dask task runs the very same
:func:`~jupyter_repro.batch.execute.execute_run` as a local pool worker, so the worker
opens, heartbeats and closes the MLflow run itself and there is one code path for what
is logged. That needs a tracking store every worker can reach: an ``mlflow server``
over HTTP (``jupyter-repro server``), or a local sqlite/file store when every worker is
on this machine (``LocalCluster``, workers on 127.0.0.1) or shares its disk
(``--shared-fs``). The client checks this before any run exists.

Without ``--shared-fs`` the notebook and the declared ``--data`` inputs are shipped by
content (inside each task when small; else once per batch as the result of a task,
replicated to every worker and recomputed if every copy dies) into a scratch folder
per run that keeps their relative layout, and the executed notebook comes back to the
client, which writes it under ``runs/`` as a local run would.

Failures: a worker that dies mid-run is noticed by the scheduler, which runs the task
again elsewhere; the new attempt finds the dead attempt's MLflow run (same batch id and
index), ends it FAILED ("the worker ... died mid-run; retried") and runs once more; a
third attempt gives up FAILED (:data:`~jupyter_repro.provenance.attempts.MAX_ATTEMPTS`). On a
cluster configured to give up at once (``KilledWorker``) the client resubmits once
itself. Ctrl-C stops the batch's runs on every worker (``Client.run`` of
:func:`~jupyter_repro.batch.supervise.stop_runs`); a client that is killed outright
releases its tasks, and each running task sees that and ends its run KILLED.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import os
import shutil
import signal
import socket
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from ..errors import ReproError
from ..provenance.names import RunStatus
from .execute import execute_run
from .spec import RunResult, RunSpec

if TYPE_CHECKING:
    from .runner import BatchOptions

#: Payloads up to this size (bytes) go inside every task; larger ones once per worker.
INLINE_PAYLOAD_BYTES = 8_000_000

#: Seconds to wait for the scheduler to answer and for a first worker to join.
CONNECT_TIMEOUT = 30.0


@dataclass(frozen=True)
class Payload:
    """What a worker needs on its disk to run the notebook: files by content.

    Attributes:
        files: relative POSIX path -> bytes, laid out as on the client below a common
            folder of the notebook's folder and every ``--data`` input.
        notebook: the notebook's relative path among ``files``.
    """

    files: dict[str, bytes]
    notebook: str

    @property
    def size(self) -> int:
        """Total bytes shipped."""
        return sum(len(b) for b in self.files.values())


def build_payload(notebook: str | Path, data: list[str] | tuple[str, ...] = ()) -> Payload:
    """Read the notebook and every declared input into a :class:`Payload`.

    Raises:
        ReproError: an input cannot be read (the message names it).
    """
    nb = Path(notebook).resolve()
    inputs = [Path(p).resolve() for p in data]
    root = Path(os.path.commonpath([nb.parent, *inputs]))
    paths = [nb]
    for item in inputs:
        paths.extend(sorted(f for f in item.rglob("*") if f.is_file()) if item.is_dir() else [item])
    files: dict[str, bytes] = {}
    for f in paths:
        try:
            files[f.relative_to(root).as_posix()] = f.read_bytes()
        except OSError as exc:
            raise ReproError(f"{f}: cannot read to ship to the workers: {exc.strerror or exc}")
    return Payload(files, nb.relative_to(root).as_posix())


def _scratch_parent() -> str | None:
    """The dask worker's own local directory (its scratch space), if known."""
    try:
        from distributed import get_worker

        return get_worker().local_directory
    except Exception:
        return None


def run_shipped(spec: RunSpec, payload: Payload | None) -> RunResult:
    """Run ``spec`` on a dask worker: in a scratch copy of ``payload`` unless it is None
    (``--shared-fs``: the client's paths are valid here).

    Returns the run's :class:`RunResult`; with a payload, ``notebook_text`` holds the
    executed notebook for the client to write to ``spec.output_path``.
    """
    from ..provenance.store import quiet_mlflow

    quiet_mlflow()  # a no-op after the first run in this worker process
    if payload is None:
        return execute_run(spec)
    scratch = Path(tempfile.mkdtemp(prefix="jrepro-run-", dir=_scratch_parent()))
    try:
        for rel, content in payload.files.items():
            target = scratch / "files" / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
        notebook = scratch / "files" / payload.notebook
        out = scratch / "out" / Path(spec.output_path).name
        result = execute_run(
            replace(spec, notebook=str(notebook), cwd=str(notebook.parent), output_path=str(out))
        )
        if result.output_path:
            result.notebook_text = out.read_text(encoding="utf-8")
            result.output_path = spec.output_path
        if result.status == RunStatus.FAILED and any(
            name in result.reason for name in ("FileNotFoundError", "ModuleNotFoundError")
        ):
            result.reason += (
                " (on a dask worker only the notebook and --data inputs are shipped: "
                "declare the file with --data, or use --shared-fs)"
            )
        return result
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _hold(payload: Payload) -> Payload:
    """The task whose result is the payload (see :class:`DaskExecutor`)."""
    return payload


async def worker_facts(uri: str, probe: tuple[str, str] | None = None) -> dict[str, Any]:
    """Run on each worker (``Client.run``) before the batch: what it can run, and
    whether it reaches the tracking store. The slow part runs in a thread, so the
    worker's event loop (heartbeats to the scheduler) is never blocked."""
    import asyncio

    return await asyncio.to_thread(_worker_facts, uri, probe)


def _worker_facts(uri: str, probe: tuple[str, str] | None) -> dict[str, Any]:
    # Warm the imports a run needs (without the local forkserver's sys.modules tweak:
    # this process is shared with other people's tasks).
    import mlflow.tracking  # noqa: F401
    import nbclient  # noqa: F401
    import papermill  # noqa: F401
    from jupyter_client.kernelspec import KernelSpecManager

    from .. import __version__
    from ..provenance.store import quiet_mlflow

    quiet_mlflow()

    return {
        "host": socket.gethostname(),
        "version": __version__,
        "kernels": sorted(KernelSpecManager().find_kernel_specs()),
        "store": store_reachable(uri, probe),
    }


def store_reachable(uri: str, probe: tuple[str, str] | None = None, timeout: float = 10) -> str:
    """ "" when this process can use the tracking store at ``uri``, else why not.

    An HTTP(S) server is asked for one experiment (with the credentials MLflow would
    use from this process's environment); a file store is checked by reading the
    ``probe`` file (path, token) that the client wrote beside it, which proves the same
    folder is seen, not a namesake on another disk.
    """
    import base64
    import urllib.error
    import urllib.request

    if uri.startswith(("http://", "https://")):
        url = uri.rstrip("/") + "/api/2.0/mlflow/experiments/search?max_results=1"
        request = urllib.request.Request(url)
        user = os.environ.get("MLFLOW_TRACKING_USERNAME")
        token = os.environ.get("MLFLOW_TRACKING_TOKEN")
        if user:
            secret = f"{user}:{os.environ.get('MLFLOW_TRACKING_PASSWORD', '')}".encode()
            request.add_header("Authorization", "Basic " + base64.b64encode(secret).decode())
        elif token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=timeout):
                return ""
        except urllib.error.HTTPError as exc:
            if exc.code in (401, 403):
                return (
                    f"the server refused it (HTTP {exc.code}): set MLFLOW_TRACKING_USERNAME/"
                    "MLFLOW_TRACKING_PASSWORD (or MLFLOW_TRACKING_TOKEN) in the worker's "
                    "environment"
                )
            return f"HTTP {exc.code} from {uri}"
        except (OSError, ValueError) as exc:
            return f"cannot connect to {uri} ({getattr(exc, 'reason', exc)})"
    if probe is not None:
        path, expected = probe
        try:
            seen = Path(path).read_text()
        except OSError:
            seen = None
        if seen != expected:
            return (
                f"the store is a file on the client's machine ({uri}) and this worker does "
                "not see that folder"
            )
    return ""


def store_is_local(uri: str) -> bool:
    """Whether a tracking URI names files on this machine (sqlite, file) rather than a
    server every worker can reach."""
    if uri == "databricks" or uri.startswith(("databricks://", "databricks-uc")):
        return False  # a Databricks workspace, not a path
    return uri.startswith(("sqlite:", "file:")) or "://" not in uri


def judge_workers(facts: dict[str, Any], kernel: str) -> list[str]:
    """Whether every worker can run the batch, from :func:`worker_facts` per address.

    Args:
        facts: worker address -> its facts, or the exception it raised.

    Returns:
        Warnings (a different jupyter-repro version).

    Raises:
        ReproError: a worker cannot import jupyter_repro, lacks the kernelspec, or cannot
            use the tracking store (:func:`store_reachable`).
    """
    from .. import __version__

    warnings = []
    for address, fact in sorted(facts.items()):
        if isinstance(fact, BaseException):
            raise ReproError(
                f"dask worker {address} cannot run jupyter-repro "
                f"({type(fact).__name__}: {fact}); install jupyter-repro {__version__} "
                "in every worker's environment"
            )
        if kernel not in fact["kernels"]:
            raise ReproError(
                f"dask worker {address} has no kernel named '{kernel}' "
                f"(it has: {', '.join(fact['kernels']) or 'none'})"
            )
        if fact["version"] != __version__:
            warnings.append(
                f"dask worker {address} runs jupyter-repro {fact['version']}, "
                f"this client {__version__}"
            )
        if fact.get("store"):
            raise ReproError(
                f"dask worker {address} ({fact['host']}) cannot use the tracking store: "
                f"{fact['store']}; use a tracking server every worker reaches "
                "(jupyter-repro server --host 0.0.0.0; --tracking-uri http://HOST:PORT)"
            )
    return warnings


def _refused_at_once(scheduler: str) -> None:
    """Fail at once (not after ``--connect-timeout``) when a ``tcp://`` scheduler address
    is malformed or its host actively refuses the connection.

    Raises:
        ReproError: the address has no valid port, or nothing listens there.
    """
    if not scheduler.startswith("tcp://"):
        return
    host, _, port = scheduler[len("tcp://") :].rstrip("/").rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ReproError(f"--scheduler {scheduler}: expected tcp://HOST:PORT")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=5):
            return
    except ConnectionRefusedError:
        raise ReproError(
            f"cannot reach the dask scheduler at {scheduler}: connection refused "
            "(is `dask scheduler` running there?)"
        ) from None
    except OSError:
        return  # unknown host, filtered port, slow network: let distributed try and time out


class DaskExecutor:
    """Runs on a dask.distributed cluster: an existing scheduler, or a ``LocalCluster``.

    Args:
        scheduler: ``tcp://HOST:PORT`` of a running scheduler; None starts a
            ``LocalCluster`` of ``jobs`` worker processes with one thread each.
        jobs: workers of the LocalCluster (ignored with a scheduler).
        batch_id: the batch whose runs :meth:`stop` stops on every worker.
        payload: files to ship with every run, or None (``--shared-fs``).
        connect_timeout: seconds to wait for the scheduler and for a first worker.

    Raises:
        ReproError: the scheduler cannot be reached or has no workers.
    """

    #: A task whose worker died is run again by the scheduler: runs look for their
    #: earlier attempts first (``RunSpec.check_attempts``).
    reruns_lost_runs: ClassVar[bool] = True

    def __init__(
        self,
        scheduler: str | None,
        jobs: int,
        batch_id: str,
        payload: Payload | None,
        connect_timeout: float = CONNECT_TIMEOUT,
    ) -> None:
        from distributed import Client, LocalCluster

        self.batch_id = batch_id
        self.scheduler = scheduler
        self.cluster = None
        self._lock = threading.Lock()
        self._dask: dict[cf.Future, Any] = {}  # our future -> the dask future behind it
        if scheduler:
            _refused_at_once(scheduler)
            try:
                self.client = Client(scheduler, timeout=connect_timeout)
            except (OSError, TimeoutError, ValueError, TypeError) as exc:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise ReproError(f"cannot reach the dask scheduler at {scheduler}: {first}")
        else:
            # Its worker processes must not die of the user's Ctrl-C (it reaches the whole
            # process group): they inherit an ignored SIGINT, as the local pool's do, and
            # the batch stops their runs itself and collects their KILLED results.
            main = threading.current_thread() is threading.main_thread()
            previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if main else None
            try:
                self.cluster = LocalCluster(
                    n_workers=max(1, jobs),
                    threads_per_worker=1,
                    processes=True,
                    host="127.0.0.1",
                    dashboard_address="127.0.0.1:0",  # None still binds :8787 (and warns)
                    silence_logs=logging.ERROR,
                )
            finally:
                if main:
                    signal.signal(signal.SIGINT, previous)
            self.client = Client(self.cluster)
        try:
            self.client.wait_for_workers(1, timeout=connect_timeout)
        except (OSError, TimeoutError):
            self.close()
            raise ReproError(
                f"the dask scheduler at {scheduler} has no workers "
                f"(none joined within {connect_timeout:g}s)"
            )
        self._stopping = False
        self.payload = payload
        # A small payload travels inside each task: no dependency, so dask places runs on
        # idle workers (a dependency held by one worker draws every run to it, and with
        # one thread they would queue there), and a rerun after a worker death carries it.
        # A large one is sent once as the result of a task (not scattered: the scheduler
        # keeps the task and recomputes a copy lost with a dead worker) and replicated to
        # every worker, for the same placement reason.
        self.payload_future: Any = payload
        if payload is not None and payload.size > INLINE_PAYLOAD_BYTES:
            self.payload_future = self.client.submit(_hold, payload, pure=False)
            self.payload_future.result()
            self.client.replicate([self.payload_future])

    # --- choosing and describing this executor (see executors.Executor) ---------------

    @classmethod
    def check_options(cls, options: BatchOptions) -> list[str]:
        """A warning when ``-j`` is given with ``--scheduler`` (the cluster decides)."""
        if options.scheduler and options.jobs is not None:
            return [
                f"-j {options.jobs} is ignored with --scheduler: the cluster's workers and "
                "their threads decide how many runs go at once"
            ]
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
        """One LocalCluster worker per core."""
        return os.cpu_count() or 1

    @classmethod
    def create(
        cls, options: BatchOptions, notebook: Path, batch_id: str, jobs: int
    ) -> DaskExecutor:
        """Connect to ``options.scheduler`` (or start a LocalCluster of ``jobs`` workers),
        shipping the notebook and ``options.data`` unless ``options.shared_fs``.

        Raises:
            ReproError: an input cannot be read, or the cluster cannot be used.
        """
        payload = None if options.shared_fs else build_payload(notebook, options.data)
        return cls(options.scheduler, jobs, batch_id, payload, options.connect_timeout)

    def describe(self, runs: int) -> str:
        """``dask: N run(s) on W worker(s) at ADDRESS; shipping F file(s), S MB``."""
        workers = len(self.client.scheduler_info().get("workers", {}))
        payload = self.payload
        shipped = (
            f"shipping {len(payload.files)} file(s), {payload.size / 1e6:.1f} MB"
            if payload is not None
            else "shared file system"
        )
        return f"dask: {runs} run(s) on {workers} worker(s) at {self.address}; {shipped}"

    @property
    def address(self) -> str:
        """The scheduler's address."""
        return self.client.scheduler.address

    def check(self, uri: str, kernel: str) -> list[str]:
        """Ask every worker what it can run and whether it reaches the store
        (:func:`worker_facts`) before any run exists.

        Returns warnings; raises :class:`ReproError` as :func:`judge_workers` does.
        """
        import secrets

        from ..provenance.store import sqlite_path

        probe = None
        target = sqlite_path(uri) if uri.startswith("sqlite:") else None
        if target is None and uri.startswith("file:"):
            from urllib.parse import urlparse

            target = Path(urlparse(uri).path) / "x"
        if target is not None:
            target.parent.mkdir(parents=True, exist_ok=True)
            probe_file = target.parent / f".jrepro-probe-{self.batch_id}"
            probe = (str(probe_file), secrets.token_hex(16))
            probe_file.write_text(probe[1])
        try:
            facts = self.client.run(worker_facts, uri, probe, on_error="return")
        finally:
            if probe is not None:
                Path(probe[0]).unlink(missing_ok=True)
        return judge_workers(facts, kernel)

    # --- the Executor protocol -----------------------------------------------------

    def submit(self, fn: Callable[..., Any], *args: Any) -> cf.Future:
        """Run ``fn(*args)`` on some worker; the returned future holds its value."""
        ours: cf.Future = cf.Future()
        ours.set_running_or_notify_cancel()
        self._submit(ours, fn, args, resubmits=0)
        return ours

    def submit_run(self, spec: RunSpec) -> cf.Future:
        """Run one batch run on some worker (shipped files unless --shared-fs)."""
        ours: cf.Future = cf.Future()
        ours.set_running_or_notify_cancel()
        self._submit(ours, run_shipped, (spec, self.payload_future), resubmits=0)
        return ours

    def _submit(
        self,
        ours: cf.Future,
        fn: Callable[..., Any],
        args: tuple,
        resubmits: int,
    ) -> None:
        fut = self.client.submit(fn, *args, pure=False)
        with self._lock:
            self._dask[ours] = fut

        def done(f: Any) -> None:
            from distributed.scheduler import KilledWorker

            if ours.done():
                return
            try:
                if f.status == "finished":
                    result = f.result()
                    # Let go of it: a result still wanted when its worker dies is
                    # recomputed by the scheduler, which would run the notebook again.
                    with self._lock:
                        self._dask.pop(ours, None)
                    f.release()
                    ours.set_result(result)
                    return
                # A worker died with the task (dask gave up: KilledWorker) or with data it
                # needed (the task is cancelled though nobody asked): submit it once more.
                exc = f.exception() if f.status == "error" else cf.CancelledError()
                lost = isinstance(exc, KilledWorker) or (
                    f.status == "cancelled" and not self._stopping
                )
                if lost and resubmits == 0 and not self._stopping:
                    self._submit(ours, fn, args, resubmits=1)
                else:
                    ours.set_exception(exc)
            except BaseException as exc:  # the client is closing: the run is not known
                if not ours.done():
                    ours.set_exception(exc)

        fut.add_done_callback(done)

    def stop(self) -> None:
        """Stop this batch's runs on every worker: they end KILLED, with their results."""
        from .supervise import stop_runs

        self._stopping = True
        thread = threading.Thread(
            target=self.client.run,
            args=(stop_runs, self.batch_id, "batch interrupted (Ctrl-C/SIGTERM)"),
            kwargs={"on_error": "return"},
            daemon=True,
        )
        thread.start()
        thread.join(10.0)

    def cancel_pending(self) -> None:
        """Cancel runs no worker has started (started ones end through :meth:`stop`)."""
        self._stopping = True
        try:
            processing = {k for keys in self.client.processing().values() for k in keys}
        except Exception:
            processing = set()
        with self._lock:
            waiting = [f for f in self._dask.values() if not f.done() and f.key not in processing]
        if waiting:
            self.client.cancel(waiting)

    def kill(self) -> None:
        """Cancel every unfinished run and disconnect (tasks see it and kill their kernels)."""
        self._stopping = True
        with self._lock:
            unfinished = [f for f in self._dask.values() if not f.done()]
        try:
            if unfinished:
                self.client.cancel(unfinished, force=True)
        finally:
            self.close()

    def shutdown(self, cancel_pending: bool = False) -> None:
        """Wait for the runs (unless ``cancel_pending``) and disconnect; a LocalCluster ends."""
        if cancel_pending:
            self.cancel_pending()
        self.close()

    def close(self) -> None:
        """Disconnect from the scheduler; close the LocalCluster this executor started."""
        for thing in (self.client, self.cluster):
            if thing is None:
                continue
            try:
                thing.close()
            except Exception:  # closing must never hide the batch's own outcome
                continue
