"""Processes: which machine this is, whether a process is still the one we started, and
ending a process with everything it started.

A leaf (stdlib and psutil only), used by ``nb-smoke`` (its worker and kernel), ``batch``
(kernels, pool workers, the owner watch), ``gc`` (judging a run's owner), and ``server``
(the ``mlflow server`` tree). One copy of each rule, so that the runs and ``gc`` judge a
process the same way:

- A pid means something only on the same :func:`host_key` (host name, boot id and PID
  namespace): a container sharing the host's name but with its own PID namespace, or the
  same machine after a reboot, sees other processes under the same numbers.
- A pid is the process we knew only while its start time is the one we recorded
  (:func:`pid_alive`): pids are reused. A zombie counts as gone.
- Killing is SIGKILL of the process *and its descendants* (listed before the first kill,
  so none escapes by being re-parented), optionally of its whole process group too.
- A private temporary folder records its owner (:func:`write_owner`); once the owner is
  gone, whoever comes next removes it (:func:`remove_stale_folders`: nb-smoke's run
  folders, batch's kernel folders).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

#: Start times closer than this (seconds) are the same process (psutil rounds them).
START_TIME_TOLERANCE = 1.0


def host_key() -> str:
    """This machine *and* PID namespace: ``hostname/boot id/pid:[inode]``.

    Two processes can judge each other's pids only when their keys are equal. Parts that
    cannot be read (not Linux) are ``?``, so such hosts compare by name alone.
    """
    parts = [socket.gethostname()]
    try:
        parts.append(Path("/proc/sys/kernel/random/boot_id").read_text().strip())
    except OSError:
        parts.append("?")
    try:
        parts.append(os.readlink("/proc/self/ns/pid"))
    except OSError:
        parts.append("?")
    return "/".join(parts)


def create_time(pid: int | None = None) -> float | None:
    """Start time of process ``pid`` (this process when None), seconds since the epoch;
    None when there is no such process or it cannot be read."""
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def process_identity(pid: int | None = None) -> tuple[str, int, float]:
    """(:func:`host_key`, pid, start time) of a process (this one when None): enough to
    tell later, on the same host key, whether it is gone.

    Raises:
        psutil.NoSuchProcess: there is no process ``pid``.
    """
    import psutil

    proc = psutil.Process(pid)
    return host_key(), proc.pid, proc.create_time()


def pid_alive(pid: int, started: float | None = None) -> bool:
    """Whether process ``pid`` runs here (not a zombie) and, if ``started`` is given,
    started then (within :data:`START_TIME_TOLERANCE`): a reused pid is not alive.

    A process we may not inspect (AccessDenied) counts as alive: never judge it gone.
    """
    import psutil

    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return started is None or abs(proc.create_time() - started) < START_TIME_TOLERANCE
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True


def alive(proc: Any) -> bool:
    """Whether the ``psutil.Process`` ``proc`` still runs (a zombie does not count; psutil
    itself checks that the pid was not reused)."""
    import psutil

    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def kill_tree(pid: int, started: float | None = None, *, group: bool = False) -> None:
    """SIGKILL process ``pid`` and all its descendants; with ``group`` also every process
    in the process group ``pid`` leads (``start_new_session=True``), orphans included.

    With ``started``, nothing is done unless ``pid`` is still the process that started
    then. Processes already gone are skipped; never raises for a missing process.
    """
    import psutil

    procs: list[Any] = []
    try:
        proc = psutil.Process(pid)
        if started is not None and abs(proc.create_time() - started) >= START_TIME_TOLERANCE:
            return  # the pid now names another process
        procs = [*proc.children(recursive=True), proc]
    except psutil.Error:
        if started is not None:
            return
    if group:
        signal_group(pid, signal.SIGKILL)
    for p in procs:
        with contextlib.suppress(psutil.Error):
            p.kill()


def kill_children(pid: int | None = None) -> None:
    """SIGKILL every descendant of process ``pid`` (this process when None), not itself."""
    import psutil

    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return
    for child in children:
        with contextlib.suppress(psutil.Error):
            child.kill()


def signal_group(pgid: int, sig: int) -> bool:
    """Send ``sig`` to process group ``pgid``; False when the group is gone (or not ours)."""
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def in_group(proc: Any, pgid: int) -> bool:
    """Whether the ``psutil.Process`` ``proc`` is in process group ``pgid``."""
    import psutil

    try:
        return os.getpgid(proc.pid) == pgid
    except (OSError, psutil.Error):
        return False


def tree_members(root: int, known: Iterable[Any] = ()) -> list[Any]:
    """Live processes of the tree of ``root`` other than ``root``: the ``known`` ones
    (``psutil.Process`` noted earlier, which may have left the tree), its current
    descendants, and anything in the process group ``root`` leads."""
    import psutil

    found: dict[int, Any] = {proc.pid: proc for proc in known}
    with contextlib.suppress(psutil.Error):
        for proc in psutil.Process(root).children(recursive=True):
            found[proc.pid] = proc
    for proc in psutil.process_iter():
        if proc.pid != root and in_group(proc, root):
            found[proc.pid] = proc
    found.pop(root, None)
    return [proc for proc in found.values() if alive(proc)]


def die_with_parent(sig: int = signal.SIGTERM) -> Callable[[], None] | None:
    """A ``preexec_fn`` for :class:`subprocess.Popen` that has Linux send the child ``sig``
    when this process dies without cleaning up (SIGKILL): ``PR_SET_PDEATHSIG``.

    Returns None where that does not exist (not Linux, no libc ``prctl``). The signal goes
    to the child only, not to what it starts: a child that starts others must forward it.
    """
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def _preexec() -> None:
        prctl(1, sig)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the parent died between fork and prctl
            os.kill(os.getpid(), sig)

    return _preexec


_PR_SET_CHILD_SUBREAPER = 36  # linux/prctl.h


def become_subreaper() -> bool:
    """Make this process inherit every orphan below it (Linux ``PR_SET_CHILD_SUBREAPER``).

    A process started below it in a new session (``start_new_session=True``, daemons,
    local servers) whose parent then exits is re-parented here instead of to init, so it
    stays in this process's tree and :func:`kill_children` finds it. The setting survives
    ``execve``, so it also works as a ``preexec_fn``. Returns False where prctl is
    missing (not Linux).
    """
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def subreaper_preexec() -> Callable[[], None] | None:
    """A ``preexec_fn`` making the child a subreaper (:func:`become_subreaper`), with
    ``prctl`` looked up before the fork so the child only makes the call."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def _preexec() -> None:
        prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)

    return _preexec


#: The record, in a private temporary folder, of the process that owns it.
OWNER_FILE = "owner.json"


def write_owner(folder: str | Path) -> None:
    """Record this process (pid and start time, against pid reuse, and :func:`host_key`,
    against another machine or container sharing the temp dir) as the owner of the
    temporary ``folder``, so :func:`remove_stale_folders` can tell when it is gone."""
    import json

    import psutil

    me = psutil.Process()
    record = json.dumps({"pid": me.pid, "create_time": me.create_time(), "host": host_key()})
    (Path(folder) / OWNER_FILE).write_text(record)


def remove_stale_folders(prefix: str, root: str | Path | None = None) -> list[Path]:
    """Delete this user's folders ``<root>/<prefix>*`` whose owner (:func:`write_owner`)
    no longer runs (killed with -9): same pid and start time, or gone.

    Only an owner of this :func:`host_key` is judged by its pid: a temp dir shared
    with other hosts or containers (NFS, a mounted ``/tmp``) holds live folders whose
    pids mean nothing here. A folder being set up (no record yet), one whose record
    names no host (written before hosts were recorded) or another host, and other
    users' folders are left alone. ``root`` is the temp dir when None. Returns the
    folders removed.
    """
    import json
    import shutil
    import tempfile

    removed = []
    here = host_key()
    base = Path(root or tempfile.gettempdir())
    for folder in base.glob(prefix + "*"):
        try:
            if folder.stat().st_uid != os.getuid() or not folder.is_dir():
                continue
            owner = json.loads((folder / OWNER_FILE).read_text())
            if owner.get("host") != here:
                continue
            if pid_alive(int(owner["pid"]), owner.get("create_time")):
                continue
        except (OSError, ValueError, KeyError, TypeError):
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed
