"""``jupyter-repro gc`` judges RUNNING runs by their heartbeat: alive here -> untouched;
gone here -> KILLED; another host -> by heartbeat age; other tools' runs -> only if asked."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

from batch_support import client, ready_store

from jupyter_repro.cli import main
from jupyter_repro.provenance.gc import HOST, LAST_SEEN, PID, PID_START, heartbeat_tags


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
        {HOST: here, PID: str(dead.pid), PID_START: "1.0", LAST_SEEN: f"{now:.3f}"},
        "gone-here",
    )
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
            ("foreign", foreign),
        ]
    } == {
        "alive": "RUNNING",
        "gone": "KILLED",
        "reused": "KILLED",
        "remote_stale": "KILLED",
        "remote_fresh": "RUNNING",
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
