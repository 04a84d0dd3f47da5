"""How long ``jupyter-repro reproduce --fresh-env`` takes to rebuild a run's environment
and re-run the notebook there, against building the same environment with plain pip,
measured in one invocation.

The setup is the one of ``tests/test_reproduce_fresh_env.py``: a user's kernel venv with
``ipykernel`` and ``tabulate`` (its other packages at this environment's versions), a small
notebook in a git repository run once with ``jupyter-repro batch``; its logged lock
(``requirements.lock.txt``, ~25 packages) is what gets rebuilt.

Measured, each from a clean state where it says so:

- ``fresh-env cold``: ``reproduce --fresh-env`` with an empty environment cache *and* an
  empty uv cache (every wheel downloaded from the index);
- ``fresh-env warm uv``: ``--rebuild`` with uv's cache warm (the environment made anew);
- ``fresh-env cached``: the second call: the environment is found by lock hash;
- ``plain reproduce``: in the user's current environment, for the re-run's own cost;
- ``pip cold`` / ``pip warm``: ``python -m venv`` + ``pip install -r requirements.lock.txt``
  of the same lock, with an empty and then a warm pip cache (``PIP_FIND_LINKS`` unset, so
  pip too reads the index only).

Usage::

    python benchmarks/reproduce_env.py            # one round
    python benchmarks/reproduce_env.py --rounds 3 # medians of 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
KERNEL = "jrepro-bench-user"
CELLS = [
    ("n = 1", ["parameters"]),
    (
        "import tabulate\nfrom IPython.display import display\n"
        "print(tabulate.tabulate([[1, 2.5]], tablefmt='plain'))\n"
        "minor = int(tabulate.__version__.split('.')[1])\n"
        "display({'application/vnd.jupyter-repro.metric+json':\n"
        "         {'name': 'tabulate_minor', 'value': float(minor * n), 'step': 0,"
        " 'timestamp': 0}}, raw=True)",
        [],
    ),
]


def uv_bin() -> str:
    from uv import find_uv_bin

    return find_uv_bin()


def run(cmd: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> float:
    """Run ``cmd``; return its wall time in seconds (raises if it fails)."""
    t0 = time.perf_counter()
    proc = subprocess.run(
        cmd, capture_output=True, text=True, env={**os.environ, **(env or {})}, cwd=cwd
    )
    wall = time.perf_counter() - t0
    if proc.returncode not in (0, 1):  # reproduce exits 1 for "differs"
        raise SystemExit(f"{' '.join(map(str, cmd))} failed:\n{proc.stdout}\n{proc.stderr}")
    return wall


def setup(root: Path) -> tuple[str, str, dict[str, str]]:
    """User venv + kernelspec, a git project, one logged run; returns (uri, run id, env)."""
    from jupyter_repro.provenance.env import environment_fingerprint
    from jupyter_repro.provenance.store import prepare_store

    venv = root / "user-venv"
    run([uv_bin(), "venv", "--quiet", "--python", sys.executable, str(venv)])
    pins = root / "constraints.txt"
    pins.write_text(
        "\n".join(
            f"{d['name']}=={d['version']}"
            for d in environment_fingerprint()["distributions"]
            if d["origin"] == "index"
        )
    )
    py = str(venv / "bin" / "python")
    run([uv_bin(), "pip", "install", "--quiet", "--python", py, "ipykernel", "tabulate==0.8.10",
         "-c", str(pins)])  # fmt: skip
    spec = root / "jupyter" / "kernels" / KERNEL
    spec.mkdir(parents=True)
    argv = [py, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": "bench", "language": "python"})
    )
    project = root / "project"
    project.mkdir()
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": KERNEL, "display_name": "bench", "language": "python"}
    for source, tags in CELLS:
        cell = nbformat.v4.new_code_cell(source)
        cell.metadata["tags"] = tags
        nb.cells.append(cell)
    nbformat.write(nb, project / "tab.ipynb")
    for args in (["init", "-q", "-b", "main"], ["add", "tab.ipynb"],
                 ["-c", "user.name=b", "-c", "user.email=b@example.com", "commit", "-qm", "nb"]):  # fmt: skip
        subprocess.run(["git", *args], cwd=project, check=True)
    uri = f"sqlite:///{root / 'store' / 'mlflow.db'}"
    (root / "store").mkdir()
    prepare_store(uri)
    env = {"JUPYTER_PATH": str(root / "jupyter"), "MLFLOW_TRACKING_URI": uri}
    run([str(BIN / "jupyter-repro"), "batch", str(project / "tab.ipynb"), "--no-progress"],
        env=env, cwd=project)  # fmt: skip
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("tab")
    (r,) = client.search_runs([exp.experiment_id])
    return uri, r.info.run_id, env


def reproduce(run_id: str, env: dict[str, str], report: Path, *extra: str) -> tuple[float, dict]:
    wall = run(
        [str(BIN / "jupyter-repro"), "reproduce", run_id, "--json", str(report), *extra], env=env
    )
    data = json.loads(report.read_text())
    if extra and data["verdict"] != "reproduced":
        raise SystemExit(f"--fresh-env did not reproduce: {data}")
    return wall, data


def one_round(root: Path, uri: str, run_id: str, env: dict[str, str]) -> dict[str, float]:
    out: dict[str, float] = {}
    cache = root / "envs"
    uv_cache = Path(tempfile.mkdtemp(prefix="uv-cache-", dir=root))
    fresh = {**env, "JUPYTER_REPRO_ENV_CACHE": str(cache), "UV_CACHE_DIR": str(uv_cache)}
    wall, data = reproduce(run_id, fresh, root / "r1.json", "--fresh-env")
    out["fresh-env cold: total"], out["fresh-env cold: env"] = wall, data["environment"]["seconds"]
    wall, data = reproduce(run_id, fresh, root / "r2.json", "--fresh-env", "--rebuild")
    out["fresh-env warm uv: total"] = wall
    out["fresh-env warm uv: env"] = data["environment"]["seconds"]
    wall, data = reproduce(run_id, fresh, root / "r3.json", "--fresh-env")
    assert data["environment"]["reused"], data["environment"]
    out["fresh-env cached: total"] = wall
    out["fresh-env cached: env"] = data["environment"]["seconds"]
    wall, _ = reproduce(run_id, env, root / "r4.json")
    out["plain reproduce: total"] = wall
    # the same lock with plain pip
    lock = root / "requirements.lock.txt"
    subprocess.run(
        [str(BIN / "jupyter-repro"), "env", run_id, "--tracking-uri", uri],
        stdout=lock.open("w"), check=True,
    )  # fmt: skip
    pip_cache = Path(tempfile.mkdtemp(prefix="pip-cache-", dir=root))
    pip_env = {"PIP_CACHE_DIR": str(pip_cache), "PIP_FIND_LINKS": ""}
    for label in ("pip cold: env", "pip warm: env"):
        target = Path(tempfile.mkdtemp(prefix="pip-env-", dir=root))
        t0 = time.perf_counter()
        run([sys.executable, "-m", "venv", str(target)])
        run([str(target / "bin" / "python"), "-m", "pip", "install", "-q",
             "--disable-pip-version-check", "-r", str(lock)], env=pip_env)  # fmt: skip
        out[label] = time.perf_counter() - t0
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    results: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="jrepro-bench-env-") as tmp:
        root = Path(tmp)
        uri, run_id, env = setup(root)
        n = sum(
            1
            for ln in subprocess.run(
                [str(BIN / "jupyter-repro"), "env", run_id, "--tracking-uri", uri],
                capture_output=True, text=True, check=True,
            ).stdout.splitlines()
            if ln and not ln.startswith("#")
        )  # fmt: skip
        for i in range(args.rounds):
            sub = root / f"round{i}"
            sub.mkdir()
            for k, v in one_round(sub, uri, run_id, env).items():
                results.setdefault(k, []).append(v)
    print(
        f"lock: {n} packages; {args.rounds} round(s), medians in seconds, load {os.getloadavg()[0]:.1f}"
    )
    width = max(map(len, results))
    for k, vs in results.items():
        print(f"  {k.ljust(width)}  {statistics.median(vs):7.2f}")
    med = {k: statistics.median(v) for k, v in results.items()}
    print(
        f"ratios: pip cold / uv cold env build = {med['pip cold: env'] / med['fresh-env cold: env']:.1f}x; "
        f"pip warm / uv warm = {med['pip warm: env'] / med['fresh-env warm uv: env']:.1f}x; "
        f"cached-env reproduce / plain reproduce = "
        f"{med['fresh-env cached: total'] / med['plain reproduce: total']:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
