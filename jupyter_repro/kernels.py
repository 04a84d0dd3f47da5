"""Kernels for runs: a fresh kernel for every run, started before the run needs it, and
reached over Unix sockets in a private folder where the platform has them.

Used by ``batch`` and ``tune`` (one :class:`KernelPool` per worker process) and by
``nb-smoke --mode kernel`` (:func:`new_manager` for its kernel). Three rules:

- **Fresh, never reused.** A kernel runs one notebook, then it is shut down. The pool
  keeps at most one *spare*: a kernel started ahead for the next run of the same
  kernelspec, working directory and environment, which has run no code of anyone's. A
  spare that does not fit the next run, or is not needed, is killed (it ran nothing).
- **No port races.** Kernels listen on IPC sockets (ZeroMQ ``ipc://``, Unix domain
  sockets) named after their connection file, in a folder only this user can enter
  (``tempfile.mkdtemp``, mode 0700): two kernels never compete for a name, unlike TCP
  ports picked free and bound later by another process (papermill issue #511, nbmake
  issue #129: "address already in use" at high parallelism). Where ZeroMQ has no IPC
  (Windows) or the socket path would be too long, kernels use TCP as before.
- **Nothing left behind.** Connection files and sockets are removed with the kernel
  (``KernelManager.cleanup_resources``), the folder with its owner (:meth:`KernelPool.close`).
  Every kernel is a child subreaper of what the notebook starts, and what the notebook
  left running is killed before the kernel shuts down (field case G12).

A pre-started kernel cannot have the run's own environment variables at launch (the
MLflow run id exists only once the run is opened): :data:`LATE_ENV_CODE` sets them with one
silent request (``silent=True, store_history=False``: no execution count, no history, no
output) before the first cell, for Python kernels only; other kernels are never pre-started.
"""

from __future__ import annotations

import contextlib
import functools
import os
import secrets
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

from .processes import die_with_parent, kill_children, subreaper_preexec

#: nbclient (papermill, nbconvert, nbmake) starts IPython kernels with this argument.
HISTORY_ARGS = ["--HistoryManager.hist_file=:memory:"]

#: A Unix socket path holds at most 108 bytes on Linux and 104 on macOS (``sun_path``).
MAX_SOCKET_PATH = 100

#: Prefix of a :class:`KernelFolder` (short: the IPC socket paths in it must fit
#: :data:`MAX_SOCKET_PATH`, also nested in a batch's own temp folder).
FOLDER_PREFIX = "jrk-"

#: IPC sockets a kernel opens (shell, iopub, stdin, control, hb): jupyter_client's
#: ``write_connection_file`` numbers them ``<connection file stem>-ipc-1`` .. ``-ipc-5``
#: (skipping names that exist; a connection file's stem is unique in its folder).
IPC_CHANNELS = 5

#: How long :meth:`KernelPool.close` waits for a spare's launch under way (seconds).
CLOSE_WAIT = 60.0

#: The silent request that gives a pre-started Python kernel the run's own variables.
LATE_ENV_CODE = "import os as _jr_os\n_jr_os.environ.update({env})\ndel _jr_os\n"


def ipc_supported(folder: str) -> bool:
    """Whether kernels with connection files in ``folder`` can use IPC sockets: not on
    Windows, ZeroMQ built with ``ipc``, and the longest socket path fits ``sun_path``."""
    if sys.platform == "win32":
        return False
    import zmq

    if not zmq.has("ipc"):
        return False
    longest = os.path.join(folder, f"{_stem('0' * 8)}-ipc-{IPC_CHANNELS}")
    return len(longest.encode()) <= MAX_SOCKET_PATH


def _stem(tag: str) -> str:
    """A kernel's file name stem in its folder: ``k-<8 hex>`` (connection file
    ``k-<8 hex>.json``, sockets ``k-<8 hex>-ipc-<n>``, stderr ``k-<8 hex>.stderr``)."""
    return f"k-{tag}"


class KernelFolder:
    """A private folder (mode 0700) for kernels' connection files, IPC sockets and stderr.

    Attributes:
        path: the folder, created at once under ``parent`` (the temp dir when None), with
            an owner record: the next folder made there removes it once its owner is
            gone (:func:`~jupyter_repro.processes.remove_stale_folders`).
        ipc: whether kernels here use IPC transport (:func:`ipc_supported`), else TCP.
    """

    def __init__(self, parent: str | None = None) -> None:
        from .processes import remove_stale_folders, write_owner

        # a folder whose owner was SIGKILLed (a dask worker, nb-smoke's worker) is
        # removed by the next one made beside it
        remove_stale_folders(FOLDER_PREFIX, parent)
        self.path = tempfile.mkdtemp(prefix=FOLDER_PREFIX, dir=parent)
        write_owner(self.path)
        self.ipc = ipc_supported(self.path)
        self._issued: set[str] = set()
        self._lock = threading.Lock()

    def new_connection_file(self) -> str:
        """A connection file path in the folder no other kernel of it was given:
        ``<path>/k-<8 hex>.json`` (short, so IPC socket paths fit ``sun_path``)."""
        with self._lock:
            while True:
                stem = _stem(secrets.token_hex(4))
                if stem not in self._issued:
                    self._issued.add(stem)
                    return os.path.join(self.path, f"{stem}.json")

    def remove(self) -> None:
        """Delete the folder and whatever is left in it; never raises."""
        shutil.rmtree(self.path, ignore_errors=True)


#: Seconds :func:`client_class`'s readiness check waits for the IOPub status of its own
#: ``kernel_info`` request before asking again (jupyter_client waits 0.2 s, then 0.2 s more).
IOPUB_CHECK = 0.2


@functools.cache
def client_class() -> type:
    """``RunKernelClient``: jupyter_client's ``AsyncKernelClient`` whose
    ``wait_for_ready`` ends as soon as the kernel is reachable on both channels.

    jupyter_client's own ends with "flush IOPub": it returns only after IOPub has been
    silent for 0.2 s, a fixed 0.2 s (and usually 0.4 s) on every kernel start that
    nbclient, so papermill, pays for each notebook. Here the kernel is ready when it
    replied to ``kernel_info`` on shell and IOPub is live: the kernel's welcome to this
    subscriber arrived (JEP 65, ipykernel >= 7) or its IOPub status for *that* request
    did; what IOPub holds by then is drained without waiting. A reply without its status (subscription
    not live yet) asks again, as jupyter_client does.
    """
    import time
    from queue import Empty

    from jupyter_client.asynchronous import AsyncKernelClient

    class RunKernelClient(AsyncKernelClient):
        async def _async_wait_for_ready(self, timeout: float | None = None) -> None:
            deadline = time.monotonic() + (float("inf") if timeout is None else timeout)
            while True:
                request = self.kernel_info()
                if await self._reply_and_status(request, deadline):
                    break
                if not await self._async_is_alive():
                    raise RuntimeError("Kernel died before replying to kernel_info")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"Kernel didn't respond in {timeout:g} seconds")
            while True:  # drain what IOPub already holds, without waiting
                try:
                    await self.iopub_channel.get_msg(timeout=0)
                except Empty:
                    return

        # AsyncKernelClient binds the name to the base class's function
        wait_for_ready = _async_wait_for_ready

        async def _reply_and_status(self, request: str, deadline: float) -> bool:
            replied = status = False
            wait_until = time.monotonic() + 1.0  # shell: ask again after 1 s, as upstream
            while not replied and time.monotonic() < min(wait_until, deadline):
                try:
                    msg = await self.shell_channel.get_msg(timeout=0.05)
                except Empty:
                    continue
                if msg["parent_header"].get("msg_id") == request and (
                    msg["msg_type"] == "kernel_info_reply"
                ):
                    replied = True
                    self._handle_kernel_info_reply(msg)
            if not replied:
                return False
            wait_until = time.monotonic() + IOPUB_CHECK
            while not status and time.monotonic() < wait_until:
                try:
                    msg = await self.iopub_channel.get_msg(timeout=0.02)
                except Empty:
                    continue
                # ipykernel >= 7 greets each new IOPub subscriber (JEP 65, "iopub_welcome")
                status = msg["msg_type"] == "iopub_welcome" or (
                    msg["parent_header"].get("msg_id") == request
                    and msg["msg_type"] == "status"
                    and msg["content"].get("execution_state") == "idle"
                )
            return status

    return RunKernelClient


@functools.cache
def manager_class() -> type:
    """``RunKernelManager``: an ``AsyncKernelManager`` whose kernel starts with the
    ``launch_cwd``, ``launch_env`` and ``stderr_path`` set on the instance (nothing
    process-wide changes, so runs can share a process), as a child subreaper, and whose
    shutdown first kills what the notebook left running (field case G12)."""
    from jupyter_client import AsyncKernelManager
    from jupyter_client.provisioning import LocalProvisioner
    from traitlets import default

    class RunKernelManager(AsyncKernelManager):
        launch_cwd: str | None = None
        launch_env: dict[str, str] = {}  # noqa: RUF012 - replaced per instance
        stderr_path: str | None = None
        die_with_parent = False  # SIGKILL when the process that launched it dies
        template: KernelTemplate | None = None  # fork it from there where it fits
        forked = False  # its kernel was forked from the template
        # defer_exit: a graceful shutdown_kernel() asks the kernel to exit and returns;
        # finish_exit() waits for the exit (and cleans up) later, so that the caller's
        # own work overlaps the kernel's exit (atexit handlers, interpreter teardown)
        defer_exit = False
        exit_pending = False

        @default("client_factory")
        def _client_factory_default(self) -> type:
            return client_class()

        @property
        def pid(self) -> int | None:
            """The kernel's process id once launched, else None."""
            pid = getattr(self.provisioner, "pid", None)
            return pid if isinstance(pid, int) else None

        async def _async_launch_kernel(self, kernel_cmd: list[str], **kw: Any) -> None:
            kw["env"] = {**(kw.get("env") or os.environ), **self.launch_env}
            if self.launch_cwd is not None:
                kw["cwd"] = self.launch_cwd
            template = self.template
            if (
                template is not None
                and isinstance(self.provisioner, LocalProvisioner)
                and template.fits(kernel_cmd, kw["env"], self.launch_env)
            ):
                try:
                    pid = template.fork(
                        kernel_cmd,
                        kw.get("cwd") or os.getcwd(),
                        kw["env"],
                        self.stderr_path,
                        self.die_with_parent,
                    )
                except TemplateError:
                    pass  # started as a new process below
                else:
                    provisioner = self.provisioner
                    provisioner.process = ForkedProcess(pid)
                    provisioner.pid = provisioner.pgid = pid  # its own session
                    provisioner.cwd = kw.get("cwd") or os.getcwd()
                    self.forked = True
                    self._reconcile_connection_info(provisioner.connection_info)
                    return
            # The kernel inherits the orphans of everything the notebook starts (a
            # process in its own session whose parent exited, field case G12), so they
            # stay in its tree: shutdown_kernel and kill_kernel kill them with it.
            kw["preexec_fn"] = _preexec(self.die_with_parent)
            if self.stderr_path is None:
                await super()._async_launch_kernel(kernel_cmd, **kw)
            else:
                with open(self.stderr_path, "ab") as err:
                    kw["stderr"] = err
                    await super()._async_launch_kernel(kernel_cmd, **kw)

        async def _async_finish_shutdown(
            self, waittime: float | None = None, pollinterval: float = 0.01, restart: bool = False
        ) -> None:
            # jupyter_client polls every 0.1 s whether the kernel exited: every run
            # waited 0.05 s on average after its kernel was gone
            await super()._async_finish_shutdown(waittime, pollinterval, restart)

        async def shutdown_kernel(self, now: bool = False, restart: bool = False) -> None:
            # The notebook is done: what it left running (children, detached grandchildren
            # re-parented to the kernel) goes first, then the kernel shuts down as usual.
            if self.pid is not None and not restart:
                kill_children(self.pid)
            if not (now or restart) and self.has_kernel:
                # graceful, without jupyter_client's SIGINT first: the notebook is done
                # (the kernel is idle; a stop or a deadline kills it instead), and the
                # interrupt only put "KeyboardInterrupt caught in kernel" in its stderr,
                # in some runs and not others
                self.shutting_down = True
                self.stop_restarter()
                await self._async_request_shutdown()
                if self.defer_exit:
                    self.exit_pending = True
                    return
                try:
                    await self._async_finish_shutdown()
                finally:
                    await super()._async_cleanup_resources()
                return
            await super()._async_shutdown_kernel(now=now, restart=restart)

        async def cleanup_resources(self, restart: bool = False) -> None:
            if self.exit_pending:
                return  # finish_exit() removes them once the kernel is gone
            await super()._async_cleanup_resources(restart=restart)

        async def finish_exit(self) -> None:
            """Wait for the exit a deferred shutdown asked for (SIGTERM, then SIGKILL,
            after ``shutdown_wait_time`` as jupyter_client does), then remove the
            connection file and sockets; a no-op when no exit is pending."""
            if not self.exit_pending:
                return
            self.exit_pending = False
            try:
                await self._async_finish_shutdown()
            finally:
                await super()._async_cleanup_resources()

    return RunKernelManager


def read_at_start(name: str) -> bool:
    """Whether environment variable ``name`` is read as a process starts, by the Python
    interpreter (``PYTHON*``, ``HOME`` for the user site, locale, ``TZ``, ``PATH``) or
    the dynamic loader and libc (``LD_*``, ``MALLOC_*``, ``GLIBC_TUNABLES``): a fork
    keeps the template's effect of it, whatever its own value."""
    return name.startswith(("PYTHON", "LC_", "LD_", "MALLOC_", "GLIBC_")) or name in (
        "LANG",
        "LANGUAGE",
        "TZ",
        "PATH",
        "HOME",
    )


#: Read by ipykernel as it is imported, set right in each forked kernel by the template.
PER_KERNEL_VARIABLES = frozenset({"JPY_PARENT_PID"})


class TemplateError(RuntimeError):
    """The kernel template cannot fork a kernel (it died, or is not single-threaded)."""


class ForkedProcess:
    """The part of :class:`subprocess.Popen` jupyter_client's ``LocalProvisioner`` uses
    (``pid``, ``poll``, ``wait``, ``send_signal``, ``kill``, ``terminate``), for a kernel
    forked by a :class:`KernelTemplate`: the template's child, not this process's, so
    its exit status is not known here (``returncode`` is ``-signal`` after this object
    sent a signal, else 0 once the process is gone)."""

    stdin = stdout = stderr = None

    def __init__(self, pid: int) -> None:
        import psutil

        self.pid = pid
        self.returncode: int | None = None
        self._sent = 0
        try:
            self._proc: Any = psutil.Process(pid)  # its start time guards against pid reuse
        except psutil.NoSuchProcess:
            self._proc = None
            self.returncode = 0

    def poll(self) -> int | None:
        """None while the kernel runs (a zombie the template has not reaped has ended)."""
        import psutil

        if self.returncode is None:
            try:
                ended = not self._proc.is_running() or self._proc.status() == psutil.STATUS_ZOMBIE
            except psutil.Error:
                ended = True
            if ended:
                self.returncode = -self._sent if self._sent else 0
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        """Block until the kernel is gone; ``subprocess.TimeoutExpired`` after ``timeout``."""
        import subprocess
        import time

        deadline = None if timeout is None else time.monotonic() + timeout
        while (code := self.poll()) is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(["kernel", str(self.pid)], timeout or 0)
            time.sleep(0.02)
        return code

    def send_signal(self, sig: int) -> None:
        """Signal the kernel, unless it is gone."""
        if self.poll() is None:
            self._sent = sig
            os.kill(self.pid, sig)

    def kill(self) -> None:
        """SIGKILL the kernel."""
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        """SIGTERM the kernel."""
        self.send_signal(signal.SIGTERM)


#: The template process's script (run by path, never imported into this process).
TEMPLATE_SCRIPT = os.path.join(os.path.dirname(__file__), "_kernel_template.py")

#: Seconds :meth:`KernelTemplate.fork` waits for the template (its imports included).
TEMPLATE_WAIT = 120.0

#: Templates a :class:`KernelPool` starts again for one interpreter after one died,
#: before it starts its kernels as new interpreters only.
TEMPLATE_RESTARTS = 3


class KernelTemplate:
    """A process that has imported what an IPython kernel imports, and nothing else, and
    forks fresh kernels on request (``_kernel_template.py``): a kernel is up in a tenth of
    the time and CPU a new interpreter takes (``benchmarks/kernel_start.py``).

    Each forked kernel is a new process that ran no code of anyone's, like a kernel
    started as ``python -m ipykernel_launcher``: own session, working directory,
    environment, ``sys.argv``, ``sys.path[0]``; ``random`` re-seeded. What it shares with
    the template is what an interpreter fixes as it starts: the string-hash seed
    (``PYTHONHASHSEED``), so runs forked from one template iterate sets of strings in the
    same order; the environment the interpreter, the dynamic loader and ipykernel's
    imports read at start (so a kernel is forked only where its environment equals the
    template's but for the variables the run itself adds: :meth:`fits`); and ``sys.path``
    with the modules imported then (so a template whose ``sys.path`` folders changed, a
    package installed, is replaced: :meth:`stale`). ``--no-fork-kernels`` (``batch``,
    ``tune``) starts every kernel as a new interpreter instead.

    Args:
        python: the kernelspec's interpreter (``argv[0]``).
        env: the template's environment (this process's, usually).
        folder: the kernel folder, named on the template's command line (``ps``).

    The template exits when its stdin closes: when :meth:`close` is called, or when this
    process ends, even by SIGKILL; kernels forked with ``die`` end with it.
    """

    def __init__(self, python: str, env: dict[str, str], folder: str) -> None:
        import subprocess

        read, write = os.pipe()
        try:
            self.proc = subprocess.Popen(
                [python, TEMPLATE_SCRIPT, str(write), folder],
                stdin=subprocess.PIPE,
                pass_fds=(write,),
                env=env,
                close_fds=True,
            )
        except BaseException:
            os.close(read)
            raise
        finally:
            os.close(write)
        self._replies = os.fdopen(read, "r")
        self.python = python
        self.env = dict(env)
        #: the template died or failed to answer (a new one may do better)
        self.broken = False
        #: this interpreter cannot be forked safely (a thread at start-up, the whole
        #: environment read or written by an import): no template for it again
        self.unforkable = False
        self._ready: dict[str, Any] | None = None  # the template's first line
        self._path_times: dict[str, int | None] = {}
        self._lock = threading.Lock()

    def fits(self, cmd: list[str], env: dict[str, str], own: Iterable[str] = ()) -> bool:
        """Whether a kernel launched as ``cmd`` with ``env`` can be forked from here: the
        same interpreter run as ``-m ipykernel_launcher``, and ``env`` equal to the
        template's except the variables in ``own`` (what the run adds: its MLflow
        variables, a trial's) and ``JPY_PARENT_PID``; none of those read by the
        template's imports (their value stays the template's in a fork). Any other
        difference (a kernelspec's ``env``: ``LD_LIBRARY_PATH``, ``PYTHONPATH``, ...)
        starts a new interpreter. Blocks until the template has imported ipykernel."""
        if (
            self.broken
            or len(cmd) < 3
            or cmd[0] != self.python
            or cmd[1:3] != ["-m", "ipykernel_launcher"]
        ):
            return False
        try:
            hello = self._hello()
        except TemplateError:
            return False
        allowed = {k for k in own if not read_at_start(k)} | PER_KERNEL_VARIABLES
        differ = {k for k in env.keys() | self.env.keys() if env.get(k) != self.env.get(k)}
        read = set(hello["read"]) - PER_KERNEL_VARIABLES
        return differ <= allowed and not (differ & read)

    def stale(self) -> bool:
        """Whether a ``site-packages`` folder of the template's ``sys.path`` changed since
        it started (a package installed or removed, a ``.pth`` file added): a new
        interpreter would see it, a fork would not, so the template must be replaced. A
        few ``stat`` calls."""
        if self._ready is None:
            return False
        return any(_mtime(path) != seen for path, seen in self._path_times.items())

    def _hello(self) -> dict[str, Any]:
        import json

        with self._lock:
            if self._ready is None:
                try:
                    hello = json.loads(self._reply())
                    if hello.get("threads") != 1 or "*" in hello.get("read", {}):
                        self.unforkable = True
                        raise TemplateError(
                            "the interpreter cannot be forked safely: "
                            f"{hello.get('threads')} threads, environment "
                            f"{'read whole' if '*' in hello.get('read', {}) else 'read in part'}"
                        )
                except (OSError, ValueError, TemplateError) as exc:
                    self.broken = True
                    raise TemplateError(f"kernel template: {exc}") from exc
                self._ready = hello
                # where .pth files and installed packages live (sys.path's other folders
                # are read at import time, by forks too)
                self._path_times = {
                    p: _mtime(p)
                    for p in hello.get("path", [])
                    if os.path.basename(p) in ("site-packages", "dist-packages")
                }
            return self._ready

    def fork(
        self, cmd: list[str], cwd: str, env: dict[str, str], stderr: str | None, die: bool
    ) -> int:
        """Fork a kernel running ``cmd`` (which :meth:`fits`) in ``cwd`` with ``env``, its
        stderr appended to file ``stderr``, a child subreaper (field case G12), SIGKILLed
        when the template ends if ``die``. Returns its pid.

        Raises:
            TemplateError: the template died, or has a thread (forking it is unsafe).
        """
        import json

        request = {
            "args": cmd[3:],
            "cwd": cwd,
            "env": {**env, "JPY_PARENT_PID": str(self.proc.pid)},
            "stderr": stderr,
            "die": die,
            "subreaper": sys.platform.startswith("linux"),
        }
        self._hello()
        with self._lock:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write(json.dumps(request).encode() + b"\n")
                self.proc.stdin.flush()
                return int(json.loads(self._reply())["pid"])
            except (OSError, ValueError, KeyError, TemplateError) as exc:
                self.broken = True
                raise TemplateError(f"kernel template: {exc}") from exc

    def _reply(self) -> str:
        import select

        ready, _, _ = select.select([self._replies], [], [], TEMPLATE_WAIT)
        line = self._replies.readline() if ready else ""
        if not line:
            raise TemplateError("no answer (the template died or hangs)")
        return line

    def close(self) -> None:
        """End the template (its kernels forked with ``die`` end with it); never raises."""
        self.broken = True
        with contextlib.suppress(OSError, ValueError):
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        try:
            self.proc.wait(timeout=5)
        except Exception:
            with contextlib.suppress(OSError):
                self.proc.kill()
            with contextlib.suppress(Exception):
                self.proc.wait(timeout=5)
        with contextlib.suppress(OSError):
            self._replies.close()


def _mtime(path: str) -> int | None:
    """``st_mtime_ns`` of ``path``, None when it cannot be read (a missing folder)."""
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None


def transport_options(folder: KernelFolder) -> dict[str, str]:
    """``KernelManager`` options for a kernel whose connection file (and IPC sockets,
    named after it, ``<file>-ipc-<n>``) go in ``folder``: IPC where the folder allows it
    (:attr:`KernelFolder.ipc`), else TCP on ports jupyter_client picks."""
    return {
        "transport": "ipc" if folder.ipc else "tcp",
        "connection_file": folder.new_connection_file(),
    }


def _preexec(die: bool) -> Callable[[], None] | None:
    """The kernel's ``preexec_fn``: a child subreaper, and with ``die`` killed when its
    launcher dies (``PR_SET_PDEATHSIG``; Linux, else nothing)."""
    steps = [
        f for f in (subreaper_preexec(), die_with_parent(signal.SIGKILL) if die else None) if f
    ]
    if not steps:
        return None

    def run() -> None:
        for step in steps:
            step()

    return run


def new_manager(
    kernel_name: str,
    folder: KernelFolder,
    cwd: str | None = None,
    env: dict[str, str] | None = None,
    *,
    stderr: bool = True,
) -> Any:
    """A ``RunKernelManager`` (not started) for kernelspec ``kernel_name`` whose
    connection file (and IPC sockets, when ``folder.ipc``) go in ``folder``, started in
    ``cwd`` with ``env`` added to this process's environment, its stderr in a file of
    the folder when ``stderr`` (``.stderr_path``).

    Raises:
        jupyter_client.kernelspec.NoSuchKernel: no kernelspec ``kernel_name``.
    """
    options = transport_options(folder)
    km = manager_class()(kernel_name=kernel_name, **options)
    name = os.path.splitext(options["connection_file"])[0]
    km.launch_cwd = cwd
    km.launch_env = dict(env or {})
    km.stderr_path = f"{name}.stderr" if stderr else None
    return km


def start(km: Any) -> None:
    """Launch ``km``'s kernel (returns once the process exists, not once it is ready),
    with the arguments nbclient would give it."""
    from jupyter_core.utils import run_sync

    run_sync(km.start_kernel)(extra_arguments=list(HISTORY_ARGS) if km.ipykernel else [])


def forked(km: Any) -> bool:
    """Whether ``km``'s kernel was forked from a :class:`KernelTemplate`."""
    return bool(getattr(km, "forked", False))


def discard(km: Any) -> None:
    """Kill a kernel that will run nothing (and what it started), remove its connection
    file, sockets and stderr file; never raises. A kernel asked to exit (deferred) is
    given its exit first (:meth:`RunKernelManager.finish_exit`)."""
    from jupyter_core.utils import run_sync

    with contextlib.suppress(Exception):
        if getattr(km, "exit_pending", False):
            run_sync(km.finish_exit)()
    with contextlib.suppress(Exception):
        if km.has_kernel and _alive(km):  # a dead one (nbclient's, killed) only has files
            run_sync(km.shutdown_kernel)(now=True)
    with contextlib.suppress(Exception):
        run_sync(km.cleanup_resources)()
    if km.stderr_path:
        with contextlib.suppress(OSError):
            os.unlink(km.stderr_path)


def is_python_ipykernel(km: Any) -> bool:
    """Whether ``km``'s kernelspec is a Python kernel run by ipykernel (only those are
    pre-started: :data:`LATE_ENV_CODE` is Python)."""
    try:
        spec = km.kernel_spec
    except Exception:
        return False
    argv = " ".join(getattr(spec, "argv", None) or [])
    return (getattr(spec, "language", "") or "").lower() == "python" and "ipykernel" in argv


def late_env_code(env: dict[str, str]) -> str:
    """The code of the silent request that adds ``env`` to a running Python kernel's
    ``os.environ`` (so to what it starts, too)."""
    # repr, not json.dumps: JSON writes a character outside the BMP (an emoji) as two
    # \\u escapes, which Python reads as two lone surrogates that os.environ cannot
    # encode (UnicodeEncodeError in the kernel); repr round-trips every str, and escapes
    # the lone surrogates of undecodable bytes (surrogateescape) so the request is UTF-8
    return LATE_ENV_CODE.format(env=repr({str(k): str(v) for k, v in env.items()}))


class Taken(NamedTuple):
    """A kernel :meth:`KernelPool.take` gave a run.

    Attributes:
        km: the started ``RunKernelManager``.
        late_env: variables still to set in it (:func:`late_env_code`): empty for a
            kernel started now (it had them at launch), the run's own for the spare.
        spare: whether it is the pre-started spare (so the next run's is not started yet).
    """

    km: Any
    late_env: dict[str, str]
    spare: bool


class KernelPool:
    """Started kernels for the runs of one process, each used for one run only.

    :meth:`take` gives a run its kernel: the spare when it was started for the same
    kernelspec, working directory and launch environment (and is alive), else a new one
    started now. :meth:`prestart` starts the spare for the next run. At most one spare
    exists; :meth:`close` kills it and removes the folder. Thread-safe: the spare is
    handed out only once its launch returned, and a spare whose launch is under way when
    :meth:`drop_spare` or :meth:`close` is called (the batch-watch thread) is killed as
    soon as the launch returns; :meth:`close` waits for that (:data:`CLOSE_WAIT` seconds
    at most).

    Args:
        folder: where connection files, sockets and stderr files go.
        warm: whether :meth:`prestart` starts spares at all.
        die_with_owner: kernels get ``PR_SET_PDEATHSIG`` (SIGKILL when the thread that
            started them ends): for a process whose runs all start in its main thread,
            so its kernels, the spare included, die with it even when it is SIGKILLed.
        fork: Python ipykernel kernels are forked from a :class:`KernelTemplate` (one
            per interpreter, started at the first kernel) where it :meth:`~KernelTemplate.fits`,
            else started as new processes.
    """

    def __init__(
        self,
        folder: KernelFolder,
        warm: bool = True,
        die_with_owner: bool = False,
        fork: bool = False,
    ) -> None:
        self.folder = folder
        self.warm = warm
        self.die_with_owner = die_with_owner
        self.fork = fork
        self._templates: dict[str, KernelTemplate] = {}
        self._no_template: set[str] = set()  # interpreters never to fork from
        self._restarts: dict[str, int] = {}
        self.closed = False
        self._spare: tuple[tuple[Any, ...], Any] | None = None
        self._lock = threading.Lock()
        self._launch_done = threading.Condition(self._lock)
        self._launching: Any = None  # the spare being launched, not yet handed out
        self._launcher: int | None = None  # the thread launching it
        self._drop_launch = False  # dropped while launching: killed once launched

    @staticmethod
    def _key(kernel_name: str, cwd: str, env: dict[str, str]) -> tuple[Any, ...]:
        return (kernel_name, cwd, tuple(sorted(env.items())))

    def take(
        self,
        kernel_name: str,
        cwd: str,
        env: dict[str, str],
        late_env: dict[str, str],
        cold: bool = False,
    ) -> Taken:
        """A started kernel for one run, and the variables still to set in it.

        Args:
            env: variables every run with this key shares (given at launch).
            late_env: this run's own variables: given at launch to a kernel started now;
                returned for a spare, which gets them by :func:`late_env_code` before the
                first cell.
            cold: start a kernel now even when the spare fits (a retry after the spare
                failed: the spare stays for the next run).

        Returns:
            :class:`Taken`: the kernel, variables still to set (empty or ``late_env``),
            and whether it is the spare.

        Raises:
            RuntimeError: the pool is closed. Whatever ``start_kernel`` raises.
        """
        key = self._key(kernel_name, cwd, env)
        with self._lock:
            if self.closed:
                raise RuntimeError("kernel pool closed")
            spare = None
            if not cold:
                spare, self._spare = self._spare, None
        if spare is not None:
            if spare[0] == key and _alive(spare[1]):
                return Taken(spare[1], dict(late_env), True)
            discard(spare[1])
        km = new_manager(kernel_name, self.folder, cwd, {**env, **late_env})
        km.die_with_parent = self.die_with_owner
        km.template = self.template_for(km)
        try:
            start(km)
        except BaseException:
            discard(km)  # its connection file was written before the launch failed
            raise
        return Taken(km, {}, False)

    async def prestart(self, kernel_name: str, cwd: str, env: dict[str, str]) -> None:
        """Start the spare for the next run of this key (no-op when not :attr:`warm`,
        closed, a spare exists, or the kernel is not a Python ipykernel). Never raises:
        a kernel that cannot start now is started again by the run that needs it.

        A coroutine of the event loop the runs' kernels use (nbclient's, in the thread
        that runs them: ``jupyter_core.utils.run_sync`` from outside it).
        """
        if not self.warm:
            return
        with self._lock:
            if self.closed or self._spare is not None or self._launching is not None:
                return
            try:
                km = new_manager(kernel_name, self.folder, cwd, env)
            except Exception:
                return
            if not is_python_ipykernel(km):
                return
            km.die_with_parent = self.die_with_owner
            km.template = self._template_locked(km)
            self._launching, self._launcher = km, threading.get_ident()
            self._drop_launch = False
        keep = False
        try:
            await km.start_kernel(extra_arguments=list(HISTORY_ARGS) if km.ipykernel else [])
            keep = True
        except Exception:
            pass
        finally:
            with self._lock:
                keep = keep and not (self.closed or self._drop_launch)
                if keep:
                    self._spare = (self._key(kernel_name, cwd, env), km)
                self._launching = self._launcher = None
                self._launch_done.notify_all()
            if not keep:
                discard(km)

    def prepare_template(self, python: str) -> None:
        """Start the template for interpreter ``python`` now (its imports then overlap
        with whatever this process does before its first run); no-op unless :attr:`fork`."""
        with self._lock:
            if self.fork and not self.closed and python not in self._templates:
                self._new_template(python)

    def _new_template(self, python: str) -> KernelTemplate | None:
        """A new template for ``python`` (lock held), or None: this interpreter cannot be
        forked, its template could not start, or died :data:`TEMPLATE_RESTARTS` times."""
        if python in self._no_template or self._restarts.get(python, 0) > TEMPLATE_RESTARTS:
            return None
        self._restarts[python] = self._restarts.get(python, 0) + 1
        try:
            template = KernelTemplate(python, dict(os.environ), self.folder.path)
        except OSError:
            self._no_template.add(python)
            return None
        self._templates[python] = template
        return template

    def template_for(self, km: Any) -> KernelTemplate | None:
        """The template ``km``'s kernel is forked from (started now if needed), or None:
        not :attr:`fork`, closed, or not a Python ipykernel kernelspec."""
        with self._lock:
            return self._template_locked(km)

    def _template_locked(self, km: Any) -> KernelTemplate | None:
        if not self.fork or self.closed or not is_python_ipykernel(km):
            return None
        python = km.kernel_spec.argv[0]
        major, minor = sys.version_info[:2]
        if python in {"python", f"python{major}", f"python{major}.{minor}"}:
            python = sys.executable  # as jupyter_client's format_kernel_cmd does
        template = self._templates.get(python)
        stale = template is not None and not template.broken and template.stale()
        if template is not None and (template.broken or stale):
            if template.unforkable:
                self._no_template.add(python)
            if stale:
                self._restarts[python] = 0  # replaced by design, not a failure
            del self._templates[python]
            template.close()  # its stdin closes: it exits at once
            template = None
        if template is None:
            template = self._new_template(python)
        return template

    def drop_spare(self) -> None:
        """Kill the spare, if any (a stop was requested: no further run needs it); one
        still launching is killed by :meth:`prestart` once its launch returns."""
        with self._lock:
            spare, self._spare = self._spare, None
            if self._launching is not None:
                self._drop_launch = True
        if spare is not None:
            discard(spare[1])

    def close(self) -> None:
        """Kill the spare and remove the folder; later :meth:`take` calls raise.

        A spare launching in another thread is waited for (:data:`CLOSE_WAIT` seconds at
        most) and killed, so no kernel outlives the pool and the folder is not removed
        under a launch.
        """
        with self._lock:
            self.closed = True
        self.drop_spare()
        with self._lock:
            if self._launcher != threading.get_ident():  # never wait for oneself
                self._launch_done.wait_for(lambda: self._launching is None, CLOSE_WAIT)
            templates, self._templates = list(self._templates.values()), {}
        for template in templates:
            template.close()
        self.folder.remove()


def _alive(km: Any) -> bool:
    from jupyter_core.utils import run_sync

    try:
        return bool(run_sync(km.is_alive)())
    except Exception:
        return False
