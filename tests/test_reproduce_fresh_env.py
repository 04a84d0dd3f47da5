"""``reproduce --fresh-env`` and ``jupyter-repro env`` (issue 17) with real components:
a real venv as the user's kernel environment, real PyPI packages installed with uv, a
real git repository, a real sqlite MLflow store, real kernels, the installed CLI.

The story: a run is logged while the user's kernel has ``tabulate 0.8.10``; the user then
upgrades to ``0.9.0`` (the notebook's metric follows the version). Plain ``reproduce``
reports the drift and a different metric; ``--fresh-env`` rebuilds the logged
environment and reproduces; a second call reuses the cached environment.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import git
import pytest
from batch_support import batch, client, make_notebook, ready_store, runs_of
from helpers import run_cli

from jupyter_repro.provenance.env import environment_fingerprint
from jupyter_repro.reproduce.fresh_env import uv_binary

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("fresh_env")]

KERNEL = "jrepro-test-user"
METRIC_CELL = (
    "import tabulate\n"
    "from IPython.display import display\n"
    "print(tabulate.tabulate([[1, 2.5]], tablefmt='plain'))\n"
    "minor = int(tabulate.__version__.split('.')[1])\n"
    "display({'application/vnd.jupyter-repro.metric+json':\n"
    "         {'name': 'tabulate_minor', 'value': float(minor * n), 'step': 0, 'timestamp': 0}},\n"
    "        raw=True)"
)


def uv(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    proc = subprocess.run([uv_binary(), *args], capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr
    return proc


def site_packages(venv: Path) -> Path:
    (found,) = glob.glob(str(venv / "lib" / "python3*" / "site-packages"))
    return Path(found)


def user_venv(root: Path) -> Path:
    """The user's kernel environment: a venv with ipykernel and tabulate 0.8.10, its
    other packages held at this test environment's versions (so uv's cache serves them)."""
    venv = root / "user-venv"
    uv("venv", "--quiet", "--python", sys.executable, str(venv))
    pins = root / "constraints.txt"
    pins.write_text(
        "\n".join(
            f"{d['name']}=={d['version']}"
            for d in environment_fingerprint()["distributions"]
            if d["origin"] == "index"
        )
    )
    uv(
        "pip", "install", "--quiet", "--python", str(venv / "bin" / "python"),
        "ipykernel", "tabulate==0.8.10", "-c", str(pins),
    )  # fmt: skip
    spec = root / "jupyter" / "kernels" / KERNEL
    spec.mkdir(parents=True)
    argv = [str(venv / "bin" / "python"), "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": "user venv", "language": "python"})
    )
    return venv


@pytest.fixture(scope="module")
def drifted(tmp_path_factory):
    """A run logged with tabulate 0.8.10 in the user's kernel; then tabulate upgraded."""
    root = tmp_path_factory.mktemp("freshenv")
    venv = user_venv(root)
    env = {"JUPYTER_PATH": str(root / "jupyter"), "JUPYTER_REPRO_ENV_CACHE": str(root / "envs")}
    repo = git.Repo.init(root / "project", initial_branch="main")
    with repo.config_writer() as cw:
        cw.set_value("user", "name", "T").set_value("user", "email", "t@example.com")
    kernelspec = {"name": KERNEL, "display_name": "user venv", "language": "python"}
    nb = make_notebook(
        root / "project" / "tab.ipynb", ("n = 1", ["parameters"]), METRIC_CELL,
        kernelspec=kernelspec,
    )  # fmt: skip
    repo.index.add(["tab.ipynb"])
    repo.index.commit("notebook")
    uri = ready_store(root / "store")
    proc = batch(nb, "-p", "n", "2", cwd=root / "project", uri=uri, env=env, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (run,) = runs_of(uri, "tab")
    assert run.data.metrics["tabulate_minor"] == 16.0
    # the user's environment drifts: tabulate upgraded
    uv("pip", "install", "--quiet", "--python", str(venv / "bin" / "python"), "tabulate==0.9.0")
    return {"root": root, "uri": uri, "run_id": run.info.run_id, "env": env, "venv": venv}


def jr(drifted, *args, timeout: float = 600):
    return run_cli(
        "jupyter-repro", *args, "--tracking-uri", drifted["uri"],
        env=drifted["env"], cwd=drifted["root"], timeout=timeout,
    )  # fmt: skip


def test_the_lock_names_the_kernels_packages_and_installs_by_hand(drifted, tmp_path):
    run_id = drifted["run_id"]
    arts = {a.path for a in client(drifted["uri"]).list_artifacts(run_id)}
    assert {"environment.json", "requirements.lock.txt"} <= arts
    proc = jr(drifted, "env", run_id)
    assert proc.returncode == 0, proc.stderr
    lock = proc.stdout
    lines = [ln for ln in lock.splitlines() if ln and not ln.startswith("#")]
    assert "tabulate==0.8.10" in lines and any(ln.startswith("ipykernel==") for ln in lines)
    assert not any(ln.startswith(("mlflow==", "jupyter-repro")) for ln in lines), (
        "the lock is the kernel's environment, not the orchestrating process's"
    )
    assert "# python 3." in lock
    env_json = json.loads(jr(drifted, "env", run_id, "--json").stdout)
    assert env_json["source"] == "kernel"
    assert env_json["python_executable"] == str(drifted["venv"] / "bin" / "python")
    assert {"name": "tabulate", "version": "0.8.10", "origin": "index"}.items() <= next(
        d for d in env_json["distributions"] if d["name"] == "tabulate"
    ).items()
    assert not any(k.upper() in ("PATH", "HOME") for k in env_json)  # no env var values
    # by hand: the artifact installs with `uv pip sync`
    (tmp_path / "requirements.lock.txt").write_text(lock)
    uv("venv", "--quiet", "--python", sys.executable, str(tmp_path / "byhand"))
    py = str(tmp_path / "byhand" / "bin" / "python")
    uv("pip", "sync", "--quiet", "--python", py, str(tmp_path / "requirements.lock.txt"))
    out = subprocess.run(
        [py, "-c", "import tabulate, ipykernel; print(tabulate.__version__)"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.stdout.strip() == "0.8.10", out.stderr


def test_plain_reproduce_reports_the_drift_and_a_different_metric(drifted, tmp_path):
    report = tmp_path / "r.json"
    proc = jr(drifted, "reproduce", drifted["run_id"], "--json", report)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stdout.startswith("differs:")
    assert "metric tabulate_minor: logged 16.0, now 18.0" in proc.stdout
    assert "tabulate: logged 0.8.10, now 0.9.0" in proc.stdout
    data = json.loads(report.read_text())
    assert data["environment"] == {"kind": "current"}
    assert (
        client(drifted["uri"]).get_run(data["new_run_id"]).data.tags["jupyter_repro.reproduce.env"]
        == "current"
    )


def test_fresh_env_rebuilds_the_logged_environment_and_reproduces(drifted, tmp_path):
    run_id, uri = drifted["run_id"], drifted["uri"]
    first = tmp_path / "first.json"
    proc = jr(drifted, "reproduce", run_id, "--fresh-env", "--json", first)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("reproduced:")
    assert "environment: rebuilt from the run's lock" in proc.stdout
    assert "packages: same versions as the logged environment" in proc.stdout
    r1 = json.loads(first.read_text())
    assert r1["environment"]["kind"] == "fresh" and r1["environment"]["reused"] is False
    env_dir = Path(r1["environment"]["path"])
    assert env_dir.parent == drifted["root"] / "envs"
    new = client(uri).get_run(r1["new_run_id"])
    assert new.data.metrics["tabulate_minor"] == 16.0
    assert new.data.tags["jupyter_repro.reproduces"] == run_id
    assert new.data.tags["jupyter_repro.reproduce.verdict"] == "reproduced"
    assert new.data.tags["jupyter_repro.reproduce.env"] == "fresh:" + r1["environment"]["lock_hash"]
    # the user's own environment was not touched
    assert (site_packages(drifted["venv"]) / "tabulate-0.9.0.dist-info").exists()
    # second call: the cached environment is reused, not rebuilt
    inode = (env_dir / "bin" / "python").lstat().st_ino
    second = tmp_path / "second.json"
    t0 = time.perf_counter()
    proc = jr(drifted, "reproduce", run_id, "--fresh-env", "--json", second)
    warm = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stdout + proc.stderr
    r2 = json.loads(second.read_text())
    assert r2["environment"]["reused"] is True and r2["environment"]["path"] == str(env_dir)
    assert (env_dir / "bin" / "python").lstat().st_ino == inode
    print(f"warm --fresh-env reproduce: {warm:.1f}s (env found in {r2['environment']['seconds']}s)")
    # --rebuild makes a new one at the same place
    third = tmp_path / "third.json"
    proc = jr(drifted, "reproduce", run_id, "--fresh-env", "--rebuild", "--json", third)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(third.read_text())["environment"]["reused"] is False
    assert not list((drifted["root"] / "envs").glob(".*.tmp-*"))  # no half-built env left
    # env diff between the fresh reproduction and the drifted one
    plain = [
        r for r in runs_of(uri, "tab")
        if r.data.tags.get("jupyter_repro.reproduce.env") == "current"
    ]  # fmt: skip
    if plain:
        proc = jr(drifted, "env", "diff", r1["new_run_id"], plain[0].info.run_id)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert "  ~ tabulate 0.8.10 -> 0.9.0" in proc.stdout
    proc = jr(drifted, "env", "diff", run_id, r1["new_run_id"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "same Python and packages" in proc.stdout


def test_env_diff_against_the_current_environment(drifted):
    proc = jr(
        drifted,
        "env",
        "diff",
        drifted["run_id"],
        "--python",
        str(drifted["venv"] / "bin" / "python"),
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[1:] == ["  ~ tabulate 0.8.10 -> 0.9.0"]
    proc = jr(drifted, "env", "diff", drifted["run_id"])  # this interpreter: much more
    assert proc.returncode == 1 and "  + mlflow " in proc.stdout
    proc = jr(drifted, "env", "no-such-run")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1


def _other_minor_python() -> str | None:
    mine = f"{sys.version_info[0]}.{sys.version_info[1]}"
    candidates = (
        glob.glob("/root/.pyenv/versions/3.*/bin/python3.*")
        + glob.glob("/usr/bin/python3.*")
        + glob.glob("/usr/local/bin/python3.*")
    )
    for exe in sorted(candidates):
        if exe.endswith("-config") or not os.access(exe, os.X_OK):
            continue
        try:
            out = subprocess.run(
                [exe, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                capture_output=True, text=True, timeout=30,
            ).stdout.strip()  # fmt: skip
        except OSError:
            continue
        if out and out != mine and int(out.split(".")[1]) >= 8:
            return exe
    return None


def test_another_python_minor_is_one_line_and_exit_2(drifted):
    other = _other_minor_python()
    if other is None:
        pytest.skip("no interpreter of another Python minor version on this machine")
    proc = jr(drifted, "reproduce", drifted["run_id"], "--fresh-env", "--python", other)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    logged = json.loads(jr(drifted, "env", drifted["run_id"], "--json").stdout)["python_version"]
    assert f"ran on Python {logged}" in line and f"--python {other} is Python 3." in line
    assert not proc.stdout


def test_a_version_the_index_does_not_have_is_named_and_exit_2(drifted):
    """A distribution installed by something other than the index (here: written by
    hand, as a distro or a private build would) at a version PyPI does not have."""
    site = site_packages(drifted["venv"])
    fake = site / "colorama-0.0.1.dist-info"
    fake.mkdir()
    try:
        (fake / "METADATA").write_text("Metadata-Version: 2.1\nName: colorama\nVersion: 0.0.1\n")
        nb = drifted["root"] / "project" / "tab.ipynb"
        proc = batch(
            nb, "--experiment", "tab-fake", cwd=nb.parent, uri=drifted["uri"], env=drifted["env"],
            timeout=900,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stdout + proc.stderr
    finally:
        shutil.rmtree(fake)
    (run,) = runs_of(drifted["uri"], "tab-fake")
    proc = jr(drifted, "reproduce", run.info.run_id, "--fresh-env")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    # stderr: the "fresh env: building ..." progress line, then the one error line
    (line,) = [ln for ln in proc.stderr.splitlines() if ln.startswith("jupyter-repro: error")]
    assert "colorama==0.0.1 is not on the package index" in line
    assert not list((drifted["root"] / "envs").glob(".*.tmp-*"))
