"""nb-smoke end to end: the installed CLI, real IPython processes and real kernels.

Field cases F01, F04, F05, F07, F08, F09, F10 (../shared/field-cases.md) are here, each
checked in script mode and in kernel mode where the case says so.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import psutil
import pytest
from helpers import by_name, cli, make_notebook, run_cli, smoke_json

MODES = ["script", "kernel"]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- F01: magics, shell lines, cell magics, display() ------------------------------------
@pytest.mark.parametrize("mode", MODES)
def test_f01_magics_shell_lines_and_display_work(tmp_path, nb, mode):
    path = nb(
        "f01.ipynb",
        "%matplotlib inline\nimport matplotlib.pyplot as plt",
        "!echo shell-line",
        "%%bash\necho from-bash",
        "rows = [1, 2]\ndisplay(rows)\nprint('done')",
    )
    proc, report = smoke_json(tmp_path, path, "--mode", mode)
    assert proc.returncode == 0, proc.stdout
    entry = report["notebooks"][0]
    assert entry["status"] == "passed" and entry["mode"] == mode
    text = "".join(entry["output"].values())
    for expected in ("shell-line", "from-bash", "done", "[1, 2]"):
        assert expected in text


# -- F04: input() never hangs ------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
def test_f04_input_fails_at_once_with_open_stdin(tmp_path, nb, mode):
    path = nb("f_input.ipynb", "name = input('dataset name? ')", "print('using', name)")
    report = tmp_path / "r.json"
    started = time.monotonic()
    # An open pipe on stdin, as under pre-commit or make: `sleep 60 | nb-smoke ...`.
    sleeper = subprocess.Popen(["sleep", "60"], stdout=subprocess.PIPE)
    try:
        proc = subprocess.run(
            [cli("nb-smoke"), str(path), "--mode", mode, "--json", str(report)],
            stdin=sleeper.stdout,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        sleeper.kill()
    assert time.monotonic() - started < 10 + (5 if mode == "kernel" else 0)
    assert proc.returncode == 1
    failure = json.loads(report.read_text())["notebooks"][0]["failure"]
    assert failure["cell_index"] == 0
    assert failure["ename"] == "StdinNotImplementedError"


# -- F05: the notebook's folder is the working directory --------------------------------
@pytest.mark.parametrize("mode", MODES)
def test_f05_relative_paths_resolve_from_the_notebook_folder(tmp_path, mode):
    proj = tmp_path / "proj"
    (proj / "nbs" / "data").mkdir(parents=True)
    (proj / "nbs" / "data" / "small.csv").write_text("a,b\n1,2\n")
    make_notebook(
        proj / "nbs" / "load.ipynb",
        "import csv\nrows = list(csv.DictReader(open('data/small.csv')))",
        "print(len(rows))",
    )
    proc, report = smoke_json(tmp_path, "nbs/load.ipynb", "--mode", mode, cwd=proj)
    assert proc.returncode == 0, proc.stdout
    assert report["notebooks"][0]["output"]["1"].strip() == "1"


# -- F07: raises-exception that no longer raises ------------------------------------------
@pytest.mark.parametrize("mode", MODES)
def test_f07_raises_exception_tag_that_does_not_raise_is_a_warning(tmp_path, nb, mode):
    path = nb(
        "f_raises.ipynb",
        "values = [1, 2, 3]",
        (
            "# the author expects an IndexError here, but the list grew since\nvalues[2]",
            ["raises-exception"],
        ),
        "print('end')",
    )
    proc, report = smoke_json(tmp_path, path, "--mode", mode)
    assert proc.returncode == 0
    assert "cell 1" in proc.stdout and "raised nothing" in proc.stdout
    notices = report["notebooks"][0]["notices"]
    assert [(n["kind"], n["cell_index"]) for n in notices] == [
        ("raises_exception_did_not_raise", 1)
    ]
    strict = run_cli("nb-smoke", path, "--mode", mode, "--strict")
    assert strict.returncode == 1


@pytest.mark.parametrize("mode", MODES)
def test_raises_exception_tag_lets_the_cell_fail_and_the_run_continue(tmp_path, nb, mode):
    path = nb(
        "demo.ipynb",
        ("1 / 0", ["raises-exception"]),
        "print('after the demo error')",
        "undefined_name",
    )
    proc, report = smoke_json(tmp_path, path, "--mode", mode)
    failure = report["notebooks"][0]["failure"]
    assert proc.returncode == 1
    assert failure["cell_index"] == 2 and failure["ename"] == "NameError"
    assert "after the demo error" in report["notebooks"][0]["output"]["1"]


# -- F08: kernelspec not installed ---------------------------------------------------------
def test_f08_missing_kernelspec(tmp_path, nb):
    spec = {"name": "py39_projenv", "display_name": "Python (projenv)", "language": "python"}
    path = nb("f_kernel.ipynb", "print('hello')", kernelspec=spec)
    other = nb("other.ipynb", "print('other')")
    script = run_cli("nb-smoke", path)
    assert script.returncode == 0
    assert "kernelspec 'py39_projenv' is not installed" in script.stdout
    kernel = run_cli("nb-smoke", path, other, "--mode", "kernel")
    assert kernel.returncode == 2
    line = next(ln for ln in kernel.stdout.splitlines() if "f_kernel.ipynb" in ln)
    assert "py39_projenv" in line and "python3" in line and "--kernel" in line
    assert any(ln.startswith("PASS") and "other.ipynb" in ln for ln in kernel.stdout.splitlines())
    assert "Traceback" not in kernel.stdout + kernel.stderr
    assert run_cli("nb-smoke", path, "--mode", "kernel", "--kernel", "python3").returncode == 0


def test_forced_kernel_decides_the_language_in_script_mode_as_in_a_kernel(tmp_path, nb):
    """A notebook that declares an R kernel but holds Python code (papermill's own
    ``notimplemented_translator.ipynb`` is one): ``--kernel python3`` makes nbclient,
    nbconvert and nbmake run it as Python; script mode gives the same verdict, in script
    mode (found by benchmarks/smoke_vs_peers.py --corpus installed --kernel python3)."""
    spec = {"name": "ir", "display_name": "R", "language": "R"}
    good = nb("r_py.ipynb", "msg = None\nprint('ran as', type(msg).__name__)", kernelspec=spec)
    bad = nb("r_bad.ipynb", "msg <- NULL", kernelspec=spec)
    without = run_cli("nb-smoke", good)
    assert without.returncode == 2 and "r notebook cannot run in script mode" in without.stdout
    assert "pass --kernel NAME" in without.stdout
    for mode in MODES:
        proc, report = smoke_json(tmp_path, good, bad, "--mode", mode, "--kernel", "python3")
        entries = by_name(report)
        assert entries["r_py.ipynb"]["status"] == "passed", (mode, proc.stdout)
        assert entries["r_py.ipynb"]["mode"] == mode, "no detour through another mode"
        assert "ran as NoneType" in entries["r_py.ipynb"]["output"]["0"]
        assert not entries["r_py.ipynb"]["notices"], entries["r_py.ipynb"]["notices"]
        assert entries["r_bad.ipynb"]["status"] == "failed"
        assert entries["r_bad.ipynb"]["failure"]["cell_index"] == 0


# -- F09 / F10: parameters keep their types; unknown names stop the run ----------------------
PARAMS_CELL = 'lr = 0.1\nlayers = [8, 8]\nopts = {"seed": 0}\noffset = 0\ntag = None'
SHOW = "for k in ['lr', 'layers', 'opts', 'offset', 'tag']:\n    print(k, repr(globals()[k]), type(globals()[k]).__name__)"


@pytest.mark.parametrize("mode", MODES)
def test_f09_parameter_values_keep_their_types(tmp_path, nb, mode):
    path = nb("f_pm.ipynb", (PARAMS_CELL, ["parameters"]), SHOW)
    args = [
        "-p",
        "lr",
        "1e-3",
        "-p",
        "layers",
        "[16, 16]",
        "-p",
        "opts",
        '{"seed": 1}',
        "-p",
        "offset",
        "-1",
        "-p",
        "tag",
        "null",
    ]
    proc, report = smoke_json(tmp_path, path, "--mode", mode, *args)
    assert proc.returncode == 0, proc.stdout
    printed = report["notebooks"][0]["output"]["1"]
    assert "lr 0.001 float" in printed
    assert "layers [16, 16] list" in printed
    assert "opts {'seed': 1} dict" in printed
    assert "offset -1 int" in printed
    assert "tag None NoneType" in printed
    assert digest(path) == digest(path)  # sanity for the next line's helper
    assert "injected-parameters" not in path.read_text()


def test_f09_parameters_file_uses_yaml_1_2(tmp_path, nb):
    path = nb("f_pm.ipynb", (PARAMS_CELL, ["parameters"]), SHOW)
    params = tmp_path / "p.yaml"
    params.write_text("lr: 1e-3\nlayers: [16, 16]\nopts: {seed: 1}\noffset: -1\ntag: null\n")
    proc, report = smoke_json(tmp_path, path, "-f", params)
    printed = report["notebooks"][0]["output"]["1"]
    assert proc.returncode == 0
    assert "lr 0.001 float" in printed and "opts {'seed': 1} dict" in printed


def test_f09_type_mismatch_warns_naming_the_parameter(tmp_path, nb):
    path = nb("f_pm.ipynb", (PARAMS_CELL, ["parameters"]), SHOW)
    proc = run_cli("nb-smoke", path, "-p", "lr", '"fast"')
    assert proc.returncode == 0
    assert "parameter 'lr' gets a str" in proc.stdout


def test_f10_notebook_without_parameters_cell_is_an_error_before_running(tmp_path, nb):
    marker = tmp_path / "ran.txt"
    path = nb(
        "f_noparam.ipynb",
        f"alpha = 0.5\nopen({str(marker)!r}, 'w').write('x')",
        "print('alpha =', alpha)",
    )
    proc = run_cli("nb-smoke", path, "-p", "alpha", "0.1")
    assert proc.returncode == 2
    assert "f_noparam.ipynb" in proc.stdout and "no cell tagged 'parameters'" in proc.stdout
    assert not marker.exists(), "the notebook ran although its parameters were rejected"


def test_f10_misspelt_parameter_lists_the_known_names(tmp_path, nb):
    path = nb("f_typo.ipynb", ("alpha = 0.5", ["parameters"]), "print('alpha =', alpha)")
    proc = run_cli("nb-smoke", path, "-p", "alpah", "0.1")
    assert proc.returncode == 2
    assert "'alpah'" in proc.stdout and "alpha" in proc.stdout.split("'alpah'")[1]
    allowed, _report = smoke_json(tmp_path, path, "-p", "alpah", "0.1", "--allow-unknown")
    assert allowed.returncode == 0


@pytest.mark.parametrize(
    ("args", "cause"),
    [
        (["-p", "alpah", "0.1"], "unknown parameter 'alpah'; the parameters cell defines: alpha"),
        (["-f", "typo.yaml"], "unknown parameter 'alpah'"),
        (["-p", "beta", "1", "-p", "gamma", "2"], "unknown parameters 'beta', 'gamma'"),
    ],
)
def test_lint_only_validates_parameters_as_the_run_does(tmp_path, nb, args, cause):
    """``--lint-only -p/-f``: a value the run would refuse is refused by the lint too (one
    line naming the notebook and the cause, exit 2); other notebooks are still linted."""
    bad = nb("f_typo.ipynb", ("alpha = 0.5", ["parameters"]), "print('alpha =', alpha)")
    (tmp_path / "typo.yaml").write_text("alpah: 0.1\n")
    argv = [str(tmp_path / a) if a.endswith(".yaml") else a for a in args]
    before = digest(bad)
    for extra in ([], ["--lint-only"]):
        proc = run_cli("nb-smoke", *extra, bad, *argv)
        assert proc.returncode == 2, (extra, proc.stdout, proc.stderr)
        lines = [ln for ln in proc.stdout.splitlines() if "f_typo.ipynb" in ln]
        assert len(lines) == 1 and cause in lines[0], (extra, proc.stdout)
    assert digest(bad) == before
    # A notebook whose parameters cell defines the names is linted and passes beside it.
    good = nb("f_ok.ipynb", ("alpah = 0.5\nbeta = 0\ngamma = 0", ["parameters"]), "x = 1")
    proc, report = smoke_json(tmp_path, "--lint-only", bad, good, *argv)
    assert proc.returncode == 2
    status = {Path(n["path"]).name: n["status"] for n in report["notebooks"]}
    assert status == {"f_typo.ipynb": "error", "f_ok.ipynb": "passed"}
    # A value of another type than the default is a warning there, as on the run path.
    proc = run_cli("nb-smoke", "--lint-only", bad, "-p", "alpha", '"fast"')
    assert proc.returncode == 0 and "parameter 'alpha' gets a str" in proc.stdout


@pytest.mark.parametrize(
    ("text", "where", "cause"),
    [
        ("lr: 0.2\nn: [1, 2\nx: 3\n", "3:2", "expected ',' or ']', but got ':'"),
        ("lr: 0.2\nlr: 0.3\n", "2:1", 'found duplicate key "lr"'),
        ("a: b: c\n", "1:5", "mapping values are not allowed here"),
        ('lr: "0.2\n', "2:1", "found unexpected end of stream"),
        ("lr: *x\n", "1:5", "found undefined alias 'x'"),
    ],
)
@pytest.mark.parametrize("lint", [False, True])
def test_yaml_syntax_error_in_parameters_file_names_file_line_and_column(
    tmp_path, nb, text, where, cause, lint
):
    path = nb("f_pm.ipynb", ("lr = 0.1", ["parameters"]), "print(lr)")
    params = tmp_path / "params.yaml"
    params.write_text(text)
    proc = run_cli("nb-smoke", *(["--lint-only"] if lint else []), path, "-f", params)
    assert proc.returncode == 2
    err = proc.stderr.strip()
    assert "\n" not in err, err
    assert f"{params}:{where}: invalid YAML: {cause}" in err, err
    assert "f_pm.ipynb" not in proc.stdout, "nothing ran or was linted with a bad -f file"


# -- failures point at the cell ---------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
def test_syntax_error_is_reported_at_its_cell(tmp_path, nb, mode):
    cells = [f"x{i} = {i}" for i in range(40)] + ["y = 1\nz = (x3 +\n", "print('never')"]
    path = nb("syntax.ipynb", *cells)
    proc, report = smoke_json(tmp_path, path, "--mode", mode)
    failure = report["notebooks"][0]["failure"]
    assert proc.returncode == 1
    assert failure["cell_index"] == 40
    assert failure["ename"] == "SyntaxError"
    assert failure["line"] == 2
    assert failure["first_lines"].startswith("y = 1")
    assert "cell 40, line 2: SyntaxError" in proc.stdout


@pytest.mark.parametrize("mode", MODES)
def test_runtime_error_reports_cell_index_count_line_and_only_the_first_failure(tmp_path, mode):
    path = make_notebook(
        tmp_path / "err.ipynb",
        "#md intro",
        ("data = {'a': 1}", [], 4),
        ("x = 1\ny = data['missing']\nz = 3", [], 5),
        ("print(y)", [], 6),
    )
    proc, report = smoke_json(tmp_path, path, "--mode", mode)
    failure = report["notebooks"][0]["failure"]
    assert (failure["cell_index"], failure["execution_count"], failure["line"]) == (2, 5, 2)
    assert failure["ename"] == "KeyError" and "missing" in failure["evalue"]
    assert "cell 2 [In 5], line 2: KeyError" in proc.stdout
    assert proc.stdout.count("FAIL") == 1 and "NameError" not in proc.stdout


@pytest.mark.parametrize("mode", MODES)
def test_exception_in_a_rich_repr_fails_as_in_jupyter(tmp_path, nb, mode):
    path = nb(
        "repr.ipynb",
        "class Table:\n    def _repr_html_(self):\n        raise ValueError('bad html')\nTable()",
        "print('next')",
    )
    proc, report = smoke_json(tmp_path, path, "--mode", mode)
    failure = report["notebooks"][0]["failure"]
    assert proc.returncode == 1
    assert (failure["cell_index"], failure["ename"], failure["evalue"]) == (
        0,
        "ValueError",
        "bad html",
    )


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    "call", ["import sys\nsys.exit(0)", "import sys\nsys.exit(1)", "exit()", "quit()"]
)
def test_exit_in_a_cell_is_reported_not_mistaken_for_success(tmp_path, nb, mode, call):
    path = nb("exit.ipynb", "x = 1", call, "print('after exit')")
    proc, report = smoke_json(tmp_path, path, "--mode", mode)
    entry = report["notebooks"][0]
    assert proc.returncode == 1
    assert entry["failure"]["cell_index"] == 1
    assert entry["failure"]["ename"] == "SystemExit"
    assert "after exit" not in "".join(entry["output"].values())


@pytest.mark.parametrize("mode", MODES)
def test_skip_tags_are_not_run(tmp_path, nb, mode):
    path = nb(
        "skip.ipynb",
        ("raise RuntimeError('slow download')", ["skip-execution"]),
        ("raise RuntimeError('also skipped')", ["nb-smoke-skip"]),
        "print('ran')",
    )
    proc = run_cli("nb-smoke", path, "--mode", mode)
    assert proc.returncode == 0, proc.stdout


@pytest.mark.parametrize("mode", MODES)
def test_matplotlib_uses_the_inline_backend_as_in_a_kernel(tmp_path, nb, mode):
    path = nb(
        "plot.ipynb",
        "import matplotlib.pyplot as plt\nplt.plot([1, 2])\nplt.show()",
        "import matplotlib\nprint(matplotlib.get_backend())",
    )
    proc, report = smoke_json(tmp_path, path, "--timeout", "120", "--mode", mode)
    assert proc.returncode == 0, proc.stdout
    output = report["notebooks"][0]["output"]
    assert "matplotlib_inline" in output["1"]
    assert "Figure" in output["0"]  # the figure became an output (text/plain part shown)


def test_nothing_is_inherited_from_a_running_kernel(tmp_path, nb):
    path = nb(
        "env.ipynb",
        "import os\nprint(sorted((k, v) for k, v in os.environ.items() if k.startswith('JPY_')))",
    )
    env = {"JPY_PARENT_PID": "1", "JPY_SESSION_NAME": "/somewhere/else.ipynb"}
    _proc, report = smoke_json(tmp_path, path, env=env)
    # A fresh kernel gets JPY_PARENT_PID from the process that started it (issue 13's
    # fidelity suite); nothing comes from the kernel nb-smoke itself runs under.
    seen = eval(report["notebooks"][0]["output"]["0"].strip())
    assert [k for k, _v in seen] == ["JPY_PARENT_PID"] and seen[0][1] != "1"


# -- --fast -----------------------------------------------------------------------------------
def test_fast_runs_timeit_once(tmp_path, nb):
    calls = tmp_path / "calls.txt"
    path = nb(
        "timeit.ipynb",
        f"def work():\n    with open({str(calls)!r}, 'a') as fh:\n        fh.write('x')",
        "%timeit -n 50 -r 3 work()",
        "%%timeit -r 5\nwork()",
    )
    assert run_cli("nb-smoke", path, "--fast").returncode == 0
    assert calls.read_text() == "xx"
    calls.unlink()
    assert run_cli("nb-smoke", path).returncode == 0
    assert len(calls.read_text()) > 100


# -- timeouts kill the whole tree ---------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
def test_timeout_kills_the_notebook_and_its_children(tmp_path, nb, mode):
    pidfile = tmp_path / "child.pid"
    path = nb(
        "hang.ipynb",
        "import subprocess, time",
        f"p = subprocess.Popen(['sleep', '300'])\nopen({str(pidfile)!r}, 'w').write(str(p.pid))\ntime.sleep(300)",
    )
    quick = nb("quick.ipynb", "print('quick')")
    started = time.monotonic()
    proc, report = smoke_json(tmp_path, path, quick, "--timeout", "8", "--mode", mode, "-j", "2")
    assert time.monotonic() - started < 60
    entries = by_name(report)
    assert entries["hang.ipynb"]["status"] == "timed_out"
    assert entries["hang.ipynb"]["failure"]["cell_index"] == 1
    assert entries["quick.ipynb"]["status"] == "passed"
    assert proc.returncode == 1
    child = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while psutil.pid_exists(child) and time.monotonic() < deadline:
        try:
            if psutil.Process(child).status() == psutil.STATUS_ZOMBIE:
                break
        except psutil.NoSuchProcess:
            break
        time.sleep(0.1)
    alive = psutil.pid_exists(child) and psutil.Process(child).status() != psutil.STATUS_ZOMBIE
    assert not alive, "the notebook's child process survived the timeout"


# -- reports -------------------------------------------------------------------------------------
def test_json_and_junit_reports_describe_the_same_run(tmp_path, nb):
    good = nb("good.ipynb", "print(1)")
    bad = nb("bad.ipynb", "x = 1", "x.missing")
    junit = tmp_path / "out" / "junit.xml"
    proc, report = smoke_json(tmp_path, good, bad, "--junit-xml", junit)
    assert proc.returncode == 1
    assert report["schema_version"] == 1 and report["summary"]["failed"] == 1
    assert report["exit_code"] == 1
    suite = ET.parse(junit).getroot()
    assert suite.tag == "testsuite" and suite.get("tests") == "2" and suite.get("failures") == "1"
    cases = {Path(c.get("name")).name: c for c in suite.iter("testcase")}
    failure = cases["bad.ipynb"].find("failure")
    assert failure is not None and "cell 1, line 1: AttributeError" in failure.get("message")
    assert cases["good.ipynb"].find("failure") is None
    assert "nb-smoke: 1 passed, 1 failed" in proc.stdout


def test_exit_codes(tmp_path, nb):
    good = nb("good.ipynb", "1")
    bad = nb("bad.ipynb", "1/0")
    assert run_cli("nb-smoke", good).returncode == 0
    assert run_cli("nb-smoke", good, bad).returncode == 1
    assert run_cli("nb-smoke", good, tmp_path / "nope.ipynb").returncode == 2
    assert run_cli("nb-smoke", "--jobs", "0", good).returncode == 2
    assert run_cli("nb-smoke").returncode == 2


def test_notebooks_are_never_modified_and_no_temp_files_land_beside_them(tmp_path):
    folder = tmp_path / "nbs"
    make_notebook(folder / "a.ipynb", ("x = 1", [], 1), ("x", [], 2))
    make_notebook(folder / "b.ipynb", ("1/0", [], 1))
    make_notebook(folder / "c.ipynb", ("lr = 1", ["parameters"]), "print(lr)")
    before = {p.name: digest(p) for p in folder.iterdir()}
    for mode in MODES:
        run_cli("nb-smoke", folder, "--mode", mode, "-p", "lr", "2", "--allow-unknown")
    after = {p.name: digest(p) for p in folder.iterdir()}
    assert after == before


def test_parallel_jobs_check_every_notebook(tmp_path):
    for i in range(6):
        make_notebook(tmp_path / f"n{i}.ipynb", f"print({i})", *(["1/0"] if i == 3 else []))
    _proc, report = smoke_json(tmp_path, tmp_path, "-j", "3")
    statuses = {n: e["status"] for n, e in by_name(report).items()}
    assert statuses == {f"n{i}.ipynb": "failed" if i == 3 else "passed" for i in range(6)}


def test_umbrella_command_runs_smoke_too(tmp_path, nb):
    path = nb("a.ipynb", "print('via jupyter-repro')")
    proc = run_cli("jupyter-repro", "smoke", path)
    assert proc.returncode == 0 and "PASS" in proc.stdout
    jupyter = subprocess.run(
        [cli("jupyter"), "repro", "smoke", str(path)],
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": f"{Path(cli('jupyter')).parent}:{os.environ['PATH']}"},
    )
    assert jupyter.returncode == 0, jupyter.stderr


@pytest.mark.parametrize("mode", MODES)
def test_a_process_that_dies_mid_cell_fails_at_that_cell(tmp_path, nb, mode):
    path = nb("die.ipynb", "x = 1", "import os\nos._exit(3)", "print('never')")
    other = nb("ok.ipynb", "print('fine')")
    proc, report = smoke_json(tmp_path, path, other, "--mode", mode)
    entries = by_name(report)
    assert entries["die.ipynb"]["status"] == "failed"
    assert entries["die.ipynb"]["failure"]["cell_index"] == 1
    assert entries["die.ipynb"]["failure"]["ename"] == "DeadKernelError"
    assert entries["ok.ipynb"]["status"] == "passed"
    assert proc.returncode == 1


# -- regressions found in review -------------------------------------------------------------
def test_a_thread_left_running_does_not_hang_the_run(tmp_path, nb):
    path = nb(
        "thread.ipynb",
        "import threading, time\nthreading.Thread(target=lambda: time.sleep(1000)).start()",
        "print('after')",
    )
    started = time.monotonic()
    proc = run_cli("nb-smoke", path, "--timeout", "60")
    assert proc.returncode == 0, proc.stdout
    assert time.monotonic() - started < 30


@pytest.mark.parametrize("mode", MODES)
def test_a_dead_kernel_fails_even_in_a_raises_exception_cell(tmp_path, nb, mode):
    path = nb("die.ipynb", ("import os\nos._exit(1)", ["raises-exception"]), "print('later')")
    proc, report = smoke_json(tmp_path, path, "--mode", mode)
    assert proc.returncode == 1
    assert report["notebooks"][0]["failure"]["ename"] == "DeadKernelError"


def test_sigterm_kills_every_worker_and_exits_143(tmp_path, nb):
    pids = [tmp_path / f"child{i}.pid" for i in range(2)]
    paths = [
        nb(f"hang{i}.ipynb",
           f"import subprocess, time\np = subprocess.Popen(['sleep', '300'])\n"
           f"open({str(pid)!r}, 'w').write(str(p.pid))\ntime.sleep(300)")
        for i, pid in enumerate(pids)
    ]  # fmt: skip
    proc = subprocess.Popen(
        [cli("nb-smoke"), *map(str, paths), "-j", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not all(p.exists() and p.read_text() for p in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    proc.terminate()
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 143, err
    children = [int(p.read_text()) for p in pids]
    time.sleep(0.5)
    alive = [
        c for c in children
        if psutil.pid_exists(c) and psutil.Process(c).status() != psutil.STATUS_ZOMBIE
    ]  # fmt: skip
    assert not alive, "worker children survived SIGTERM"


def test_script_mode_writes_nothing_into_the_users_ipython_history(tmp_path, nb):
    ipython_dir = tmp_path / "ipython"
    path = nb("hist.ipynb", "secret_token_value = 12345")
    proc = run_cli("nb-smoke", path, env={"IPYTHONDIR": str(ipython_dir)})
    assert proc.returncode == 0
    for db in ipython_dir.rglob("history.sqlite"):
        assert b"secret_token_value" not in db.read_bytes()


@pytest.mark.parametrize("mode", MODES)
def test_the_users_ipython_profile_does_not_run(tmp_path, nb, mode):
    ipython_dir = tmp_path / "ipython"
    startup = ipython_dir / "profile_default" / "startup"
    startup.mkdir(parents=True)
    marker = tmp_path / "profile-ran"
    (startup / "00-mark.py").write_text(f"open({str(marker)!r}, 'w').write('x')\nHIDDEN = 1\n")
    path = nb("prof.ipynb", "print('HIDDEN' in globals())")
    _proc, report = smoke_json(tmp_path, path, "--mode", mode, env={"IPYTHONDIR": str(ipython_dir)})
    assert report["notebooks"][0]["output"]["0"].strip() == "False"
    assert not marker.exists()


@pytest.mark.parametrize("mode", MODES)
def test_fast_keeps_local_scope_and_tolerates_spacing(tmp_path, nb, mode):
    path = nb(
        "t.ipynb",
        "def f():\n    y = 3\n    %timeit y + 1\nf()",
        "%timeit  -n100000000 -r 50 sum(range(10))",
        "%timeit -n10 -r2 -o sum(range(5))",
    )
    proc = run_cli("nb-smoke", path, "--fast", "--mode", mode, "--timeout", "120")
    assert proc.returncode == 0, proc.stdout


def test_unwritable_report_path_is_an_error_before_running(tmp_path, nb):
    marker = tmp_path / "ran"
    path = nb("a.ipynb", f"open({str(marker)!r}, 'w')")
    proc = run_cli("nb-smoke", path, "--json", path / "r.json")
    assert proc.returncode == 2 and "--json" in proc.stderr and "Traceback" not in proc.stderr
    assert not marker.exists()
    folder = tmp_path / "a-folder"
    folder.mkdir()
    assert run_cli("nb-smoke", path, "--junit-xml", folder).returncode == 2


def test_junit_xml_survives_control_characters(tmp_path, nb):
    path = nb("c.ipynb", "raise ValueError('bad \\x1b[31mred\\x1b[0m \\x07 bell')")
    junit = tmp_path / "j.xml"
    proc = run_cli("nb-smoke", path, "--junit-xml", junit)
    assert proc.returncode == 1
    failure = ET.parse(junit).getroot().find("testcase/failure")
    assert "ValueError: bad red" in failure.get("message")


def test_output_piped_into_head_ends_quietly(tmp_path, nb):
    paths = [nb(f"n{i}.ipynb", "print(1)") for i in range(3)]
    shell = subprocess.run(
        f"{cli('nb-smoke')} {' '.join(map(str, paths))} -j 1 | head -1",
        shell=True, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert "Traceback" not in shell.stderr and "BrokenPipe" not in shell.stderr


@pytest.mark.parametrize(
    ("cell", "cause"),
    [
        ({"cell_type": "code", "metadata": [], "source": "1", "outputs": [], "execution_count": None}, "metadata is not a mapping"),
        ({"cell_type": "code", "metadata": {}, "source": 5, "outputs": [], "execution_count": None}, "source is not text"),
    ],
)  # fmt: skip
def test_malformed_cells_are_one_line_errors(tmp_path, cell, cause):
    path = tmp_path / "m.ipynb"
    path.write_text(
        json.dumps({"cells": [cell], "metadata": {}, "nbformat": 4, "nbformat_minor": 4})
    )
    for extra in ([], ["--lint-only"]):
        proc = run_cli("nb-smoke", path, *extra)
        assert proc.returncode == 2
        assert cause in proc.stdout and "internal error" not in proc.stdout


def test_absurdly_nested_code_is_not_an_internal_error(tmp_path, nb):
    path = nb("deep.ipynb", "x = " + "-" * 20000 + "1")
    proc = run_cli("nb-smoke", path, "--lint-only")
    assert "internal error" not in proc.stdout


# -- --mlflow: a smoke run logged like a batch run ---------------------------------------------
@pytest.mark.slow
def test_mlflow_logs_each_smoke_run_with_its_status_parameters_and_outputs(tmp_path, nb):
    import mlflow

    good = nb(
        "good.ipynb",
        ("rate = 0.1", ["parameters"]),
        "import jupyter_repro\njupyter_repro.record('score', rate * 10);",
    )
    bad = nb("bad.ipynb", ("rate = 0.1", ["parameters"]), "1 / 0")
    uri = f"sqlite:///{tmp_path / 'store.db'}"
    proc, report = smoke_json(
        tmp_path, good, bad, "--mlflow", "--tracking-uri", uri, "-p", "rate", "0.5", "-j", "2"
    )
    entries = by_name(report)
    client = mlflow.MlflowClient(uri)
    good_run = client.get_run(entries["good.ipynb"]["mlflow_run_id"])
    assert good_run.info.status == "FINISHED"
    assert good_run.data.params["rate"] == "0.5"
    assert good_run.data.metrics["score"] == 5.0
    assert good_run.data.tags["jupyter_repro.source"] == "nb-smoke"
    artifacts = {a.path for a in client.list_artifacts(good_run.info.run_id)}
    assert "notebook" in artifacts
    bad_run = client.get_run(entries["bad.ipynb"]["mlflow_run_id"])
    assert bad_run.info.status == "FAILED"
    assert proc.returncode == 1
