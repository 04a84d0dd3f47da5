"""``pytest --nb-smoke``: the real pytest, in a subprocess, on real notebooks."""

from __future__ import annotations

import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from helpers import make_notebook, run_cli

ROOT = Path(__file__).resolve().parents[1]


def pytest_run(cwd: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture
def project(tmp_path):
    """A project with one ordinary test, a passing and a failing notebook."""
    (tmp_path / "test_plain.py").write_text("def test_plain():\n    assert True\n")
    make_notebook(tmp_path / "good.ipynb", "x = 2", "print(x * 21)")
    make_notebook(tmp_path / "bad.ipynb", "y = 1", "print(threshold)", "print('after')")
    ckpt = tmp_path / ".ipynb_checkpoints"
    make_notebook(ckpt / "good-checkpoint.ipynb", "1/0")
    return tmp_path


def test_collection_does_not_change_without_the_option(project):
    plain = pytest_run(project, "--collect-only", "-q")
    assert "test_plain.py::test_plain" in plain.stdout
    assert ".ipynb" not in plain.stdout
    with_flag = pytest_run(project, "--collect-only", "-q", "--nb-smoke")
    collected = [ln for ln in with_flag.stdout.splitlines() if "::" in ln]
    assert sorted(collected) == [
        "bad.ipynb::bad.ipynb",
        "good.ipynb::good.ipynb",
        "test_plain.py::test_plain",
    ]
    # The project's own suite collects the same with the plugin as without it.
    own = pytest_run(ROOT, "--collect-only", "-q", "tests/test_analysis.py")
    without = pytest_run(
        ROOT, "--collect-only", "-q", "-p", "no:nb_smoke", "tests/test_analysis.py"
    )
    def items(proc):
        return [ln for ln in proc.stdout.splitlines() if "::" in ln]

    assert own.returncode == 0 and items(own) and items(own) == items(without)


def test_failing_cell_is_reported_with_the_clis_text(project):
    proc = pytest_run(project, "--nb-smoke", "good.ipynb", "bad.ipynb")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert re.search(r"1 failed, 1 passed", proc.stdout)
    cli = run_cli("nb-smoke", "bad.ipynb", cwd=project)
    fail_line = next(ln for ln in cli.stdout.splitlines() if ln.startswith("FAIL"))
    # The same line, without the timing in parentheses at its end.
    expected = re.sub(r" \(\d+\.\d s, script\)$", "", fail_line)
    assert expected == "FAIL  bad.ipynb: cell 1, line 1: NameError: name 'threshold' is not defined"
    assert expected in proc.stdout
    details = [ln for ln in cli.stdout.splitlines() if ln.startswith("    ")]
    assert details and all(d in proc.stdout for d in details)


@pytest.mark.slow
def test_xdist_junitxml_k_and_markers(project):
    make_notebook(project / "third.ipynb", "import math\nprint(math.pi)")
    junit = project / "report.xml"
    proc = pytest_run(project, "--nb-smoke", "-n", "2", "--junitxml", str(junit), "-q")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "2 failed" not in proc.stdout and re.search(r"1 failed, 3 passed", proc.stdout)
    suite = ET.parse(junit).getroot().find("testsuite")
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    assert set(cases) == {"bad.ipynb", "good.ipynb", "third.ipynb", "test_plain"}
    failure = cases["bad.ipynb"].find("failure")
    assert failure is not None and "NameError: name 'threshold'" in failure.get("message")
    only_good = pytest_run(project, "--nb-smoke", "-k", "good", "-q")
    assert only_good.returncode == 0 and re.search(r"1 passed, 3 deselected", only_good.stdout)
    no_notebooks = pytest_run(project, "--nb-smoke", "-m", "not nb_smoke", "-q")
    assert no_notebooks.returncode == 0
    assert re.search(r"1 passed, 3 deselected", no_notebooks.stdout)


@pytest.mark.slow
def test_config_tags_and_the_plugins_options(tmp_path):
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "p"\n\n[tool.nb-smoke]\nstrict = true\ntimeout = 300\n'
    )
    # Runs fine, but a lint warning fails it under strict = true (from the file).
    make_notebook(tmp_path / "warned.ipynb", "import random\nprint(random.random())")
    # A failing cell tagged skip-execution is not run (the cell tags hold).
    make_notebook(tmp_path / "tagged.ipynb", ("1/0", ["skip-execution"]), "print('ok')")
    make_notebook(tmp_path / "slow.ipynb", "import time\ntime.sleep(120)")
    proc = pytest_run(tmp_path, "--nb-smoke", "--nb-smoke-timeout", "3", "-q", "-rA")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert re.search(r"2 failed, 1 passed", proc.stdout), proc.stdout
    assert "PASSED tagged.ipynb::tagged.ipynb" in proc.stdout
    assert "FAIL  warned.ipynb: warnings are failures under --strict" in proc.stdout
    assert "warning: cell 0: unseeded_random" in proc.stdout
    assert "TIME  slow.ipynb: cell 0: Timeout: notebook exceeded 3 s" in proc.stdout
    # --nb-smoke-fast and a lint warning that is only a warning (no strict): a pytest warning.
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "p"\n')
    make_notebook(tmp_path / "timed.ipynb", "%timeit -n 1000000 -r 50 sum(range(100))")
    fast = pytest_run(
        tmp_path, "--nb-smoke", "--nb-smoke-fast", "warned.ipynb", "timed.ipynb", "-q"
    )
    assert fast.returncode == 0, fast.stdout + fast.stderr
    assert "NbSmokeWarning" in fast.stdout and "unseeded_random" in fast.stdout


def test_a_bad_config_value_is_one_line_not_a_traceback(tmp_path):
    (tmp_path / "pyproject.toml").write_text("[tool.nb-smoke]\ntimeout = -1\n")
    make_notebook(tmp_path / "nb.ipynb", "x = 1")
    proc = pytest_run(tmp_path, "--nb-smoke", timeout=300)
    assert proc.returncode == 1, proc.stdout
    assert "pyproject.toml" in proc.stdout and "timeout" in proc.stdout
    assert "Traceback" not in proc.stdout and "argparse" not in proc.stdout


@pytest.mark.slow
def test_timeit_runs_once_only_where_safe_and_full_timeit_forces_full_length(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "p"\n')
    # In full: 50 x 10**6 sums, minutes; the default runs it once (nothing outlives it).
    make_notebook(tmp_path / "timed.ipynb", "%timeit -n 1000000 -r 50 sum(range(100))")
    # A later cell counts the appends: full length by default, as in a fresh kernel.
    make_notebook(
        tmp_path / "grows.ipynb", "L = []", "%timeit L.append(1)", "assert len(L) > 1000"
    )
    proc = pytest_run(tmp_path, "--nb-smoke", "--nb-smoke-timeout", "60", "-q")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"2 passed", proc.stdout), proc.stdout
    full = pytest_run(
        tmp_path, "--nb-smoke", "--nb-smoke-full-timeit", "--nb-smoke-timeout", "5",
        "timed.ipynb", "-q",
    )  # fmt: skip
    assert full.returncode == 1 and "Timeout: notebook exceeded 5 s" in full.stdout, full.stdout
    # The same from [tool.nb-smoke] on the command line.
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "p"\n\n[tool.nb-smoke]\nfull-timeit = true\n'
    )
    cli_run = run_cli("nb-smoke", tmp_path / "timed.ipynb", "--timeout", "5", cwd=tmp_path)
    assert cli_run.returncode == 1 and "Timeout" in cli_run.stdout, cli_run.stdout
