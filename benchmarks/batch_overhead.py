"""``jupyter-repro batch`` against a plain papermill loop, measured in one run.

On the same N runs of a tiny notebook (one parameter set per run, a fresh kernel each):

- ``papermill loop``: one Python process running ``papermill.execute_notebook`` N times
  (no logging at all), wall time from starting the interpreter to its exit, as a user
  running such a script sees it;
- ``batch -j 1`` / ``batch -j 2``: ``jupyter-repro batch`` end to end (CLI start to exit:
  validation, provenance, store, workers, papermill, every run logged to MLflow with its
  five coordinates, artifacts, HTML, diff, environment lock);
- the CLI start-up: from starting ``jupyter-repro`` to its first kernel answering
  (from the report's ``runs[].started_at`` + ``timings.until_kernel``, same clock);
- ratios: ``batch -j 1`` wall / papermill loop wall (goal of issue 19: <= 0.6), and
  ``-j 2`` throughput / ``-j 1`` throughput (goal: >= 1.8 on 2 cores).

Also printed: a plain script of the same code (``python file.py``) and the per-run phases
of ``-j 1`` (open the MLflow run, papermill, log + close). The machine's load average is
printed with the figures: on a shared machine they move with it.

Usage::

    python benchmarks/batch_overhead.py            # 12 runs, 3 alternating rounds
    python benchmarks/batch_overhead.py --runs 24 --repeat 5

The store is created before timing (a new sqlite store costs seconds, once), and one
untimed run of each tool warms the file cache first (``--no-warmup`` skips that).
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

PAPERMILL_LOOP = """
import sys, time
t0 = time.time()
import papermill
nb, out, seeds = sys.argv[1], sys.argv[2], [int(s) for s in sys.argv[3].split(",")]
t1 = time.time()
for seed in seeds:
    papermill.execute_notebook(
        nb, f"{out}/pm-{seed}.ipynb", parameters={"seed": seed}, progress_bar=False
    )
print(t1 - t0, time.time() - t1)
"""


def make_notebook(folder: Path) -> Path:
    """The benchmark's four-cell notebook (parameters cell, a loop, a print, a metric)."""
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
    """Seconds per run of the notebook's code as a plain ``python script.py``."""
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


def time_papermill(nb: Path, folder: Path, seeds: list[int]) -> dict:
    """A papermill loop in one fresh process: wall (start to exit), import, loop seconds."""
    out = folder / "pm"
    out.mkdir(exist_ok=True)
    t = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", PAPERMILL_LOOP, str(nb), str(out), ",".join(map(str, seeds))],
        capture_output=True,
        text=True,
        cwd=folder,
    )
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(proc.stdout + proc.stderr)
    start, loop = (float(x) for x in proc.stdout.split()[-2:])
    return {"wall": wall, "import": start, "loop": loop, "per_run": wall / len(seeds)}


def time_batch(nb: Path, folder: Path, seeds: list[int], jobs: int, uri: str, tag: str) -> dict:
    """``jupyter-repro batch -j JOBS`` end to end, with its start-up and phases."""
    grid = folder / f"grid-{tag}.yaml"
    grid.write_text(f"seed: {seeds}\n")
    report = folder / f"report-{tag}.json"
    exe = Path(sys.executable).parent / "jupyter-repro"
    cmd = [str(exe), "batch", str(nb), "--grid", str(grid), "-j", str(jobs), "--no-progress"]
    cmd += ["--tracking-uri", uri, "--experiment", f"bench-{tag}", "--json", str(report)]
    cmd += ["--output-dir", str(folder / "runs")]
    spawned = time.time()
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=folder)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(proc.stdout + proc.stderr)
    data = json.loads(report.read_text())
    runs = data["runs"]
    launches = [
        r["started_at"] + r["timings"]["until_kernel"]
        for r in runs
        if r.get("started_at") and "until_kernel" in r.get("timings", {})
    ]
    first_kernel = min(launches) - spawned if launches else float("nan")
    phases = {
        key: statistics.mean(r["timings"].get(key, 0.0) for r in runs)
        for key in ("open_run", "execute", "close_run")
    }
    return {
        "wall": wall,
        "per_run": wall / len(seeds),
        "throughput": len(seeds) / wall,
        "first_kernel": first_kernel,
        "setup": data["setup_seconds"],
        "in_batch": data["wall_seconds"],
        "steady": len(seeds) / max(data["wall_seconds"] - data["setup_seconds"], 1e-9),
        "median_run": statistics.median(r["duration"] for r in runs),
        "phases": phases,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=12, help="runs per tool (default 12)")
    parser.add_argument("--no-warmup", action="store_true", help="skip the untimed warm-up")
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="rounds of (papermill loop, -j 1, -j 2), alternating; each figure is the round "
        "with the median wall time (default 3: a papermill loop alone varies by 40%% here)",
    )
    args = parser.parse_args()
    seeds = list(range(args.runs))
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="batch-bench-") as tmp:
        folder = Path(tmp)
        nb = make_notebook(folder)
        uri = f"sqlite:///{folder / 'store' / 'mlflow.db'}"
        from jupyter_repro.provenance.store import prepare_store

        prepare_store(uri)
        if not args.no_warmup:
            time_papermill(nb, folder, [0])
            time_batch(nb, folder, [0], 1, uri, "warmup")
        raw = time_raw(folder, seeds)
        rounds: dict[str, list[dict]] = {"pm": [], "j1": [], "j2": []}
        for _ in range(max(1, args.repeat)):
            rounds["pm"].append(time_papermill(nb, folder, seeds))
            rounds["j1"].append(time_batch(nb, folder, seeds, 1, uri, "j1"))
            rounds["j2"].append(time_batch(nb, folder, seeds, 2, uri, "j2"))
    load = os.getloadavg()

    def median_round(results: list[dict]) -> dict:
        return sorted(results, key=lambda r: r["wall"])[len(results) // 2]

    pm, j1, j2 = (median_round(rounds[k]) for k in ("pm", "j1", "j2"))
    n = args.runs
    print(
        f"batch_overhead: {n} runs of a 4-cell notebook, {os.cpu_count()} CPUs, load average "
        f"{load_before[0]:.1f} before / {load[0]:.1f} after (1 min), {load[1]:.1f} (5 min)"
    )
    walls = "; ".join(
        f"{name} " + ", ".join(f"{r['wall']:.1f}" for r in rounds[key])
        for name, key in (("papermill", "pm"), ("-j 1", "j1"), ("-j 2", "j2"))
    )
    print(f"  wall seconds of each round: {walls} (the median round is shown)")
    print(f"  raw script (python file.py)        {raw:6.2f} s/run")
    print(
        f"  papermill loop, one process        {pm['per_run']:6.2f} s/run wall  "
        f"({pm['wall']:.1f} s total: {pm['import']:.1f} s interpreter + import, "
        f"{pm['loop']:.1f} s loop; nothing logged)"
    )
    for name, r in (("-j 1", j1), ("-j 2", j2)):
        print(
            f"  jupyter-repro batch {name}           {r['per_run']:6.2f} s/run wall  "
            f"({r['wall']:.1f} s total; first kernel ready {r['first_kernel']:.1f} s "
            f"after CLI start; median run {r['median_run']:.2f} s)"
        )
    ph = j1["phases"]
    print(
        f"      -j 1 per run: open MLflow run {ph['open_run']:.2f} s, papermill "
        f"{ph['execute']:.2f} s, log + close {ph['close_run']:.2f} s; in-batch set-up "
        f"{j1['setup']:.1f} s"
    )
    print(f"  batch -j 1 wall / papermill loop   {j1['wall'] / pm['wall']:6.2f}x  (goal <= 0.6)")
    print(
        f"  throughput -j 2 / -j 1             {j2['throughput'] / j1['throughput']:6.2f}x  "
        f"(goal >= 1.8; after start-up: {j2['steady'] / j1['steady']:.2f}x)"
    )
    print(f"  CLI start-up to first kernel       {j1['first_kernel']:6.2f} s  (-j 1)")


if __name__ == "__main__":
    main()
