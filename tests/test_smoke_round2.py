"""Round 2 of ../shared/field-cases.md for nb-smoke, each case in script and kernel mode.

G01 (asyncio.run in a cell), G03 (sys.stdout.buffer), G05 (parameter types on
injection), G07 (displays updated in place), G12 (no process outlives its notebook) and
G13 (jupytext pairs out of sync). The kernel's verdict is the truth; script mode must give
the same one. Everything runs through the installed CLI with real kernels.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import nbformat
import pytest
from helpers import BIN, smoke_json

MODES = ["script", "kernel"]

FETCH = "import asyncio\nasync def fetch():\n    await asyncio.sleep(0)\n    return 41\n"


# -- G01: asyncio.run() / run_until_complete() in a cell -----------------------------------
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("call", "message"),
    [
        ("asyncio.run(fetch())", "cannot be called from a running event loop"),
        ("asyncio.get_event_loop().run_until_complete(fetch())", "already running"),
    ],
)
def test_g01_asyncio_run_fails_as_in_a_kernel(tmp_path, nb, mode, call, message):
    path = nb("g01.ipynb", FETCH + f"result = {call}", "print(result + 1)")
    proc, report = smoke_json(tmp_path, str(path), "--mode", mode)
    entry = report["notebooks"][0]
    assert proc.returncode == 1, proc.stdout
    assert entry["status"] == "failed" and entry["mode"] == mode
    failure = entry["failure"]
    assert failure["cell_index"] == 0 and failure["ename"] == "RuntimeError"
    assert message in failure["evalue"]


@pytest.mark.parametrize("mode", MODES)
def test_g01_top_level_await_and_the_kernels_loop_work(tmp_path, nb, mode):
    path = nb(
        "g01_ok.ipynb",
        FETCH + "result = await fetch()",
        "loop = asyncio.get_running_loop()\ntask = loop.create_task(fetch())",
        "print('got', result + 1, await task)",
    )
    proc, report = smoke_json(tmp_path, str(path), "--mode", mode)
    assert proc.returncode == 0, proc.stdout
    assert "got 42 41" in "".join(report["notebooks"][0]["output"].values())


# -- G03: the kernel's stdout has no .buffer -----------------------------------------------
@pytest.mark.parametrize("mode", MODES)
def test_g03_stdout_buffer_fails_as_in_a_kernel(tmp_path, nb, mode):
    path = nb(
        "g03.ipynb",
        "import sys\nsys.stdout.buffer.write('résumé\\n'.encode('utf-8'))",
        "print('next cell')",
    )
    proc, report = smoke_json(tmp_path, str(path), "--mode", mode)
    entry = report["notebooks"][0]
    assert proc.returncode == 1, proc.stdout
    assert entry["failure"]["cell_index"] == 0
    assert entry["failure"]["ename"] == "AttributeError"
    assert "'OutStream' object has no attribute 'buffer'" in entry["failure"]["evalue"]


@pytest.mark.parametrize("mode", MODES)
def test_g03_kind_text_only_stream_and_fd_writes(tmp_path, nb, mode):
    """The same kind: bytes to sys.stdout fail, writes to the fd and isatty() as a kernel."""
    path = nb(
        "g03_kind.ipynb",
        "import sys, os\nprint('tty', sys.stdout.isatty())\n"
        "os.write(sys.stdout.fileno(), b'')\nsys.stdout.write('text\\n')",
        ("sys.stdout.write(b'bytes')", ["raises-exception"]),
    )
    proc, report = smoke_json(tmp_path, str(path), "--mode", mode)
    entry = report["notebooks"][0]
    assert proc.returncode == 0, proc.stdout
    text = "".join(entry["output"].values())
    assert "tty False" in text and "text" in text
    assert "write() argument must be str" in entry["output"]["1"]


# -- G07: displays updated in place ----------------------------------------------------------
def _execute_and_save(path: Path) -> None:
    """Save the notebook as `jupyter nbconvert --execute` (the kernel truth) leaves it."""
    subprocess.run(
        [
            str(BIN / "jupyter"),
            "nbconvert",
            "--to",
            "notebook",
            "--execute",
            "--inplace",
            str(path),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )


@pytest.mark.parametrize("mode", MODES)
def test_g07_updated_displays_match_the_saved_notebook(tmp_path, nb, mode):
    same = nb(
        "g07_same_cell.ipynb",
        "h = display('step 0', display_id=True)\nfor i in range(1, 4):\n    h.update(f'step {i}')",
    )
    cross = nb(
        "g07_cross_cell.ipynb",
        "h = display('0', display_id=True)",
        "h.update('1')",
        "g = display('a', display_id='named')\nprint('between')",
        "from IPython.display import update_display\nupdate_display('b', display_id='named')",
    )
    for path in (same, cross):
        _execute_and_save(path)
    proc, report = smoke_json(
        tmp_path, str(same), str(cross), "--mode", mode, "--check-outputs", "--no-lint"
    )
    entries = {Path(e["path"]).name: e for e in report["notebooks"]}
    for name in ("g07_same_cell.ipynb", "g07_cross_cell.ipynb"):
        assert entries[name]["status"] == "passed", (name, entries[name])
    assert proc.returncode == 0
    assert "'step 3'" in entries["g07_same_cell.ipynb"]["output"]["0"]
    assert "'step 0'" not in entries["g07_same_cell.ipynb"]["output"]["0"]
    assert "'1'" in entries["g07_cross_cell.ipynb"]["output"]["0"]


@pytest.mark.parametrize("mode", MODES)
def test_g07_a_real_change_behind_an_update_is_still_caught(tmp_path, nb, mode):
    path = nb("g07_changed.ipynb", "h = display('0', display_id=True)", "h.update('1')")
    _execute_and_save(path)
    saved = nbformat.read(path, as_version=4)
    assert saved.cells[0].outputs[0]["data"]["text/plain"] == "'1'"
    saved.cells[0].outputs[0]["data"]["text/plain"] = "'2'"
    nbformat.write(saved, path)
    proc, report = smoke_json(tmp_path, str(path), "--mode", mode, "--check-outputs")
    entry = report["notebooks"][0]
    assert proc.returncode == 1 and entry["status"] == "failed"
    assert [d["cell_index"] for d in entry["output_differences"]] == [0]


# -- G05: tuple and int-keyed dict parameters keep their types ---------------------------------
G05_CELLS = (
    ("class_weight = {0: 1.0, 1: 1.0}\nshape = (2, 2)\nlabels = {'a'}", ["parameters"]),
    "rows, cols = shape\nprint('weight', class_weight[1], 'rows', rows, 'cols', cols)\n"
    "print('types', type(shape).__name__, type(labels).__name__, "
    "sorted(type(k).__name__ for k in class_weight))",
)


@pytest.mark.parametrize("mode", MODES)
def test_g05_tuple_set_and_int_keys_are_injected_as_they_were_parsed(tmp_path, nb, mode):
    path = nb("g05_types.ipynb", *G05_CELLS)
    store = tmp_path / "mlruns.db"
    proc, report = smoke_json(
        tmp_path, str(path), "--mode", mode,
        "-p", "shape", "(3, 4)", "-p", "class_weight", "{0: 1.0, 1: 5.0}",
        "-p", "labels", "{'x', 'y'}",
        "--mlflow", "--tracking-uri", f"sqlite:///{store}", "--experiment", "g05",
    )  # fmt: skip
    entry = report["notebooks"][0]
    assert proc.returncode == 0, proc.stdout
    text = entry["output"]["1"]
    assert "weight 5.0 rows 3 cols 4" in text
    assert "types tuple set ['int', 'int']" in text
    from mlflow.tracking import MlflowClient

    run = MlflowClient(f"sqlite:///{store}").get_run(entry["mlflow_run_id"])
    params = run.data.params
    # MLflow records the source the notebook received, so it evaluates to the same value.
    assert params["shape"] == "(3, 4)" and eval(params["shape"]) == (3, 4)
    assert eval(params["class_weight"]) == {0: 1.0, 1: 5.0}
    assert eval(params["labels"]) == {"x", "y"}


# -- G12: no process outlives its notebook -----------------------------------------------------
SLEEPER = (
    "import subprocess, sys, time\n"
    "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)'], "
    "start_new_session={session})\n"
    "open('{name}.pid', 'w').write(str(p.pid))\n"
)
GRANDCHILD = (
    "import subprocess, sys\n"
    "subprocess.run([sys.executable, '-c', \"import subprocess, sys; p = subprocess.Popen("
    "[sys.executable, '-c', 'import time; time.sleep(300)'], start_new_session=True); "
    "open('grandchild.pid', 'w').write(str(p.pid))\"], check=True)\n"
)


def _gone(pid: int, wait: float = 10) -> bool:
    """The process is dead (a zombie waiting for init to reap it counts as dead)."""
    import time

    import psutil

    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.2)
    return False


@pytest.mark.parametrize("mode", MODES)
def test_g12_nothing_the_notebook_started_survives_pass_fail_or_timeout(tmp_path, nb, mode):
    paths = [
        nb("g12_child.ipynb", SLEEPER.format(session=False, name="child")),
        nb("g12_detached.ipynb", SLEEPER.format(session=True, name="detached")),
        nb("g12_grandchild.ipynb", GRANDCHILD),
        nb("g12_failed.ipynb", SLEEPER.format(session=True, name="failed") + "1 / 0"),
        nb(
            "g12_detached_timeout.ipynb",
            SLEEPER.format(session=True, name="timeout") + "time.sleep(120)",
        ),
    ]
    proc, report = smoke_json(
        tmp_path, *map(str, paths), "--mode", mode, "--timeout", "40", "-j", "2", "--no-lint"
    )
    status = {Path(e["path"]).name: e["status"] for e in report["notebooks"]}
    assert status == {
        "g12_child.ipynb": "passed",
        "g12_detached.ipynb": "passed",
        "g12_grandchild.ipynb": "passed",
        "g12_failed.ipynb": "failed",
        "g12_detached_timeout.ipynb": "timed_out",
    }, proc.stdout
    pids = {f.stem: int(f.read_text()) for f in tmp_path.glob("*.pid")}
    assert set(pids) == {"child", "detached", "grandchild", "failed", "timeout"}
    alive = {name: pid for name, pid in pids.items() if not _gone(pid)}
    assert not alive, alive
    detached = next(e for e in report["notebooks"] if e["path"].endswith("g12_detached.ipynb"))
    assert any(n["kind"] == "processes_left" for n in detached["notices"])


@pytest.mark.parametrize("mode", MODES)
def test_g12_kill_9_of_nb_smoke_ends_its_worker_kernel_and_their_children(tmp_path, nb, mode):
    import signal
    import time

    import psutil
    from helpers import cli

    path = nb("g12_long.ipynb", SLEEPER.format(session=True, name="long") + "time.sleep(120)")
    # A temp dir of this test's own: another test's nb-smoke (under xdist) would remove
    # the killed run's folder from a shared one before this test looks for it.
    own_tmp = tmp_path / "tmp"
    own_tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(own_tmp)}
    proc = subprocess.Popen(
        [cli("nb-smoke"), str(path), "--mode", mode, "--no-lint", "-q"], env=env,
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        pid_file = tmp_path / "long.pid"
        deadline = time.monotonic() + 120
        while not pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert pid_file.exists(), "the notebook never started"
        time.sleep(0.5)
        below = psutil.Process(proc.pid).children(recursive=True)
        assert below, "nb-smoke has no worker"
        folders = [Path(f) for p in below for f in _tmp_folders(p)]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        survivors = [p.pid for p in below if not _gone(p.pid, wait=15)]
        assert not survivors, survivors
        assert _gone(int(pid_file.read_text()), wait=15)
    finally:
        if proc.poll() is None:
            proc.kill()
    # The next nb-smoke run removes the temporary folder the killed one left.
    assert folders and all(f.exists() for f in folders)
    ok = nb("ok.ipynb", "x = 1")
    assert all(f.parent == own_tmp for f in folders), folders
    subprocess.run([cli("nb-smoke"), str(ok), "-q", "--no-lint"], check=True, timeout=120, env=env)
    assert not any(f.exists() for f in folders)


def _tmp_folders(process) -> list[str]:
    """nb-smoke's private folder, from the worker's command line (spec.json's folder)."""
    import psutil

    try:
        return [str(Path(a).parent) for a in process.cmdline() if a.endswith("spec.json")]
    except psutil.Error:
        return []


# -- G13: a jupytext pair is checked once, from the inputs Jupyter opens -----------------------
PAIRED_PY = """# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %%
threshold = 1

# %%
print(threshold + 1)
"""


def _pair(tmp_path: Path, newer: str) -> tuple[Path, Path]:
    """analysis.ipynb + analysis.py synced by jupytext, then the .py edited; ``newer``
    says which file has the later modification time."""
    import os

    py = tmp_path / "analysis.py"
    py.write_text(PAIRED_PY)
    subprocess.run([str(BIN / "jupytext"), "--sync", str(py)], check=True, capture_output=True)
    ipynb = tmp_path / "analysis.ipynb"
    assert ipynb.exists()
    py.write_text(PAIRED_PY.replace("print(threshold + 1)", "print(cutoff + 1)"))
    base = ipynb.stat().st_mtime
    os.utime(py, (base + 5, base + 5) if newer == "py" else (base - 5, base - 5))
    return ipynb, py


@pytest.mark.parametrize("mode", MODES)
def test_g13_newer_text_file_gives_the_inputs_and_one_verdict(tmp_path, mode):
    ipynb, py = _pair(tmp_path, newer="py")
    for args in ([str(ipynb)], [str(ipynb), str(py)], ["--jupytext", str(tmp_path)]):
        proc, report = smoke_json(tmp_path, *args, "--mode", mode, "--no-lint")
        assert len(report["notebooks"]) == 1, (args, report["notebooks"])
        entry = report["notebooks"][0]
        assert proc.returncode == 1, (args, proc.stdout)
        assert entry["failure"]["ename"] == "NameError" and entry["failure"]["cell_index"] == 1
        assert any(n["kind"] == "jupytext_pair" for n in entry["notices"])
    assert "threshold + 1" in ipynb.read_text()  # nothing was written


@pytest.mark.parametrize("mode", MODES)
def test_g13_newer_ipynb_with_other_inputs_is_refused_in_one_line(tmp_path, mode):
    ipynb, py = _pair(tmp_path, newer="ipynb")
    proc, report = smoke_json(tmp_path, str(ipynb), str(py), "--mode", mode, "--no-lint")
    assert proc.returncode == 2
    assert len(report["notebooks"]) == 1
    assert "jupytext pair out of sync" in report["notebooks"][0]["error"]
    lines = [ln for ln in proc.stdout.splitlines() if "out of sync" in ln]
    assert len(lines) == 1 and "jupytext --sync" in lines[0]
