"""Where the time goes in ``jupyter-repro batch``, measured in one run.

For one grid of small runs it prints, per run:

- ``raw``: the notebook's code as a plain Python script (``python script.py``);
- ``papermill``: plain sequential ``papermill`` in this process (a fresh kernel per run,
  no logging) — the floor for "one clean kernel per run";
- ``batch -j 1``: ``jupyter-repro batch`` end to end (CLI start, store, papermill, MLflow
  params/metrics/artifacts/diff/env, heartbeat), wall time / runs, plus its phases;
- ``batch -j 2``: the same with two workers, and the throughput ratio against ``-j 1``.

Usage::

    python benchmarks/batch_overhead.py            # 8 runs
    python benchmarks/batch_overhead.py --runs 16

The store is created before timing (a new sqlite store costs seconds, once).
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

CELLS = [
    ("n = 1000\nseed = 0", ["parameters"]),
    ("import random\nrandom.seed(seed)\nxs = [random.random() for _ in range(n)]", []),
    ("mean = sum(xs) / len(xs)\nprint(round(mean, 4))", []),
    ("import jupyter_repro\njupyter_repro.record('mean', mean)", []),
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


def time_raw(folder: Path, seeds: list[int]) -> float:
    total = 0.0
    for seed in seeds:
        code = "\n".join(src for src, _ in CELLS[1:]).replace("import jupyter_repro\n", "")
        code = code.replace("jupyter_repro.record('mean', mean)", "")
        script = folder / "raw.py"
        script.write_text(f"n = 1000\nseed = {seed}\n{code}\n")
        t = time.perf_counter()
        subprocess.run([sys.executable, str(script)], check=True, capture_output=True)
        total += time.perf_counter() - t
    return total / len(seeds)


def time_papermill(nb: Path, folder: Path, seeds: list[int]) -> float:
    import papermill

    papermill.execute_notebook(str(nb), str(folder / "warm.ipynb"), progress_bar=False)
    t = time.perf_counter()
    for seed in seeds:
        papermill.execute_notebook(
            str(nb),
            str(folder / f"pm-{seed}.ipynb"),
            parameters={"seed": seed},
            progress_bar=False,
        )
    return (time.perf_counter() - t) / len(seeds)


def time_batch(nb: Path, folder: Path, seeds: list[int], jobs: int, uri: str) -> dict:
    grid = folder / "grid.yaml"
    grid.write_text(f"seed: {seeds}\n")
    report = folder / f"report-j{jobs}.json"
    exe = Path(sys.executable).parent / "jupyter-repro"
    t = time.perf_counter()
    proc = subprocess.run(
        [
            str(exe),
            "batch",
            str(nb),
            "--grid",
            str(grid),
            "-j",
            str(jobs),
            "--no-progress",
            "--tracking-uri",
            uri,
            "--experiment",
            f"bench-j{jobs}",
            "--json",
            str(report),
            "--output-dir",
            str(folder / "runs"),
        ],
        capture_output=True,
        text=True,
        cwd=folder,
    )
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(proc.stdout + proc.stderr)
    data = json.loads(report.read_text())
    runs = data["runs"]
    phases = {
        key: statistics.mean(r["timings"][key] for r in runs)
        for key in ("open_run", "execute", "close_run")
    }
    return {
        "wall": wall,
        "per_run": wall / len(seeds),
        "setup": data["setup_seconds"],
        "in_batch": data["wall_seconds"],
        "median_run": statistics.median(r["duration"] for r in runs),
        "phases": phases,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=8)
    args = parser.parse_args()
    seeds = list(range(args.runs))
    with tempfile.TemporaryDirectory(prefix="batch-bench-") as tmp:
        folder = Path(tmp)
        nb = make_notebook(folder)
        uri = f"sqlite:///{folder / 'store' / 'mlflow.db'}"
        from jupyter_repro.provenance.store import prepare_store

        prepare_store(uri)
        raw = time_raw(folder, seeds)
        pm = time_papermill(nb, folder, seeds)
        j1 = time_batch(nb, folder, seeds, 1, uri)
        j2 = time_batch(nb, folder, seeds, 2, uri)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"batch_overhead: {args.runs} runs of a small notebook, {os.cpu_count()} CPUs, "
        f"load {load:.1f}"
    )
    print(f"  raw script (python file.py)      {raw:6.2f} s/run")
    print(f"  plain papermill, sequential      {pm:6.2f} s/run")
    print(
        f"  jupyter-repro batch -j 1         {j1['per_run']:6.2f} s/run wall "
        f"({j1['wall']:.1f} s total incl. start-up; median run {j1['median_run']:.2f} s)"
    )
    print(
        f"      start-up: {j1['wall'] - j1['in_batch']:.1f} s "
        f"interpreter + imports + exit, {j1['setup']:.1f} s validation/provenance/workers/store"
    )
    ph = j1["phases"]
    print(
        f"      per run: open MLflow run {ph['open_run']:.2f} s, papermill {ph['execute']:.2f} s, "
        f"log + close {ph['close_run']:.2f} s"
    )
    print(
        f"  overhead vs papermill (median)   {j1['median_run'] - pm:+6.2f} s/run "
        f"({j1['median_run'] / pm:.2f}x)"
    )
    print(f"  overhead vs papermill (wall)     {j1['per_run'] - pm:+6.2f} s/run")
    print(
        f"  jupyter-repro batch -j 2         {j2['per_run']:6.2f} s/run wall "
        f"({j2['wall']:.1f} s total)"
    )
    print(f"  throughput -j 2 / -j 1           {j1['wall'] / j2['wall']:6.2f}x")


if __name__ == "__main__":
    main()
