"""The running server: ``mlflow server``'s whole process tree, owned from start to stop.

``mlflow server`` starts uvicorn, its workers, a job runner and huey consumers: Ctrl-C /
SIGTERM / SIGHUP stop all of it, and a server that stops by itself is reported with the
line of its output that says why. :func:`serve` is the foreground command.
"""

from __future__ import annotations

import collections
import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

from ..processes import die_with_parent, tree_members
from .options import ServerError, ServerOptions, ServerPlan
from .plan import plan_server, redact
from .setup import _check_admin_password, check_port_free, prepare

#: Set by ``mlflow server`` for its workers: a per-start folder it never removes.
_HUEY_STORAGE_ENV = "_MLFLOW_HUEY_STORAGE_PATH"


def _health_ok(url: str) -> bool:
    import http.client
    import urllib.request

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never a proxy
    try:
        with opener.open(url, timeout=3) as response:
            return response.status == 200 and response.read(16).strip() == b"OK"
    except (OSError, http.client.HTTPException):
        return False


class _Hangup(KeyboardInterrupt):
    """SIGHUP (the terminal went away), handled like Ctrl-C: the server must not outlive us."""


def _on_sighup(signum: int, frame: Any) -> None:
    raise _Hangup()


class ServerProcess:
    """A running ``mlflow server`` in its own process group, its output relayed to ``log``.

    The last lines of its output are kept so that a failure can be reported by the line
    that explains it; :meth:`stop` ends every process of the tree.
    """

    def __init__(self, plan: ServerPlan, secret_env: Mapping[str, str], log: IO[str]) -> None:
        env = {**os.environ, **plan.env, **secret_env, "PYTHONUNBUFFERED": "1"}
        self.log = log
        self.tail: collections.deque[str] = collections.deque(maxlen=200)
        self.popen = subprocess.Popen(
            list(plan.command),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            preexec_fn=die_with_parent(),
        )
        self.pid = self.popen.pid
        self._known: dict[int, Any] = {}
        self._huey_dir: str | None = None
        self._reader = threading.Thread(target=self._relay, name="mlflow-server-log", daemon=True)
        self._reader.start()

    def _relay(self) -> None:
        assert self.popen.stdout is not None
        for raw in iter(self.popen.stdout.readline, b""):
            line = raw.decode("utf-8", errors="replace").rstrip("\n")
            self.tail.append(line)
            try:
                self.log.write(line + "\n")
                self.log.flush()
            except (OSError, ValueError):  # our stderr is gone: keep draining the pipe
                pass
        self.popen.stdout.close()

    def poll(self) -> int | None:
        """The server's exit status, ``None`` while it runs."""
        return self.popen.poll()

    def wait(self) -> int:
        """Block until the server process exits (interruptible by signals)."""
        return self.popen.wait()

    def cause(self) -> str:
        """The output line that best explains a failure: the last Python exception line,
        else the last ``ERROR`` line (uvicorn's bind error), else the last line."""
        if self.popen.poll() is not None:
            self._reader.join(timeout=3)
        lines = [line.strip() for line in self.tail if line.strip()]
        generic = "Running the mlflow server failed"
        for line in reversed(lines):
            head = line.split(":", 1)[0]
            if head.endswith(("Error", "Exception")) and " " not in head:
                return line[:400]
        for line in reversed(lines):
            if "ERROR" in line and generic not in line:
                return line.split("ERROR", 1)[1].lstrip(": ").strip()[:400]
        return lines[-1][:400] if lines else "no output"

    def remember_tree(self) -> None:
        """Note every process of the tree now (and the per-start folder MLflow leaves in
        /dev/shm), so that :meth:`stop` finds them even if they leave the process group."""
        import psutil

        try:
            root = psutil.Process(self.pid)
            tree = root.children(recursive=True)
        except psutil.Error:
            return
        for proc in tree:
            self._known[proc.pid] = proc
            if self._huey_dir is None:
                with contextlib.suppress(psutil.Error):
                    self._huey_dir = proc.environ().get(_HUEY_STORAGE_ENV)

    def _members(self) -> list[Any]:
        """Live processes of the tree other than the root: remembered, current
        descendants and anything still in the process group."""
        return tree_members(self.pid, self._known.values())

    def stop(self, grace: float = 20.0) -> None:
        """End the whole tree: SIGTERM (graceful: uvicorn finishes requests), SIGKILL for
        what is left after ``grace`` seconds or at a second Ctrl-C/SIGTERM. Idempotent."""
        import psutil

        others = self._members()
        if self.popen.poll() is None or others:
            self.log.write(f"jupyter-repro server: stopping mlflow server (pid {self.pid})\n")
            self.log.flush()
        force = threading.Event()
        with _signals_set(force):
            self._send(others, signal.SIGTERM)
            deadline = time.monotonic() + grace
            while not force.is_set() and time.monotonic() < deadline:
                if self.popen.poll() is not None and not self._members():
                    break
                time.sleep(0.2)
            if self.popen.poll() is None or self._members():
                self._send(self._members(), signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=10)
            psutil.wait_procs(self._members(), timeout=5)
        if self.popen.poll() is not None:
            self._reader.join(timeout=5)
        self._remove_huey_dir()

    def _send(self, others: list[Any], sig: int) -> None:
        """``sig`` to the process group, the root, and members that left the group."""
        import psutil

        try:
            os.killpg(self.pid, sig)
        except (ProcessLookupError, PermissionError):
            if self.popen.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    self.popen.send_signal(sig)
        for proc in others:
            with contextlib.suppress(OSError, psutil.Error):
                if os.getpgid(proc.pid) != self.pid:
                    proc.send_signal(sig)

    def _remove_huey_dir(self) -> None:
        """MLflow makes a fresh job-queue folder per start (``/dev/shm/tmpXXXX``) and never
        deletes it; once the tree is gone nothing can use it again."""
        path = self._huey_dir
        if not path:
            return
        folder = Path(path)
        roots = {Path("/dev/shm"), Path(tempfile.gettempdir())}
        if folder.parent in roots and folder.name.startswith("tmp") and folder.is_dir():
            shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def _signals_set(event: threading.Event) -> Iterator[None]:
    """While stopping, Ctrl-C / SIGTERM / SIGHUP set ``event`` (stop waiting, kill now)
    instead of interrupting the clean-up."""
    names = ("SIGINT", "SIGTERM", "SIGHUP")
    previous: dict[int, Any] = {}
    for name in names:
        sig = getattr(signal, name, None)
        if sig is None:
            continue
        try:
            previous[sig] = signal.signal(sig, lambda signum, frame: event.set())
        except ValueError:  # not the main thread: nothing to intercept
            pass
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


# -------------------------------------------------------------------------- the command


def serve(options: ServerOptions, out: IO[str] | None = None, err: IO[str] | None = None) -> int:
    """Start the server, wait for ``/health``, print ``export MLFLOW_TRACKING_URI=...`` to
    ``out`` (where data lives, to ``err``), and stay in the foreground.

    Returns only through exceptions or a hangup: Ctrl-C / SIGTERM reach the caller as
    ``KeyboardInterrupt`` (``run_command`` makes them 130 / 143) after the whole server tree
    is stopped; SIGHUP returns 129 after the same clean-up.

    Raises:
        PortInUseError, ReproError: bad input, nothing started (exit 2).
        ServerError: the server did not answer within ``options.timeout`` seconds, or exited
            by itself; the message carries its explaining output line (exit 1).
    """
    out = out or sys.stdout
    err = err or sys.stderr
    if (
        threading.current_thread() is threading.main_thread()
        and signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    ):
        # started in the background by a script (`cmd &` ignores SIGINT): a server must
        # still stop on Ctrl-C / `kill -INT`, so take SIGINT back
        signal.signal(signal.SIGINT, signal.default_int_handler)
    plan = plan_server(options)
    check_port_free(options.host.strip(), options.port)
    if plan.auth:
        _check_admin_password(plan.auth)
    secret_env = prepare(plan)

    previous_hup = None
    if hasattr(signal, "SIGHUP"):
        with contextlib.suppress(ValueError):
            previous_hup = signal.signal(signal.SIGHUP, _on_sighup)
    server = ServerProcess(plan, secret_env, err)
    try:
        _wait_healthy(server, plan, options.timeout)
        server.remember_tree()
        _announce(plan, server, out, err)
        returncode = server.wait()
        raise ServerError(
            f"mlflow server (pid {server.pid}) stopped by itself with status {returncode}",
            server.cause(),
            returncode,
        )
    except _Hangup:
        server.stop()
        print("jupyter-repro: hangup", file=err, flush=True)
        return 129
    finally:
        server.stop()
        if previous_hup is not None:
            signal.signal(signal.SIGHUP, previous_hup)


def _wait_healthy(server: ServerProcess, plan: ServerPlan, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        returncode = server.poll()
        if returncode is not None:
            raise ServerError(
                f"mlflow server exited with status {returncode} before answering {plan.health_url}",
                server.cause(),
                returncode,
            )
        if _health_ok(plan.health_url):
            return
        if time.monotonic() > deadline:
            raise ServerError(
                f"mlflow server did not answer {plan.health_url} within {timeout:g} s "
                "(--timeout); its last output",
                server.cause(),
                None,
            )
        time.sleep(0.5)


def _announce(plan: ServerPlan, server: ServerProcess, out: IO[str], err: IO[str]) -> None:
    artifacts = plan.artifacts_destination
    lines = [
        f"jupyter-repro server: MLflow tracking server ready at {plan.tracking_uri} "
        f"(UI and API; pid {server.pid})",
        f"  runs and metrics: {redact(plan.backend_store_uri)}",
        f"  artifacts:        {redact(artifacts)} (uploaded and downloaded through the "
        "server; clients need no access to it)",
    ]
    if plan.auth:
        where = plan.auth.database or "the database named in $MLFLOW_AUTH_CONFIG_PATH"
        lines.append(
            f"  basic auth:       users in {where}; clients set MLFLOW_TRACKING_USERNAME "
            "and MLFLOW_TRACKING_PASSWORD"
        )
    lines += [f"  note: {note}" for note in plan.notes]
    lines.append(
        f"  use it:           jupyter-repro batch NOTEBOOK --tracking-uri {plan.tracking_uri}"
        "   (or the export line on stdout)"
    )
    lines.append("  stop with Ctrl-C")
    err.write("\n".join(lines) + "\n")
    err.flush()
    out.write(f"export MLFLOW_TRACKING_URI={shlex.quote(plan.tracking_uri)}\n")
    out.flush()
