"""F12: SIGTERM/SIGINT to the batch ends in-flight runs KILLED with their kernels shut
down; after a SIGKILL, ``jupyter-repro gc`` ends the dangling runs (``--dry-run`` lists)."""

from __future__ import annotations

import os
import signal
import time

import pytest
from batch_support import (
    gc,
    kill_pids,
    pid_running,
    ready_store,
    runs_of,
    sleeper_notebook,
    start_batch,
    wait_for,
)

from jupyter_repro.provenance.gc import LAST_SEEN


def _start_two_sleepers(tmp_path):
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()
    nb = sleeper_notebook(tmp_path / "sleeper.ipynb", pid_dir)
    (tmp_path / "g.yaml").write_text("i: [0, 1]\n")
    uri = ready_store(tmp_path / "store")
    proc = start_batch(
        nb,
        "--grid",
        tmp_path / "g.yaml",
        "-j",
        "2",
        "--heartbeat-interval",
        "1",
        cwd=tmp_path,
        uri=uri,
        log=tmp_path / "batch.log",
    )

    def both_sleeping():
        pids = [int(p.name) for p in pid_dir.iterdir()]
        running = [r for r in runs_of(uri, "sleeper") if r.info.status == "RUNNING"]
        return pids if len(pids) == 2 and len(running) == 2 else None

    try:
        kernels = wait_for(both_sleeping, 150, "two kernels sleeping in cell 1")
    except AssertionError:
        proc.kill()
        raise AssertionError((tmp_path / "batch.log").read_text()) from None
    return proc, uri, kernels


@pytest.mark.parametrize(
    "signum",
    [signal.SIGTERM, pytest.param(signal.SIGINT, marks=pytest.mark.slow)],
    ids=["SIGTERM", "SIGINT"],
)
def test_signal_ends_in_flight_runs_killed_and_shuts_kernels_down(tmp_path, signum):
    proc, uri, kernels = _start_two_sleepers(tmp_path)
    try:
        first = {r.info.run_id: float(r.data.tags[LAST_SEEN]) for r in runs_of(uri, "sleeper")}
        wait_for(
            lambda: all(
                float(r.data.tags[LAST_SEEN]) > first[r.info.run_id]
                for r in runs_of(uri, "sleeper")
            ),
            30,
            "heartbeats to advance (--heartbeat-interval 1)",
        )
        start = time.time()
        proc.send_signal(signum)
        rc = proc.wait(timeout=60)
        elapsed = time.time() - start
        log = (tmp_path / "batch.log").read_text()
        assert rc == 128 + signum, log
        assert elapsed < 30, f"batch took {elapsed:.1f}s to stop"
        runs = runs_of(uri, "sleeper")
        assert [r.info.status for r in runs] == ["KILLED", "KILLED"], log
        for run in runs:
            assert run.info.end_time
            reason = run.data.tags["jupyter_repro.status_reason"]
            assert "interrupted" in reason and "cell 1" in reason
        wait_for(lambda: not any(pid_running(k) for k in kernels), 10, "kernels to exit")
        outputs = list((tmp_path / "runs" / "sleeper").glob("*.ipynb"))
        assert len(outputs) == 2, "killed runs keep their partial notebooks"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        kill_pids(kernels)


def test_sigkill_then_gc_marks_dangling_runs_killed(tmp_path):
    proc, uri, kernels = _start_two_sleepers(tmp_path)
    owners = [int(r.data.tags["jupyter_repro.heartbeat.pid"]) for r in runs_of(uri, "sleeper")]
    os.killpg(proc.pid, signal.SIGKILL)  # the batch, its forkserver and workers: a crash
    proc.wait(timeout=30)
    kill_pids(kernels)  # kernels live in their own sessions; a reboot would end them too
    wait_for(lambda: not any(pid_running(p) for p in owners), 20, "workers to be gone")
    assert [r.info.status for r in runs_of(uri, "sleeper")] == ["RUNNING", "RUNNING"]

    dry = gc("--dry-run", uri=uri)
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.count("would mark KILLED") == 2 and "is gone" in dry.stdout
    assert [r.info.status for r in runs_of(uri, "sleeper")] == ["RUNNING", "RUNNING"]

    real = gc(uri=uri)
    assert real.returncode == 0 and real.stdout.count("marked KILLED") == 2
    runs = runs_of(uri, "sleeper")
    assert [r.info.status for r in runs] == ["KILLED", "KILLED"]
    assert all(r.info.end_time for r in runs)
    assert all("jupyter-repro gc" in r.data.tags["jupyter_repro.status_reason"] for r in runs)
    assert "0 dangling" in gc(uri=uri).stderr


def test_sigkill_of_the_batch_alone_ends_its_runs_killed_with_no_process_left(tmp_path):
    """Only the batch process dies (its forkserver and workers live on): each worker sees
    it gone, ends its run KILLED and exits, so nothing keeps running or stays RUNNING."""
    proc, uri, kernels = _start_two_sleepers(tmp_path)
    owners = [int(r.data.tags["jupyter_repro.heartbeat.pid"]) for r in runs_of(uri, "sleeper")]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    wait_for(
        lambda: [r.info.status for r in runs_of(uri, "sleeper")] == ["KILLED", "KILLED"],
        60,
        "the workers to close their runs KILLED",
    )
    assert all(r.info.end_time for r in runs_of(uri, "sleeper"))
    wait_for(
        lambda: not any(pid_running(p) for p in owners + kernels), 30, "workers and kernels to exit"
    )
