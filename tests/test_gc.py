"""``jupyter-repro gc`` judges RUNNING runs by their heartbeat: alive here -> untouched;
gone here (same host key) -> KILLED; another host key -> by heartbeat age, even with
this host's name (a container in its own PID namespace); other tools' runs -> only if
asked."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest
from batch_support import client, ready_store, runs_of, sleeper_notebook, wait_for
from helpers import cli

from jupyter_repro.cli import main
from jupyter_repro.processes import host_key, pid_alive
from jupyter_repro.provenance.gc import HOST, HOST_KEY, LAST_SEEN, PID, PID_START, heartbeat_tags


def _run(uri: str, tags: dict[str, str], name: str, start_time: int | None = None) -> str:
    c = client(uri)
    exp = c.get_experiment_by_name("gc") or c.get_experiment(c.create_experiment("gc"))
    run = c.create_run(exp.experiment_id, tags=tags, run_name=name, start_time=start_time)
    return run.info.run_id


class _Done:
    def __init__(self, returncode: int, stdout: str, stderr: str) -> None:
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def gc(*args: str, uri: str, capsys=None) -> _Done:
    """``jupyter-repro gc`` in this process (the subprocess path is in test_batch_kill)."""
    rc = main(["gc", "--tracking-uri", uri, *args])
    out = capsys.readouterr()
    return _Done(rc, out.out, out.err)


def _status(uri: str, run_id: str) -> str:
    return client(uri).get_run(run_id).info.status


def test_gc_scenarios(tmp_path, capsys):
    uri = ready_store(tmp_path / "store")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    here = socket.gethostname()
    now = time.time()
    alive = _run(uri, heartbeat_tags(), "alive-here")  # this test process: alive
    gone = _run(
        uri,
        {
            HOST: here,
            HOST_KEY: host_key(),
            PID: str(dead.pid),
            PID_START: "1.0",
            LAST_SEEN: f"{now:.3f}",
        },
        "gone-here",
    )
    # Same host name, other PID namespace (or a run from before the host key): its pid
    # says nothing here, so only its fresh heartbeat counts and it stays RUNNING.
    other_ns = _run(
        uri,
        {
            HOST: here,
            HOST_KEY: f"{here}/{host_key().split('/')[1]}/pid:[1]",
            PID: str(dead.pid),
            LAST_SEEN: f"{now:.3f}",
        },
        "other-namespace",
    )
    legacy = _run(uri, {HOST: here, PID: str(dead.pid), LAST_SEEN: f"{now:.3f}"}, "no-host-key")
    reused = _run(uri, {**heartbeat_tags(), PID_START: "12345.0"}, "pid-reused")
    remote_stale = _run(
        uri, {HOST: "elsewhere", PID: "1", LAST_SEEN: f"{now - 3600:.3f}"}, "remote-stale"
    )
    remote_fresh = _run(uri, {HOST: "elsewhere", PID: "1", LAST_SEEN: f"{now:.3f}"}, "remote-fresh")
    foreign = _run(uri, {}, "other-tool", start_time=int((now - 3600) * 1000))

    dry = gc("--dry-run", uri=uri, capsys=capsys)
    assert dry.returncode == 0
    listed = {line.split()[1] for line in dry.stdout.splitlines()}
    assert listed == {"gone-here", "pid-reused", "remote-stale"}
    assert all(_status(uri, r) == "RUNNING" for r in (gone, reused, remote_stale))

    assert gc(uri=uri, capsys=capsys).returncode == 0
    assert {
        n: _status(uri, r)
        for n, r in [
            ("alive", alive),
            ("gone", gone),
            ("reused", reused),
            ("remote_stale", remote_stale),
            ("remote_fresh", remote_fresh),
            ("other_ns", other_ns),
            ("legacy", legacy),
            ("foreign", foreign),
        ]
    } == {
        "alive": "RUNNING",
        "gone": "KILLED",
        "reused": "KILLED",
        "remote_stale": "KILLED",
        "remote_fresh": "RUNNING",
        "other_ns": "RUNNING",
        "legacy": "RUNNING",
        "foreign": "RUNNING",
    }

    assert gc("--include-foreign", "--stale-after", "60", uri=uri, capsys=capsys).returncode == 0
    assert _status(uri, foreign) == "KILLED"
    assert _status(uri, alive) == "RUNNING", "a run whose process is alive is never touched"


def test_gc_limited_to_an_experiment(tmp_path, capsys):
    uri = ready_store(tmp_path / "store")
    c = client(uri)
    other = c.create_experiment("other")
    tags = {HOST: socket.gethostname(), PID: "999999", LAST_SEEN: "0"}
    run = c.create_run(other, tags=tags).info.run_id
    c.create_experiment("empty")
    assert "0 dangling" in gc("--experiment", "empty", uri=uri, capsys=capsys).stderr
    assert _status(uri, run) == "RUNNING"
    # a misspelt experiment is an error naming what exists, not a silent "0 dangling"
    typo = gc("--experiment", "otehr", uri=uri, capsys=capsys)
    assert typo.returncode == 2
    assert "no experiment named 'otehr'" in typo.stderr and "other" in typo.stderr
    assert _status(uri, run) == "RUNNING"
    bad = gc("--stale-after", "-5", uri=uri, capsys=capsys)
    assert bad.returncode == 2 and "--stale-after must be 0 or more" in bad.stderr
    assert gc("--experiment", "other", uri=uri, capsys=capsys).stdout.count("marked KILLED") == 1


def test_gc_leaves_a_run_that_ended_after_it_was_found(tmp_path):
    from jupyter_repro.provenance.gc import find_dangling, mark_killed

    uri = ready_store(tmp_path / "store")
    gone = _run(uri, {HOST: socket.gethostname(), PID: "999999", LAST_SEEN: "0"}, "late")
    (found,) = find_dangling(uri, ["gc"])
    client(uri).set_terminated(gone, "FINISHED")  # it finished between search and mark
    mark_killed(uri, [found])
    assert _status(uri, gone) == "FINISHED"


def _can_unshare_pid() -> str:
    """ "" when this test may start a process in a new PID namespace, else why not."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "a new PID namespace needs root (unshare --pid)"
    if shutil.which("unshare") is None:
        return "no unshare command (util-linux)"
    probe = subprocess.run(
        ["unshare", "--pid", "--fork", "--mount-proc", "true"], capture_output=True, text=True
    )
    if probe.returncode != 0:
        return f"unshare --pid refused here: {probe.stderr.strip()[:200]}"
    return ""


@pytest.mark.slow
def test_gc_leaves_a_live_run_of_another_pid_namespace(tmp_path):
    """A batch in its own PID namespace (same host name, as in a container with host
    networking) is alive; its pid means another process here, so ``gc`` must judge it by
    its fresh heartbeat and leave it RUNNING (issue 15, item 5)."""
    why = _can_unshare_pid()
    if why:
        pytest.skip(why)
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()
    nb = sleeper_notebook(tmp_path / "sleeper.ipynb", pid_dir)
    uri = ready_store(tmp_path / "store")
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    with (tmp_path / "batch.log").open("w") as log:
        proc = subprocess.Popen(
            [
                *("unshare", "--pid", "--fork", "--mount-proc"),
                *(cli("jupyter-repro"), "batch", str(nb), "--no-progress"),
                *("--heartbeat-interval", "1"),
            ],
            cwd=tmp_path,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
    try:
        try:
            wait_for(
                lambda: (
                    any(pid_dir.iterdir())
                    and [r.info.status for r in runs_of(uri, "sleeper")] == ["RUNNING"]
                ),
                150,
                "the run in the other namespace to be sleeping",
            )
        except AssertionError:
            raise AssertionError((tmp_path / "batch.log").read_text()) from None
        (run,) = runs_of(uri, "sleeper")
        tags = run.data.tags
        assert tags[HOST] == socket.gethostname()
        assert tags[HOST_KEY] != host_key(), "the namespace is part of the host key"
        # Judged by pid on the host name alone, this live run would look gone:
        assert not pid_alive(int(tags[PID]), float(tags[PID_START]))
        listed = subprocess.run(
            [cli("jupyter-repro"), "gc", "--tracking-uri", uri, "--dry-run"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert listed.returncode == 0 and "0 dangling" in listed.stderr, listed.stderr
        real = subprocess.run(
            [cli("jupyter-repro"), "gc", "--tracking-uri", uri],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert real.returncode == 0 and "0 dangling" in real.stderr, real.stderr
        assert _status(uri, run.info.run_id) == "RUNNING"
        assert proc.poll() is None, "the batch is still running"
    finally:
        # SIGKILL of unshare and the namespace's first process ends every process in it.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
