"""Kernels for runs (jupyter_repro.kernels, issue 19): a fresh kernel per run, the next
one started while a run executes, IPC sockets in a private folder, nothing left behind.

Real kernels, the real ``jupyter-repro batch`` CLI, a real sqlite MLflow store.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import psutil
import pytest
from batch_support import batch, ready_store, runs_of
from helpers import make_notebook
from jupyter_core.utils import run_sync

from jupyter_repro import kernels

#: A cell that prints the kernel's transport, connection file and pid.
WHOAMI = (
    "import json, os, ipykernel.connect\n"
    "_cf = ipykernel.connect.get_connection_file()\n"
    "print(json.dumps({'transport': json.load(open(_cf))['transport'], 'file': _cf,\n"
    "                  'pid': os.getpid(), 'run': os.environ.get('MLFLOW_RUN_ID'),\n"
    "                  'i': i}))"
)


def _mentions(marker: str) -> list[psutil.Process]:
    """Live processes whose command line mentions ``marker`` (a test's own folder)."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if marker in " ".join(proc.info["cmdline"] or []) and proc.status() != "zombie":
                found.append(proc)
        except psutil.Error:
            continue
    return found


def _is_template(proc: psutil.Process) -> bool:
    """A kernel template (forked kernels show its command line too: their parent is one)."""
    try:
        return "_kernel_template.py" in " ".join(
            proc.cmdline()
        ) and "_kernel_template.py" not in " ".join(proc.parent().cmdline())
    except (psutil.Error, AttributeError):
        return False


def _kernel_processes(marker: str) -> list[psutil.Process]:
    """Live kernels whose folder is under ``marker``: started (``ipykernel_launcher`` on
    the command line) or forked (the child of a template, whose command line names the
    folder)."""
    return [p for p in _mentions(marker) if not _is_template(p)]


def _template_processes(marker: str) -> list[psutil.Process]:
    """Live kernel templates whose folder is under ``marker``."""
    return [p for p in _mentions(marker) if _is_template(p)]


def _whoami(output: Path) -> dict:
    import nbformat

    nb = nbformat.read(output, as_version=4)
    text = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))
    return json.loads(text.strip().splitlines()[-1])


def _isolated_env(tmp_path: Path) -> dict[str, str]:
    """Temp dir and Jupyter runtime dir inside the test's folder, so what is left behind
    can be listed."""
    (tmp_path / "tmp").mkdir()
    (tmp_path / "runtime").mkdir()
    return {"TMPDIR": str(tmp_path / "tmp"), "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime")}


@pytest.fixture
def short_tmp():
    """A folder directly in /tmp (a short path, like a user's ``$TMPDIR``), removed after."""
    import shutil
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="jrt-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _ipc_available() -> bool:
    import sys

    import zmq

    return sys.platform != "win32" and zmq.has("ipc")


@pytest.mark.slow
def test_64_kernels_through_batch_j8_start_without_failure_over_ipc_and_leave_nothing(
    tmp_path, short_tmp
):
    nb = make_notebook(tmp_path / "tiny.ipynb", ("i = 0", ["parameters"]), WHOAMI)
    (tmp_path / "grid.yaml").write_text(f"i: {list(range(64))}\n")
    uri = ready_store(tmp_path / "store")
    report = tmp_path / "report.json"
    # $TMPDIR as short as /tmp/<8 chars>: the workers' nested kernel folders must still
    # allow IPC sockets (they did not with 36-character names, review of kernels.py)
    env = _isolated_env(short_tmp)
    proc = batch(
        nb,
        "--grid",
        tmp_path / "grid.yaml",
        "-j",
        "8",
        "--json",
        report,
        "--output-dir",
        tmp_path / "out",
        cwd=tmp_path,
        uri=uri,
        timeout=1200,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = json.loads(report.read_text())["runs"]
    assert len(results) == 64
    assert [r["status"] for r in results] == ["FINISHED"] * 64, [
        r["reason"] for r in results if r["status"] != "FINISHED"
    ]
    # zero launch failures: no run needed a second kernel
    assert [r["kernel_starts"] for r in results] == [1] * 64
    runs = runs_of(uri, "tiny")
    assert sorted(r.info.status for r in runs) == ["FINISHED"] * 64

    seen = [_whoami(Path(r["output_path"])) for r in results]
    if _ipc_available():
        assert {s["transport"] for s in seen} == {"ipc"}
    assert all(s["file"].startswith(str(short_tmp / "tmp")) for s in seen)
    # every run in a kernel of its own, which knew its own MLflow run
    assert len({s["pid"] for s in seen}) == 64
    assert len({s["file"] for s in seen}) == 64
    assert sorted(s["i"] for s in seen) == list(range(64))
    assert {s["run"] for s in seen} == {r["run_id"] for r in results}

    # nothing left: no kernel process, connection file, socket or folder
    for s in seen:
        assert not psutil.pid_exists(s["pid"]) or psutil.Process(s["pid"]).status() == "zombie"
    assert _mentions(str(short_tmp / "tmp")) == []  # no kernel, no template
    assert list((short_tmp / "tmp").iterdir()) == []
    assert list((short_tmp / "runtime").rglob("k*-*")) == []


@pytest.mark.skipif(not _ipc_available(), reason="ZeroMQ without ipc transport")
def test_a_batch_workers_kernels_use_ipc_under_tmp():
    """The kernel folder a ``batch``/``tune`` worker makes inside the batch's own temp
    folder under /tmp: its kernels listen on IPC sockets, each path within ``sun_path``."""
    import shutil
    import tempfile

    from jupyter_repro.batch.executors import KERNEL_DIR_PREFIX

    batch_dir = tempfile.mkdtemp(prefix=KERNEL_DIR_PREFIX, dir="/tmp")
    try:
        folder = kernels.KernelFolder(parent=batch_dir)
        assert folder.ipc
        pool = kernels.KernelPool(folder)
        km = pool.take("python3", batch_dir, {}, {}).km
        try:
            assert km.transport == "ipc"
            info = json.loads(Path(km.connection_file).read_text())
            assert info["transport"] == "ipc"
            import time

            deadline = time.monotonic() + 120  # the kernel binds its sockets once up
            while len(sockets := sorted(Path(folder.path).glob("k-*-ipc-*"))) < 5:
                assert time.monotonic() < deadline, sockets
                time.sleep(0.1)
            assert len(sockets) == kernels.IPC_CHANNELS, sockets
            assert all(len(str(p).encode()) <= kernels.MAX_SOCKET_PATH for p in sockets)
            assert _alive(km.pid)
        finally:
            kernels.discard(km)
            pool.close()
        assert not os.path.exists(folder.path)
    finally:
        shutil.rmtree(batch_dir, ignore_errors=True)


def test_spare_kernel_is_fresh_and_unused_kernels_are_removed(tmp_path):
    """In one process: the spare fits only its own kernelspec, cwd and launch variables,
    is handed out once, and closing the pool kills an unused spare and removes its files."""
    folder = kernels.KernelFolder(parent=str(tmp_path))
    pool = kernels.KernelPool(folder)
    cwd = str(tmp_path)
    first, late, spare = pool.take("python3", cwd, {"A": "1"}, {"RUN": "r1"})
    assert late == {} and not spare  # started now: the run's variables were given at launch
    assert first.launch_env == {"A": "1", "RUN": "r1"}
    run_sync(pool.prestart)("python3", cwd, {"A": "1"})
    second, late, spare = pool.take("python3", cwd, {"A": "1"}, {"RUN": "r2"})
    assert late == {"RUN": "r2"} and spare  # the spare: set before the first cell
    assert second is not first and second.pid != first.pid
    assert second.launch_env == {"A": "1"}
    run_sync(pool.prestart)("python3", cwd, {"A": "1"})
    # another working directory: the spare does not fit, it is killed, a fresh one starts
    spare_pid = pool._spare[1].pid
    (tmp_path / "other").mkdir()
    third, late, spare = pool.take("python3", str(tmp_path / "other"), {"A": "1"}, {"RUN": "r3"})
    assert late == {} and not spare and third.pid not in (first.pid, second.pid, spare_pid)
    assert not _alive(spare_pid)
    run_sync(pool.prestart)("python3", cwd, {"A": "1"})
    spare_pid = pool._spare[1].pid
    for km in (first, second, third):
        kernels.discard(km)
        assert not _alive(km.pid)
    pool.close()
    assert not _alive(spare_pid)
    assert not os.path.exists(folder.path)
    with pytest.raises(RuntimeError, match="closed"):
        pool.take("python3", cwd, {}, {})


def test_late_env_code_round_trips_any_value():
    values = {
        "X": "a'b\"c\\d\n€",
        "Y": "",
        "EMOJI": "run 🚀 done",  # outside the BMP: JSON wrote it as two lone surrogates
        "MATH": "\U0001d4b3\U00020000\u2028end",  # more non-BMP, a line separator
        "UNDECODABLE": os.fsdecode(b"caf\xe9"),  # surrogateescape, as os.environ has it
    }
    code = kernels.late_env_code(values)
    code.encode()  # the request is sent as UTF-8: no lone surrogate in the source
    scope: dict = {}
    saved = dict(os.environ)
    try:
        exec(code, scope)
        assert {k: os.environ[k] for k in values} == values
        assert os.environb[b"UNDECODABLE"] == b"caf\xe9"
        assert "_jr_os" not in scope
    finally:
        os.environ.clear()
        os.environ.update(saved)


def test_a_warm_kernel_gets_a_non_bmp_late_variable(tmp_path):
    """The spare, given the run's variables by the silent request, has them exactly."""
    folder = kernels.KernelFolder(parent=str(tmp_path))
    pool = kernels.KernelPool(folder)
    run_sync(pool.prestart)("python3", str(tmp_path), {})
    km, late, spare = pool.take("python3", str(tmp_path), {}, {"RUN": "r 🚀 \U0001d4b3"})
    assert spare
    kc = km.client()
    kc.start_channels()
    try:
        run_sync(kc.wait_for_ready)(timeout=120)
        reply = run_sync(kc.execute_interactive)(
            kernels.late_env_code(late), silent=True, store_history=False, timeout=60
        )
        assert reply["content"]["status"] == "ok", reply["content"]
        seen: list[str] = []
        run_sync(kc.execute_interactive)(
            "import os; print(ascii(os.environ['RUN']))",
            output_hook=lambda m: seen.append(m["content"].get("text", "")),
            timeout=60,
        )
        assert "".join(seen).strip() == ascii("r 🚀 \U0001d4b3")
    finally:
        kc.stop_channels()
        kernels.discard(km)
        pool.close()


def test_ipc_falls_back_to_tcp_when_the_socket_path_is_too_long(tmp_path):
    deep = tmp_path / ("d" * 120)
    deep.mkdir()
    assert not kernels.ipc_supported(str(deep))
    folder = kernels.KernelFolder(parent=str(deep))
    km = kernels.new_manager("python3", folder)
    assert km.transport == "tcp"
    folder.remove()


def _alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.slow
@pytest.mark.xdist_group("dask")  # on the worker that runs the cluster tests, not beside them
@pytest.mark.parametrize("how", ["SIGTERM", "kill -9 of the process group"])
def test_the_spare_kernel_dies_with_the_batch(tmp_path, how):
    """While run 0 sleeps, its worker's spare for run 1 is up: stopping the batch (or
    SIGKILLing it with its forkserver and workers) leaves neither kernel running."""
    import signal
    import time

    from batch_support import pid_running, start_batch, wait_for

    nb = make_notebook(
        tmp_path / "sleeper.ipynb", ("i = 0", ["parameters"]), "import time\ntime.sleep(300)"
    )
    (tmp_path / "grid.yaml").write_text("i: [0, 1, 2]\n")
    uri = ready_store(tmp_path / "store")
    env = _isolated_env(tmp_path)
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # start_batch passes this process's environment on
    try:
        proc = start_batch(
            nb,
            "--grid",
            tmp_path / "grid.yaml",
            "-j",
            "1",
            cwd=tmp_path,
            uri=uri,
            log=tmp_path / "batch.log",
        )
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    marker = str(tmp_path / "tmp")
    try:
        kernels_up = wait_for(
            lambda: (lambda ps: ps if len(ps) == 2 else None)(_kernel_processes(marker)),
            300,
            "the run's kernel and the spare",
        )
        pids = [p.pid for p in kernels_up]
        templates = [p.pid for p in _template_processes(marker)]
        assert len(templates) == 1  # forked from the worker's template
        assert all(p.ppid() == templates[0] for p in kernels_up)
        time.sleep(1)
        if how == "SIGTERM":
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=120) == 128 + signal.SIGTERM
        else:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        wait_for(lambda: not any(pid_running(p) for p in pids), 60, "both kernels to be gone")
        assert _kernel_processes(marker) == []
        wait_for(lambda: not pid_running(templates[0]), 60, "the template to be gone")
        if how == "SIGTERM":
            assert list((tmp_path / "tmp").iterdir()) == []
        else:  # nobody was left to remove the folder: the next batch does
            from jupyter_repro.batch.executors import MP_DIR_PREFIX
            from jupyter_repro.processes import remove_stale_folders

            left = list((tmp_path / "tmp").glob("jrepro-batch-*"))
            assert len(left) == 1, left
            assert remove_stale_folders("jrepro-batch-", tmp_path / "tmp") == left
            # the forkserver's socket folder (in /tmp when $TMPDIR is too long for it)
            mp = [f for f in _owned_by(proc.pid, MP_DIR_PREFIX, tmp_path / "tmp", "/tmp")]
            assert len(mp) == 1, mp
            # (other killed batches' folders in a shared /tmp go too)
            assert mp[0] in remove_stale_folders(MP_DIR_PREFIX, mp[0].parent)
            assert not mp[0].exists()
            assert list((tmp_path / "tmp").glob("jrepro-*")) == []
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        for p in _kernel_processes(marker):
            p.kill()


def _owned_by(pid: int, prefix: str, *roots) -> list[Path]:
    """Folders ``<root>/<prefix>*`` whose owner record names ``pid``."""
    from jupyter_repro.processes import OWNER_FILE

    found = []
    for root in roots:
        for folder in Path(root).glob(prefix + "*"):
            try:
                if json.loads((folder / OWNER_FILE).read_text())["pid"] == pid:
                    found.append(folder)
            except (OSError, ValueError, KeyError):
                continue
    return found


def test_a_batch_runs_under_a_temp_dir_too_long_for_a_socket(tmp_path):
    """A long ``$TMPDIR`` (a CI job's, pytest's ``tmp_path`` under xdist): the forkserver's
    socket would not fit ``sun_path`` there (``OSError: AF_UNIX path too long`` on
    CPython 3.11); the batch runs, and leaves no folder of its own behind."""
    deep = tmp_path / ("t" * 100)
    deep.mkdir()
    nb = make_notebook(tmp_path / "n.ipynb", ("i = 0", ["parameters"]), "print(i)")
    uri = ready_store(tmp_path / "store")
    done = batch(nb, "-p", "i", "1", cwd=tmp_path, uri=uri, env={"TMPDIR": str(deep)})
    assert done.returncode == 0, done.stdout + done.stderr
    assert [r.info.status for r in runs_of(uri, "n")] == ["FINISHED"]
    assert list(deep.iterdir()) == []


def test_stale_kernel_folders_of_another_host_are_left_alone(tmp_path):
    """A temp dir shared with another host or container: a folder whose owner ran there
    is never judged by its pid here; one whose owner ran here and is gone is removed."""
    import subprocess
    import sys

    from jupyter_repro.batch.executors import KERNEL_DIR_PREFIX
    from jupyter_repro.processes import OWNER_FILE, host_key, remove_stale_folders

    def folder(name: str) -> Path:
        path = tmp_path / f"{KERNEL_DIR_PREFIX}{name}"
        path.mkdir()
        # the owner: a real process of this host, gone once it wrote its record
        code = (
            "import sys; from jupyter_repro.processes import write_owner; write_owner(sys.argv[1])"
        )
        subprocess.run([sys.executable, "-c", code, str(path)], check=True, timeout=120)
        return path

    dead_here = folder("here")
    record = json.loads((dead_here / OWNER_FILE).read_text())
    assert record["host"] == host_key()
    elsewhere = folder("elsewhere")
    (elsewhere / OWNER_FILE).write_text(json.dumps({**record, "host": "other-box/x/pid:[1]"}))
    unrecorded_host = folder("old")
    (unrecorded_host / OWNER_FILE).write_text(
        json.dumps({k: v for k, v in record.items() if k != "host"})
    )
    alive_here = tmp_path / f"{KERNEL_DIR_PREFIX}alive"
    alive_here.mkdir()
    from jupyter_repro.processes import write_owner

    write_owner(alive_here)

    assert remove_stale_folders(KERNEL_DIR_PREFIX, tmp_path) == [dead_here]
    assert not dead_here.exists()
    assert elsewhere.exists() and unrecorded_host.exists() and alive_here.exists()


def test_close_during_the_spares_launch_kills_it(tmp_path):
    """The batch-watch thread closes the pool while the main thread is launching the
    spare: close waits for the launch, the kernel is killed, nothing is left."""
    import threading
    import time

    folder = kernels.KernelFolder(parent=str(tmp_path))
    pool = kernels.KernelPool(folder)
    launcher = threading.Thread(
        target=lambda: run_sync(pool.prestart)("python3", str(tmp_path), {}), daemon=True
    )
    launcher.start()
    deadline = time.monotonic() + 60
    while (launching := pool._launching) is None:
        assert time.monotonic() < deadline and launcher.is_alive()
        time.sleep(0.001)
    pool.close()  # from another thread, mid-launch
    launcher.join(120)
    assert not launcher.is_alive()
    assert pool._spare is None and pool._launching is None
    assert launching.pid is None or not _alive(launching.pid)
    assert not os.path.exists(folder.path)
    assert _kernel_processes(str(tmp_path)) == []
    with pytest.raises(RuntimeError, match="closed"):
        pool.take("python3", str(tmp_path), {}, {})


def test_a_kernel_refusing_the_late_variables_is_killed_and_the_retry_starts_cold(tmp_path):
    """The spare refuses the run's variables (the request raises in the kernel): it is
    killed before the second kernel is taken, and that one is started now (``cold``),
    with the variables at launch; the run completes in it and the watchdog follows it."""
    import nbformat

    from jupyter_repro.batch.papermill_call import execute_notebook, papermill_ready
    from jupyter_repro.batch.supervise import RunState
    from jupyter_repro.notebook import read_notebook

    nb_path = make_notebook(tmp_path / "env.ipynb", "import os\nprint(os.environ['RUN'])")
    nb = papermill_ready(read_notebook(nb_path))
    folder = kernels.KernelFolder(parent=str(tmp_path))
    pool = kernels.KernelPool(folder)
    run_sync(pool.prestart)("python3", str(tmp_path), {})
    asked: list[bool] = []
    first: list = []

    def take_kernel(cold: bool) -> tuple:
        asked.append(cold)
        if not cold:  # the spare, whose late variables fail in the kernel (a NUL byte)
            km, _, spare = pool.take("python3", str(tmp_path), {}, {"RUN": "r1"})
            assert spare
            first.append(km)
            return km, {"RUN": "r1", "BAD": "nul\x00byte"}
        # the failed kernel is already gone when the retry asks for another
        assert not _alive(first[0].pid)
        km, late, spare = pool.take("python3", str(tmp_path), {}, {"RUN": "r1"}, cold=True)
        assert late == {} and not spare
        return km, late

    state = RunState("b")
    used: list = []
    try:
        executed = execute_notebook(nb, tmp_path / "out.ipynb", 120, state, take_kernel, used)
        assert asked == [False, True]
        assert len(used) == 2 and used[0] is first[0]
        assert state.kernel_pid == used[1].pid != first[0].pid
        text = "".join(o.get("text", "") for c in executed.cells for o in c.get("outputs", []))
        assert text.strip() == "r1"
        assert nbformat.validate(executed) is None
    finally:
        for km in used:
            kernels.discard(km)
        pool.close()
    assert _kernel_processes(str(tmp_path)) == []


@pytest.mark.parametrize("flag", [[], ["--no-fork-kernels"]], ids=["forked", "new_interpreters"])
def test_batch_forks_its_kernels_from_a_template_unless_told_not_to(tmp_path, flag):
    """By default a batch worker forks each run's kernel from its template; with
    ``--no-fork-kernels`` every kernel is a new interpreter (the worker's child)."""
    nb = make_notebook(
        tmp_path / "who.ipynb",
        ("i = 0", ["parameters"]),
        "import os, psutil\n"
        "print(' '.join(psutil.Process(os.getppid()).cmdline()), '|', hash('seed'))",
    )
    (tmp_path / "grid.yaml").write_text("i: [0, 1]\n")
    uri = ready_store(tmp_path / "store")
    proc = batch(nb, "--grid", tmp_path / "grid.yaml", *flag, "--json", tmp_path / "r.json",
                 cwd=tmp_path, uri=uri)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    import nbformat

    lines = []
    report = json.loads((tmp_path / "r.json").read_text())["runs"]
    assert [r["kernel_forked"] for r in report] == [not flag] * 2
    tags = {r.data.tags.get("jupyter_repro.kernel.forked") for r in runs_of(uri, "who")}
    assert tags == {"false" if flag else "true"}
    for run in report:
        executed = nbformat.read(run["output_path"], as_version=4)
        lines.append(executed.cells[-1].outputs[0]["text"].strip())
    parents = [line.split(" | ")[0] for line in lines]
    hashes = {line.split(" | ")[1] for line in lines}
    if flag:
        assert not any("_kernel_template.py" in p for p in parents), parents
        assert len(hashes) == 2
    else:
        assert all("_kernel_template.py" in p for p in parents), parents
        assert len(hashes) == 1  # one template, one hash seed (docs/batch.md)
