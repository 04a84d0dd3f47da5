"""Heartbeats, and the clean-up of runs left RUNNING by a process that is gone.

Every batch run carries heartbeat tags: host name, host key, pid and process start time
of the process that owns it, and a last-seen time refreshed while it runs.
``jupyter-repro gc`` marks a RUNNING run KILLED when its owner is provably gone (same
:func:`~jupyter_repro.processes.host_key` — host name, boot id and PID namespace — and
no process with that pid and start time: after a SIGKILL or a crash), or when its
heartbeat is older than a threshold (another host key: another machine, a reboot, a
container with its own PID namespace, or a run written before the host key was
recorded). A run whose process is alive here is never touched, and a run whose owner
cannot be judged by pid is never marked while its heartbeat is fresh. Runs made by other
tools (no heartbeat) are left alone unless asked.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from dataclasses import dataclass

from ..processes import create_time, host_key, pid_alive
from .names import (
    HEARTBEAT,
    HEARTBEAT_HOST,
    HEARTBEAT_HOST_KEY,
    HEARTBEAT_LAST_SEEN,
    HEARTBEAT_PID,
    HEARTBEAT_PID_START,
    RunStatus,
)
from .store import retry_locked

HB = HEARTBEAT
HOST, HOST_KEY, PID = HEARTBEAT_HOST, HEARTBEAT_HOST_KEY, HEARTBEAT_PID
PID_START, LAST_SEEN = HEARTBEAT_PID_START, HEARTBEAT_LAST_SEEN


def heartbeat_tags() -> dict[str, str]:
    """The tags that identify this process as a run's owner, with last-seen = now."""
    return {
        HOST: socket.gethostname(),
        HOST_KEY: host_key(),
        PID: str(os.getpid()),
        PID_START: f"{create_time():.3f}",
        LAST_SEEN: f"{time.time():.3f}",
    }


class Heartbeat:
    """A daemon thread refreshing ``last_seen`` on a run every ``interval`` seconds."""

    def __init__(self, uri: str, run_id: str, interval: float) -> None:
        self.uri, self.run_id, self.interval = uri, run_id, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="jrepro-heartbeat", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        from .mlflow_log import set_tags

        while not self._stop.wait(self.interval):
            try:
                set_tags(self.uri, self.run_id, {LAST_SEEN: f"{time.time():.3f}"})
            except Exception:  # a missed beat only makes the run look older, never wrong
                continue


@dataclass(frozen=True)
class DanglingRun:
    """A RUNNING run judged dead: its id, experiment, name and why."""

    run_id: str
    experiment_id: str
    run_name: str
    reason: str


def find_dangling(
    uri: str,
    experiment_names: list[str] | None = None,
    stale_after: float = 600.0,
    include_foreign: bool = False,
    now: float | None = None,
) -> list[DanglingRun]:
    """RUNNING runs whose owner is gone or whose heartbeat is older than ``stale_after`` s.

    Args:
        experiment_names: limit to these experiments (default: all active experiments).
        include_foreign: also judge runs without a heartbeat (made by other tools): they
            are dangling when they started more than ``stale_after`` seconds ago.

    Raises:
        ReproError: an experiment name that the store does not have.
    """
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    now = time.time() if now is None else now
    if experiment_names:
        exps = []
        for name in experiment_names:
            exp = retry_locked(client.get_experiment_by_name, name)
            if exp is None:
                from ..errors import ReproError

                known = sorted(e.name for e in retry_locked(client.search_experiments))
                raise ReproError(
                    f"no experiment named '{name}' in {uri} "
                    f"(experiments: {', '.join(known) or 'none'})"
                )
            exps.append(exp)
    else:
        exps = retry_locked(client.search_experiments)
    if not exps:
        return []
    here, here_key = socket.gethostname(), host_key()
    found: list[DanglingRun] = []
    runs = []
    token = None
    while True:  # page through: a store may hold more RUNNING runs than one page
        page = retry_locked(
            client.search_runs,
            [e.experiment_id for e in exps],
            filter_string="attributes.status = 'RUNNING'",
            max_results=1000,
            page_token=token,
        )
        runs.extend(page)
        token = page.token
        if not token:
            break
    for run in runs:
        tags = run.data.tags
        name = run.info.run_name or ""
        if PID not in tags:
            if include_foreign and now - run.info.start_time / 1000 > stale_after:
                found.append(
                    DanglingRun(
                        run.info.run_id,
                        run.info.experiment_id,
                        name,
                        f"no heartbeat (other tool), started over {stale_after:.0f}s ago",
                    )
                )
            continue
        if tags.get(HOST_KEY) == here_key:  # its pid means the same process here
            try:
                pid = int(tags[PID])
                start = float(tags[PID_START]) if tags.get(PID_START) else None
            except ValueError:
                pid, start = -1, None
            if pid > 0 and pid_alive(pid, start):
                continue  # its process is alive here: never touched
            found.append(
                DanglingRun(
                    run.info.run_id,
                    run.info.experiment_id,
                    name,
                    f"process {tags[PID]} on {here} is gone",
                )
            )
            continue
        try:
            age = now - float(tags.get(LAST_SEEN, "0"))
        except ValueError:
            age = float("inf")
        if age > stale_after:
            found.append(
                DanglingRun(
                    run.info.run_id,
                    run.info.experiment_id,
                    name,
                    f"heartbeat from {tags.get(HOST)} last seen {age:.0f}s ago",
                )
            )
    return found


def mark_killed(uri: str, runs: list[DanglingRun]) -> None:
    """End each run as KILLED now, recording why in the status reason tag.

    A run that is no longer RUNNING when its turn comes (it finished since it was found)
    is left as it is; the check is made just before marking, so only a run ending in
    that last instant can still be marked.
    """
    from mlflow.tracking import MlflowClient

    from .mlflow_log import end_run

    client = MlflowClient(uri)
    for run in runs:
        if retry_locked(client.get_run, run.run_id).info.status != RunStatus.RUNNING:
            continue  # it ended on its own since it was found: keep its real status
        end_run(uri, run.run_id, RunStatus.KILLED, f"jupyter-repro gc: {run.reason}")
