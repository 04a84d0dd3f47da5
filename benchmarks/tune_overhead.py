"""What ``jupyter-repro tune`` costs per trial over ``jupyter-repro batch``, in one run.

The same parameter sets go through both commands, alternately, with the same store and
``-j 1``:

- ``batch``: ``jupyter-repro batch --grid`` over the sets (a fresh kernel per run, logged
  to MLflow);
- ``tune``: ``jupyter-repro tune --sampler grid`` over the same sets as a categorical
  space (ask, validate, run through the same executor, tell, link trial and run, study
  plots), with the median pruner active but never pruning (``--pruner-startup-trials``
  above the trial count), so the in-kernel pruning channel (Optuna + MLflow imported by
  the kernel on its first ``record(..., step=)``) is part of the cost.

The notebook records its metric at three steps, so both pay for the same metric logging.
Printed: wall time per command, per-run means, and the per-trial overhead of tune
(``(tune wall - batch wall) / runs``) with its ratio to batch's per-run time.

With ``--baseline DIR`` (a checkout of an earlier commit, e.g. ``git worktree add
/tmp/base <commit>``), each round also runs ``tune`` from that tree (``PYTHONPATH=DIR``,
inherited by its workers and kernels), so a change is measured against its baseline
in the same run, under the same load.

Usage::

    python benchmarks/tune_overhead.py              # 4 parameter sets, 1 round
    python benchmarks/tune_overhead.py --runs 6 --rounds 2
    python benchmarks/tune_overhead.py --baseline /tmp/base
"""

from __future__ import annotations

import argparse
import atexit
import importlib.util
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

CELLS = [
    ("x = 0.0", ["parameters"]),
    ("loss = (x - 2.0) ** 2", []),
    (
        "import jupyter_repro\nfor k in range(3):\n"
        "    jupyter_repro.record('loss', loss + 3 - k, step=k)\n"
        "jupyter_repro.record('loss', loss, step=3)",
        [],
    ),
]


def make_notebook(folder: Path) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    for source, tags in CELLS:
        cell = nbformat.v4.new_code_cell(source)
        cell.metadata["tags"] = tags
        nb.cells.append(cell)
    path = folder / "bench.ipynb"
    nbformat.write(nb, path)
    return path


def exe(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def run(cmd: list[str], cwd: Path, uri: str, tree: str | None = None) -> tuple[float, dict]:
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    if tree:
        env["PYTHONPATH"] = tree
    report = cwd / "report.json"
    report.unlink(missing_ok=True)
    t = time.perf_counter()
    done = subprocess.run(
        [*cmd, "--json", str(report)], cwd=cwd, env=env, capture_output=True, text=True
    )
    wall = time.perf_counter() - t
    if done.returncode != 0:
        sys.exit(f"{cmd[1]} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return wall, json.loads(report.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=4, help="parameter sets (default 4)")
    parser.add_argument("--rounds", type=int, default=1, help="alternating rounds (default 1)")
    parser.add_argument(
        "--baseline", metavar="DIR", help="also run tune from this checkout, each round"
    )
    args = parser.parse_args()
    xs = [round(0.5 * i, 2) for i in range(args.runs)]
    work = Path(tempfile.mkdtemp(prefix="tune-bench-"))
    atexit.register(shutil.rmtree, work, True)  # its stores and runs, also after a failure
    nb = make_notebook(work)
    (work / "grid.yaml").write_text(f"x: {xs}\n")
    (work / "space.yaml").write_text(f"x: {{type: categorical, choices: {xs}}}\n")
    uri = f"sqlite:///{work / 'mlflow.db'}"
    from jupyter_repro.provenance.store import prepare_store

    prepare_store(uri)  # a new store costs seconds, once: not part of either command
    load_before = os.getloadavg()[0]
    batch_walls, tune_walls, batch_runs, tune_trials = [], [], [], []
    base_walls: list[float] = []
    base_trials: list[float] = []
    trees = [(None, tune_walls, tune_trials)]
    if args.baseline:
        trees.insert(0, (str(Path(args.baseline).resolve()), base_walls, base_trials))

    def tune_cmd(study: str) -> list[str]:
        return [
            exe("jupyter-repro"),
            "tune",
            str(nb),
            "--space",
            "space.yaml",
            "--trials",
            str(args.runs),
            "--metric",
            "loss",
            "--sampler",
            "grid",
            "--pruner",
            "median",
            "--pruner-startup-trials",
            str(args.runs + 1),
            "--study",
            study,
            "-j",
            "1",
        ]

    for r in range(args.rounds):
        wall, rep = run(
            [
                exe("jupyter-repro"),
                "batch",
                str(nb),
                "--grid",
                "grid.yaml",
                "-j",
                "1",
                "--no-progress",
            ],
            work,
            uri,
        )
        batch_walls.append(wall)
        batch_runs += [x["duration"] for x in rep["runs"]]
        for tree, walls, trials in trees:
            wall, rep = run(tune_cmd(f"bench-{r}-{'base' if tree else 'this'}"), work, uri, tree)
            assert all(t["state"] == "COMPLETE" for t in rep["trials"]), rep["trials"]
            walls.append(wall)
            trials += [t["duration"] for t in rep["trials"]]
    import optuna

    import jupyter_repro

    git = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        cwd=Path(__file__).parent,
    ).stdout.strip()
    print(
        f"tune_overhead: {os.cpu_count()} CPUs, load {load_before:.1f} -> "
        f"{os.getloadavg()[0]:.1f} (1-min average at start and end), Python "
        f"{platform.python_version()}, jupyter_repro {jupyter_repro.__version__} ({git}), "
        f"optuna {optuna.__version__}; {args.runs} parameter sets x {args.rounds} round(s), -j 1"
    )
    # Without cached bytecode every process (each kernel too) compiles what it imports:
    # Optuna, MLflow and scikit-learn cost seconds more per import than on a usual install.
    import optuna.study.study as probe

    cached = Path(importlib.util.cache_from_source(probe.__file__)).exists()
    print(
        f"  bytecode: {'cached' if cached else 'NOT cached (compiled on every import)'} for "
        f"site-packages{'; PYTHONDONTWRITEBYTECODE set' if sys.dont_write_bytecode else ''}"
    )
    b, t = statistics.median(batch_walls), statistics.median(tune_walls)
    per_run = b / args.runs
    print(
        f"  batch wall   {b:7.1f} s   ({per_run:.2f} s/run; run itself {statistics.mean(batch_runs):.2f} s)"
    )
    print(
        f"  tune wall    {t:7.1f} s   ({t / args.runs:.2f} s/trial; run itself {statistics.mean(tune_trials):.2f} s)"
    )
    over = (t - b) / args.runs
    print(f"  overhead     {over:+7.2f} s per trial  = {over / per_run:+.0%} of a batch run")
    print(
        f"  in the run   {statistics.mean(tune_trials) - statistics.mean(batch_runs):+7.2f} s per trial "
        "(pruning channel in the kernel, tell, links)"
    )
    if args.baseline:
        bt = statistics.median(base_walls)
        bover = (bt - b) / args.runs
        print(
            f"  baseline     {bt:7.1f} s   ({bt / args.runs:.2f} s/trial; run itself "
            f"{statistics.mean(base_trials):.2f} s) from {args.baseline}"
        )
        print(
            f"  baseline overhead {bover:+7.2f} s per trial = {bover / per_run:+.0%} of a batch run"
        )


if __name__ == "__main__":
    main()
