"""``jupyter-repro batch --executor dask`` against real components (issue 8).

A real ``dask scheduler`` and two ``dask worker`` processes on 127.0.0.1, a real team
MLflow server started by ``jupyter-repro server`` (sqlite backend, served artifacts), two
"users" in their own git checkouts, and the installed CLI in subprocesses. Workers are
killed for real (SIGKILL of the process running the kernel) and so is the client.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from batch_support import (
    client,
    healthy,
    kill_pids,
    make_notebook,
    pid_running,
    read_executed,
    ready_store,
    run_spec,
    sleeper_notebook,
    wait_for,
)
from helpers import cli, free_port

from jupyter_repro.provenance.mlflow_log import format_param

pytestmark = [pytest.mark.dask, pytest.mark.slow, pytest.mark.xdist_group("dask")]

BIN = Path(sys.executable).parent


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A real scheduler and two single-threaded workers (each behind its nanny)."""
    folder = tmp_path_factory.mktemp("dask")
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    procs = []
    log = (folder / "scheduler.log").open("w")
    procs.append(
        subprocess.Popen(
            [
                str(BIN / "dask"),
                "scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--no-dashboard",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    )
    for name in ("w1", "w2"):
        wlog = (folder / f"{name}.log").open("w")
        procs.append(
            subprocess.Popen(
                [
                    str(BIN / "dask"),
                    "worker",
                    address,
                    "--nthreads",
                    "1",
                    "--name",
                    name,
                    "--host",
                    "127.0.0.1",
                    "--no-dashboard",
                    "--local-directory",
                    str(folder / name),
                ],
                stdout=wlog,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=folder,
            )
        )
    from distributed import Client

    try:
        with Client(address, timeout=120) as c:
            c.wait_for_workers(2, timeout=180)
        yield address
    finally:
        for proc in reversed(procs):
            _stop(proc)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The team server as users start it: ``jupyter-repro server`` on 127.0.0.1."""
    folder = tmp_path_factory.mktemp("team-server")
    port = free_port()
    log = (folder / "server.log").open("w")
    proc = subprocess.Popen(
        [
            cli("jupyter-repro"),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--dir",
            str(folder / "store"),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        cwd=folder,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: proc.poll() is not None or healthy(url), 240, "team server")
        assert proc.poll() is None, (folder / "server.log").read_text()
        wait_for(
            lambda: f"MLFLOW_TRACKING_URI={url}" in (folder / "server.log").read_text(),
            60,
            "the printed tracking URI",
        )
        yield url, folder / "store"
    finally:
        _stop(proc)


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, check=True, capture_output=True, text=True
    ).stdout.strip()


def user_checkout(root: Path, name: str, pause: float = 1.0) -> Path:
    """A user's git checkout: a notebook reading ``data/values.csv``, both committed."""
    repo = root / name
    (repo / "data").mkdir(parents=True)
    (repo / "data" / "values.csv").write_text("1.5\n2.5\n4\n")
    make_notebook(
        repo / "score.ipynb",
        ("alpha = 1.0\nseed = 0", ["parameters"]),
        "import csv, time\nimport jupyter_repro\n"
        "vals = [float(r[0]) for r in csv.reader(open('data/values.csv'))]\n"
        f"time.sleep({pause})\n"
        "jupyter_repro.record('score', alpha * sum(vals) + seed)\nprint('total', sum(vals))",
    )
    _git(repo, "init", "-q")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@e", "add", ".")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@e", "commit", "-qm", f"{name}'s work")
    (repo / "grid.yaml").write_text("alpha: [1.0, 2.0]\nseed: [0, 1]\n")
    return repo


def start(args: list[str], cwd: Path, log: Path, env: dict | None = None) -> subprocess.Popen:
    full = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    full.update(env or {})
    return subprocess.Popen(
        [cli("jupyter-repro"), "batch", *args, "--no-progress"],
        cwd=cwd,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        env=full,
        start_new_session=True,
        stdin=subprocess.DEVNULL,
    )


def runs(uri: str, experiment: str) -> list:
    c = client(uri)
    exp = c.get_experiment_by_name(experiment)
    return [] if exp is None else c.search_runs([exp.experiment_id], max_results=1000)


COORDINATE_TAGS = (
    "mlflow.source.type",
    "mlflow.source.name",
    "mlflow.source.git.commit",
    "jupyter_repro.notebook.sha256",
    "jupyter_repro.notebook.git_status",
    "jupyter_repro.notebook.sources_match_head",
    "jupyter_repro.git.dirty",
    "jupyter_repro.data.data.sha256",
    "jupyter_repro.status",
)


def _coordinates(run, c) -> dict:
    """What locates a run, minus what differs between any two runs (ids, times, hosts)."""
    return {
        "params": run.data.params,
        "metrics": run.data.metrics,
        "tags": {k: run.data.tags.get(k) for k in COORDINATE_TAGS},
        "artifacts": sorted(a.path for a in c.list_artifacts(run.info.run_id)),
        "diff": sorted(a.path for a in c.list_artifacts(run.info.run_id, "diff")),
        "datasets": sorted((d.dataset.name, d.dataset.digest) for d in run.inputs.dataset_inputs),
    }


def example_checkout(root: Path, name: str) -> Path:
    """A user's git checkout holding the project's example notebooks."""
    import shutil

    repo = root / name
    shutil.copytree(EXAMPLES, repo / "example_notebooks")
    _git(repo, "init", "-q")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@e", "add", ".")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@e", "commit", "-qm", "examples")
    return repo


EXAMPLES = Path(__file__).resolve().parent.parent / "example_notebooks"
SCORE_ARGS = ["score.ipynb", "--grid", "grid.yaml", "--data", "data"]
TRAIN_ARGS = [
    "example_notebooks/train_model.ipynb",
    "--grid",
    "example_notebooks/train_grid.yaml",
]


def test_three_users_on_a_two_worker_cluster_land_on_the_team_server(tmp_path, cluster, server):
    """ana and ben run a notebook reading --data; cleo the example_notebooks/ grid; all at
    once, each from their own git checkout into their own experiment."""
    url, store = server
    users = {
        "ana": (user_checkout(tmp_path, "ana"), SCORE_ARGS, 4),
        "ben": (user_checkout(tmp_path, "ben"), SCORE_ARGS, 4),
        "cleo": (example_checkout(tmp_path, "cleo"), TRAIN_ARGS, 6),
    }
    procs = {
        name: start(
            [
                *args,
                "--executor",
                "dask",
                "--scheduler",
                cluster,
                "--experiment",
                f"team-{name}",
                "--json",
                "report.json",
            ],
            cwd=repo,
            log=tmp_path / f"{name}.log",
            env={"MLFLOW_TRACKING_URI": url},
        )
        for name, (repo, args, _) in users.items()
    }
    for name, proc in procs.items():
        assert proc.wait(timeout=900) == 0, (tmp_path / f"{name}.log").read_text()
    c = client(url)
    workers_used = set()
    for name, (repo, args, n_runs) in users.items():
        log = (tmp_path / f"{name}.log").read_text()
        assert f"on 2 worker(s) at {cluster}" in log
        assert ("shipping 2 file(s)" if "--data" in args else "shipping 1 file(s)") in log
        found = runs(url, f"team-{name}")
        assert len(found) == n_runs and {r.info.status for r in found} == {"FINISHED"}
        head = _git(repo, "rev-parse", "HEAD")
        for run in found:
            tags, params = run.data.tags, run.data.params
            assert tags["mlflow.source.git.commit"] == head  # each user's own checkout
            assert tags["jupyter_repro.notebook.path"] == str(repo / args[0])
            assert tags["mlflow.source.name"] == args[0]
            if name == "cleo":
                assert 0.5 < run.data.metrics["accuracy"] <= 1.0
            else:
                expected = float(params["alpha"]) * 8.0 + int(params["seed"])
                assert run.data.metrics["score"] == pytest.approx(expected)  # data shipped
                assert tags["jupyter_repro.data.data.sha256"]
            workers_used.add(tags["jupyter_repro.batch.worker"])
            top = {a.path for a in c.list_artifacts(run.info.run_id)}
            assert {"notebook", "diff", "outputs", "environment.json"} <= top
            # stored by the server on its disk, not on the users' machines
            assert list(store.glob(f"artifacts/*/{run.info.run_id}/artifacts/diff/nbdiff.html"))
        # every executed notebook came back to the user's runs/ folder
        report = json.loads((repo / "report.json").read_text())
        assert len(report["runs"]) == n_runs
        for item in report["runs"]:
            assert Path(item["output_path"]).is_relative_to(repo / "runs")
            nb = read_executed(item["output_path"])
            injected = nb.metadata["papermill"]["parameters"]
            assert {k: format_param(v) for k, v in injected.items()} == item["params"]
            assert all(c.get("execution_count") for c in nb.cells if c.cell_type == "code")
    assert len({w.rsplit(":", 1)[0] for w in workers_used}) == 1  # all on this host
    assert len(workers_used) == 2, "the runs were spread over both workers"

    # The same grids run on the local pool land with the same coordinates.
    for name in ("ana", "cleo"):
        repo, args, _ = users[name]
        local = subprocess.run(
            [
                cli("jupyter-repro"),
                "batch",
                *args,
                "-j",
                "2",
                "--experiment",
                f"team-{name}-local",
                "--tracking-uri",
                url,
                "--no-progress",
            ],
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert local.returncode == 0, local.stdout + local.stderr
        on_dask = sorted(
            (_coordinates(r, c) for r in runs(url, f"team-{name}")),
            key=lambda x: str(x["params"]),
        )
        on_pool = sorted(
            (_coordinates(r, c) for r in runs(url, f"team-{name}-local")),
            key=lambda x: str(x["params"]),
        )
        assert on_dask == on_pool


def _kernel_pids(folder: Path) -> list[int]:
    return [int(p.name) for p in folder.iterdir()] if folder.exists() else []


def _dying_notebook(path: Path, pids: Path, marks: Path, deaths: int) -> Path:
    """Writes its kernel pid, then sleeps on the first ``deaths`` attempts (the test kills
    the worker meanwhile); a later attempt finishes at once."""
    return make_notebook(
        path,
        ("i = 0", ["parameters"]),
        "import os, time\n"
        f"n = len(os.listdir({str(marks)!r}))\n"
        f"open(os.path.join({str(marks)!r}, str(n)), 'w').close()\n"
        f"open(os.path.join({str(pids)!r}, str(os.getpid())), 'w').close()\n"
        f"if n < {deaths}:\n    time.sleep(300)\n"
        "import jupyter_repro\njupyter_repro.record('attempts', n + 1)",
    )


def _kill_worker_of(kernel_pid: int) -> int:
    """SIGKILL the dask worker process that started this kernel; return its pid."""
    worker = psutil.Process(kernel_pid).parent()
    assert "python" in worker.name().lower()
    worker.kill()
    return worker.pid


@pytest.mark.parametrize("deaths", [1, 2])
def test_a_worker_killed_mid_run_is_retried_once_then_failed(tmp_path, cluster, deaths):
    pids, marks = tmp_path / "pids", tmp_path / "marks"
    pids.mkdir()
    marks.mkdir()
    _dying_notebook(tmp_path / "dies.ipynb", pids, marks, deaths)
    uri = ready_store(tmp_path / "store")
    proc = start(
        ["dies.ipynb", "--executor", "dask", "--scheduler", cluster, "--tracking-uri", uri],
        cwd=tmp_path,
        log=tmp_path / "batch.log",
    )
    killed = []
    try:
        for n in range(deaths):
            kernel = wait_for(
                lambda n=n: len(_kernel_pids(pids)) > n and sorted(_kernel_pids(pids))[n:],
                240,
                f"attempt {n + 1}'s kernel",
            )
            killed.append(_kill_worker_of(kernel[0]))
        rc = proc.wait(timeout=300)
    finally:
        _stop(proc)
        kill_pids(_kernel_pids(pids))
    log = (tmp_path / "batch.log").read_text()
    found = sorted(runs(uri, "dies"), key=lambda r: r.info.start_time)
    assert all(r.info.status != "RUNNING" for r in found)
    dead = [r for r in found if r.info.status == "FAILED"]
    assert len(dead) >= 1
    assert "died mid-run" in dead[0].data.tags["jupyter_repro.status_reason"]
    if deaths == 1:
        assert rc == 0, log
        first, retry = found
        assert first.data.tags["jupyter_repro.status_reason"].endswith(
            "died mid-run; retried on another worker"
        )
        assert retry.info.status == "FINISHED"
        assert retry.data.tags["jupyter_repro.batch.attempt"] == "2"
        assert retry.data.tags["jupyter_repro.batch.retry_of"] == first.info.run_id
        assert retry.data.metrics["attempts"] == 2
        assert "FINISHED" in log
    else:
        assert rc == 1, log
        assert len(found) == 2 and {r.info.status for r in found} == {"FAILED"}
        assert "worker died 2 times mid-run; not retried again" in log
        assert found[1].data.tags["jupyter_repro.status_reason"].endswith("not retried again")
    for pid in killed:
        assert not pid_running(pid)
    # the cluster is whole again for the next test: each nanny restarted its worker
    from distributed import Client

    with Client(cluster, timeout=60) as c:
        c.wait_for_workers(2, timeout=180)


def test_killed_client_leaves_nothing_running_after_gc(tmp_path, cluster, server):
    url, _ = server
    pids = tmp_path / "pids"
    pids.mkdir()
    sleeper_notebook(tmp_path / "sleepy.ipynb", pids, seconds=300)
    (tmp_path / "grid.yaml").write_text("i: [0, 1, 2]\n")
    proc = start(
        [
            "sleepy.ipynb",
            "--grid",
            "grid.yaml",
            "--executor",
            "dask",
            "--scheduler",
            cluster,
            "--tracking-uri",
            url,
            "--experiment",
            "killed-client",
        ],
        cwd=tmp_path,
        log=tmp_path / "batch.log",
    )
    try:
        wait_for(lambda: len(_kernel_pids(pids)) >= 2, 240, "two runs in flight")
        wait_for(
            lambda: sum(r.info.status == "RUNNING" for r in runs(url, "killed-client")) == 2,
            60,
            "two RUNNING runs on the server",
        )
        proc.kill()  # SIGKILL: no handler, no clean-up in the client
        proc.wait(timeout=30)
        # The scheduler releases the dead client's tasks; each running task sees it,
        # kills its kernel and ends its run KILLED. gc then finds nothing to do.
        wait_for(lambda: not any(pid_running(p) for p in _kernel_pids(pids)), 60, "kernels gone")
        wait_for(
            lambda: all(r.info.status != "RUNNING" for r in runs(url, "killed-client")),
            60,
            "runs closed",
        )
    finally:
        kill_pids(_kernel_pids(pids))
    gc = subprocess.run(
        [cli("jupyter-repro"), "gc", "--tracking-uri", url, "--stale-after", "0"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert gc.returncode == 0, gc.stderr
    found = runs(url, "killed-client")
    assert len(found) == 2, "the third run never started, so it never existed"
    assert {r.info.status for r in found} == {"KILLED"}
    for run in found:
        # on 127.0.0.1 the worker sees the batch's pid vanish before the scheduler
        # releases the task; on another host only the latter tells (tested below)
        assert run.data.tags["jupyter_repro.status_reason"].startswith(
            ("the batch process is gone", "the dask client cancelled the run or went away")
        )
    time.sleep(1)
    from distributed import Client

    with Client(cluster, timeout=60) as c:  # the workers are free again
        assert c.submit(sum, [1, 2], pure=False).result(timeout=60) == 3


def test_local_cluster_same_path_and_ctrl_c_leaves_nothing_running(tmp_path):
    """No --scheduler: a LocalCluster on this machine; then Ctrl-C stops it cleanly."""
    repo = user_checkout(tmp_path, "solo", pause=0.2)
    uri = ready_store(tmp_path / "store")
    done = subprocess.run(
        [
            cli("jupyter-repro"),
            "batch",
            "score.ipynb",
            "--grid",
            "grid.yaml",
            "--data",
            "data",
            "--executor",
            "dask",
            "-j",
            "2",
            "--tracking-uri",
            uri,
            "--no-progress",
        ],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4/4 runs finished" in done.stdout
    found = runs(uri, "score")
    assert len({r.data.tags["jupyter_repro.batch.worker"] for r in found}) == 2
    assert sorted(r.data.metrics["score"] for r in found) == [8.0, 9.0, 16.0, 17.0]

    pids = tmp_path / "pids"
    pids.mkdir()
    sleeper_notebook(repo / "sleepy.ipynb", pids, seconds=300)
    (repo / "grid3.yaml").write_text("i: [0, 1, 2]\n")
    proc = start(
        [
            "sleepy.ipynb",
            "--grid",
            "grid3.yaml",
            "--executor",
            "dask",
            "-j",
            "2",
            "--tracking-uri",
            uri,
        ],
        cwd=repo,
        log=tmp_path / "ctrl-c.log",
    )
    try:
        wait_for(lambda: len(_kernel_pids(pids)) >= 2, 240, "two runs in flight")
        children = psutil.Process(proc.pid).children(recursive=True)
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C reaches the whole process group
        rc = proc.wait(timeout=120)
    finally:
        _stop(proc)
        kill_pids(_kernel_pids(pids))
    log = (tmp_path / "ctrl-c.log").read_text()
    assert rc == 130, log
    found = runs(uri, "sleepy")
    assert len(found) == 2 and {r.info.status for r in found} == {"KILLED"}, log
    for run in found:  # closed by the workers themselves, with the cell that was running
        assert run.data.tags["jupyter_repro.status_reason"].startswith(
            "batch interrupted (Ctrl-C/SIGTERM): kernel shut down while cell 1 was running"
        ), run.data.tags["jupyter_repro.status_reason"]
    partial = sorted((repo / "runs" / "sleepy").glob("*.ipynb"))
    assert len(partial) == 2 and all(read_executed(p).cells[1].outputs == [] for p in partial)
    wait_for(
        lambda: not any(c.is_running() and c.status() != psutil.STATUS_ZOMBIE for c in children),
        60,
        "LocalCluster processes gone",
    )


def test_a_cancelled_dask_task_kills_its_kernel_and_ends_its_run_killed(tmp_path, cluster):
    """The path a client on another host relies on: the scheduler releases the task (the
    client cancelled it or disconnected) and the task itself stops the run."""
    from jupyter_repro.batch.dask_executor import DaskExecutor, build_payload

    pids = tmp_path / "pids"
    pids.mkdir()
    nb = sleeper_notebook(tmp_path / "sleepy.ipynb", pids, seconds=300)
    uri = ready_store(tmp_path / "store")
    spec = run_spec(nb, uri, "sleepy", batch_id="cancel-test", owner=None, check_attempts=True)
    executor = DaskExecutor(cluster, 1, "cancel-test", build_payload(nb))
    try:
        executor.submit_run(spec)
        (kernel,) = wait_for(lambda: _kernel_pids(pids), 240, "the kernel")
    finally:
        executor.kill()  # cancel + disconnect, as after Ctrl-C's grace period
    try:
        wait_for(lambda: not pid_running(kernel), 60, "the kernel killed by its task")
        wait_for(
            lambda: [r for r in runs(uri, "sleepy") if r.info.status == "KILLED"],
            60,
            "the run ended KILLED",
        )
    finally:
        kill_pids([kernel])
    (run,) = runs(uri, "sleepy")
    assert run.data.tags["jupyter_repro.status_reason"].startswith(
        "the dask client cancelled the run or went away: kernel shut down while cell 1"
    )


def test_local_cluster_client_sigkilled_gc_ends_its_runs(tmp_path):
    """A LocalCluster's workers die with its client (distributed ends them at once), so
    nobody is left to close the run: gc must, since its owner is provably gone."""
    pids = tmp_path / "pids"
    pids.mkdir()
    sleeper_notebook(tmp_path / "sleepy.ipynb", pids, seconds=300)
    uri = ready_store(tmp_path / "store")
    proc = start(
        ["sleepy.ipynb", "--executor", "dask", "-j", "1", "--tracking-uri", uri],
        cwd=tmp_path,
        log=tmp_path / "batch.log",
    )
    try:
        wait_for(lambda: _kernel_pids(pids), 240, "the run in flight")
        wait_for(lambda: runs(uri, "sleepy"), 60, "its MLflow run")
        proc.kill()
        proc.wait(timeout=30)
        wait_for(lambda: not any(pid_running(p) for p in _kernel_pids(pids)), 60, "kernel gone")
    finally:
        kill_pids(_kernel_pids(pids))
    gc = subprocess.run(
        [cli("jupyter-repro"), "gc", "--tracking-uri", uri],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert gc.returncode == 0, gc.stderr
    (run,) = runs(uri, "sleepy")
    assert run.info.status == "KILLED"
    assert "is gone" in run.data.tags["jupyter_repro.status_reason"]


def test_a_worker_lost_after_its_run_finished_does_not_run_it_again(tmp_path, cluster):
    pids = tmp_path / "pids"
    pids.mkdir()
    make_notebook(
        tmp_path / "two.ipynb",
        ("i = 0", ["parameters"]),
        "import os, time\n"
        f"open(os.path.join({str(pids)!r}, f'{{i}}-{{os.getpid()}}'), 'w').close()\n"
        "time.sleep(25 if i else 0)",
    )
    (tmp_path / "grid.yaml").write_text("i: [0, 1]\n")
    uri = ready_store(tmp_path / "store")
    proc = start(
        [
            "two.ipynb",
            "--grid",
            "grid.yaml",
            "--executor",
            "dask",
            "--scheduler",
            cluster,
            "--tracking-uri",
            uri,
        ],
        cwd=tmp_path,
        log=tmp_path / "batch.log",
    )
    try:
        (first,) = wait_for(
            lambda: [r for r in runs(uri, "two") if r.info.status == "FINISHED"],
            240,
            "run 0 finished",
        )
        wait_for(lambda: any(p.name.startswith("1-") for p in pids.iterdir()), 120, "run 1")
        worker_pid = int(first.data.tags["jupyter_repro.batch.worker"].rsplit(":", 1)[1])
        running = {
            psutil.Process(int(p.name.split("-")[1])).ppid()
            for p in pids.iterdir()
            if p.name.startswith("1-")
        }
        assert worker_pid not in running, "run 1 should be on the other worker"
        os.kill(worker_pid, signal.SIGKILL)
        assert proc.wait(timeout=300) == 0, (tmp_path / "batch.log").read_text()
    finally:
        _stop(proc)
    found = runs(uri, "two")
    assert sorted(r.data.tags["jupyter_repro.batch.index"] for r in found) == ["0", "1"]
    assert {r.info.status for r in found} == {"FINISHED"}
    assert [r.data.tags["jupyter_repro.batch.attempt"] for r in found] == ["1", "1"]
    assert len([p for p in pids.iterdir() if p.name.startswith("0-")]) == 1, "ran once"
    from distributed import Client

    with Client(cluster, timeout=60) as c:
        c.wait_for_workers(2, timeout=180)


def test_runs_sharing_a_multithreaded_worker_keep_their_own_folder_and_data(tmp_path):
    """One `dask worker --nthreads 2`: two users' runs execute side by side in one
    process; each reads its own --data in its own folder and logs to one shared store."""
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    procs = [
        subprocess.Popen(
            [
                str(BIN / "dask"),
                "scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--no-dashboard",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        ),
        subprocess.Popen(
            [
                str(BIN / "dask"),
                "worker",
                address,
                "--nthreads",
                "2",
                "--host",
                "127.0.0.1",
                "--no-dashboard",
                "--local-directory",
                str(tmp_path / "w"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            cwd=tmp_path,
        ),
    ]
    uri = ready_store(tmp_path / "store")
    try:
        users = {
            "ana": user_checkout(tmp_path, "ana", pause=2.0),
            "ben": user_checkout(tmp_path, "ben", pause=2.0),
        }
        (users["ben"] / "data" / "values.csv").write_text("100\n")  # ben's own data
        for repo in users.values():
            nb = repo / "score.ipynb"
            text = (
                nb.read_text()
                .replace(
                    "print('total', sum(vals))", "print('total', sum(vals), 'cwd', os.getcwd())"
                )
                .replace("import csv, time", "import csv, os, time")
            )
            nb.write_text(text)
        started = {
            name: start(
                [
                    *SCORE_ARGS,
                    "--executor",
                    "dask",
                    "--scheduler",
                    address,
                    "--experiment",
                    name,
                    "--tracking-uri",
                    uri,
                    "--json",
                    "report.json",
                ],
                cwd=repo,
                log=tmp_path / f"{name}.log",
            )
            for name, repo in users.items()
        }
        for name, proc in started.items():
            assert proc.wait(timeout=600) == 0, (tmp_path / f"{name}.log").read_text()
    finally:
        for proc in reversed(procs):
            _stop(proc)
    folders = set()
    for name, total in (("ana", 8.0), ("ben", 100.0)):
        found = runs(uri, name)
        assert len(found) == 4 and {r.info.status for r in found} == {"FINISHED"}
        for run in found:
            p = run.data.params
            assert run.data.metrics["score"] == float(p["alpha"]) * total + int(p["seed"])
        assert len({r.data.tags["jupyter_repro.batch.worker"] for r in found}) == 1
        for item in json.loads((users[name] / "report.json").read_text())["runs"]:
            nb = read_executed(item["output_path"])
            (line,) = [o["text"] for c in nb.cells for o in c.get("outputs", []) if "text" in o]
            assert f"total {total}" in line
            folder = line.split("cwd ", 1)[1].strip()
            assert "jrepro-run-" in folder and folder not in folders
            folders.add(folder)
    assert len(folders) == 8, "every run in its own scratch folder"


def test_a_large_data_input_is_sent_once_per_worker_and_read_by_every_run(tmp_path, cluster):
    from jupyter_repro.batch.dask_executor import INLINE_PAYLOAD_BYTES

    blob = os.urandom(INLINE_PAYLOAD_BYTES + 1_000_000)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "blob.bin").write_bytes(blob)
    make_notebook(
        tmp_path / "big.ipynb",
        ("k = 0", ["parameters"]),
        "import hashlib, jupyter_repro\nraw = open('data/blob.bin', 'rb').read()\n"
        "jupyter_repro.record('size', len(raw))\n"
        "jupyter_repro.record('first_byte', raw[k])",
    )
    (tmp_path / "grid.yaml").write_text("k: [0, 1, 2]\n")
    uri = ready_store(tmp_path / "store")
    done = subprocess.run(
        [
            cli("jupyter-repro"),
            "batch",
            "big.ipynb",
            "--grid",
            "grid.yaml",
            "--data",
            "data",
            "--executor",
            "dask",
            "--scheduler",
            cluster,
            "--tracking-uri",
            uri,
            "--no-progress",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "shipping 2 file(s), 9.0 MB" in done.stderr
    found = runs(uri, "big")
    assert len(found) == 3
    for run in found:
        k = int(run.data.params["k"])
        assert run.data.metrics == {"size": len(blob), "first_byte": blob[k]}
