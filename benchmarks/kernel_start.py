"""What a run waits for its kernel, measured in one run (issue 19, ``jupyter_repro.kernels``).

Prints, as medians over the repetitions:

- ``cold start``: a fresh kernel started when needed, from launch to
  jupyter_client's ``wait_for_ready`` (as papermill does: it ends with a fixed 0.2 s
  IOPub flush), over TCP and over IPC;
- ``new interpreter``: the same, over IPC, ready as batch now decides it (the kernel
  answered ``kernel_info`` and greeted its IOPub subscriber; ``kernels.client_class``);
- ``forked start``: a kernel forked from a template that imported ipykernel
  (``KernelPool(fork=True)``, what batch workers do), launch to ``kernel_info`` reply,
  the template already up; with the CPU seconds the kernel process used until then,
  next to a cold start's;
- ``batch -j 1 wait``: in a real ``jupyter-repro batch -j 1`` of RUNS runs of a tiny
  notebook, the seconds each run waited for its kernel (``timings.kernel_start`` in the
  ``--json`` report: short when the spare started during the previous run was ready),
  with the batch's wall time per run.

Usage::

    python benchmarks/kernel_start.py             # 5 cold starts per transport, 12 runs
    python benchmarks/kernel_start.py --starts 9 --runs 24

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


def cold_start(transport: str, starts: int, folder: Path) -> list[float]:
    """Seconds from launching a kernel to its kernel_info reply, ``starts`` times."""
    from jupyter_client import KernelManager

    times = []
    for i in range(starts):
        km = KernelManager(
            kernel_name="python3",
            transport=transport,
            connection_file=str(folder / f"cold-{transport}-{i}.json"),
        )
        t = time.perf_counter()
        km.start_kernel(extra_arguments=["--HistoryManager.hist_file=:memory:"])
        kc = km.client()
        kc.start_channels()
        kc.wait_for_ready(timeout=300)
        times.append(time.perf_counter() - t)
        COLD_CPU.append(_cpu(km.provisioner.pid))
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    return times


COLD_CPU: list[float] = []


def _cpu(pid: int) -> float:
    """CPU seconds (user + system) process ``pid`` has used."""
    import psutil

    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def forked_start(starts: int, folder: Path, fork: bool = True) -> tuple[list[float], list[float]]:
    """(seconds from asking to kernel_info reply, CPU seconds of the kernel until then)
    for ``starts`` kernels forked from a template (one untimed fork first), or with
    ``fork=False`` started as new interpreters the same way (same readiness check)."""
    from jupyter_core.utils import run_sync

    from jupyter_repro import kernels

    pool = kernels.KernelPool(kernels.KernelFolder(parent=str(folder)), warm=False, fork=fork)
    times, cpu = [], []
    try:
        for i in range(starts + 1):
            t = time.perf_counter()
            km = pool.take("python3", str(folder), {}, {}).km
            kc = km.client()
            kc.start_channels()
            run_sync(kc.wait_for_ready)(timeout=300)
            if i:
                times.append(time.perf_counter() - t)
                cpu.append(_cpu(km.pid))
            kc.stop_channels()
            kernels.discard(km)
    finally:
        pool.close()
    return times, cpu


def batch_waits(folder: Path, runs: int) -> tuple[list[float], float]:
    """(each run's kernel wait, wall seconds per run) of ``batch -j 1`` on ``runs`` runs."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    params = nbformat.v4.new_code_cell("seed = 0")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell("x = seed * 2\nprint(x)")]
    path = folder / "tiny.ipynb"
    nbformat.write(nb, path)
    (folder / "grid.yaml").write_text(f"seed: {list(range(runs))}\n")
    from jupyter_repro.provenance.store import prepare_store

    uri = f"sqlite:///{folder / 'mlflow.db'}"
    prepare_store(uri)
    exe = Path(sys.executable).with_name("jupyter-repro")
    report = folder / "report.json"
    t = time.perf_counter()
    subprocess.run(
        [
            exe,
            "batch",
            path,
            "--grid",
            folder / "grid.yaml",
            "-j",
            "1",
            "--no-progress",
            "--tracking-uri",
            uri,
            "--output-dir",
            folder / "out",
            "--json",
            report,
        ],
        check=True,
        capture_output=True,
        cwd=folder,
    )
    wall = time.perf_counter() - t
    data = json.loads(report.read_text())
    return [r["timings"]["kernel_start"] for r in data["runs"]], wall / runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=5)
    parser.add_argument("--runs", type=int, default=12)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kstart-") as tmp:
        folder = Path(tmp)
        tcp = cold_start("tcp", args.starts, folder)
        ipc = cold_start("ipc", args.starts, folder) if os.name == "posix" else []
        new, new_cpu = forked_start(args.starts, folder, fork=False)
        forked, forked_cpu = forked_start(args.starts, folder) if hasattr(os, "fork") else ([], [])
        waits, per_run = batch_waits(folder, args.runs)
    cold = statistics.median(tcp)
    print(f"cold start, TCP       : {cold * 1000:7.0f} ms  (median of {len(tcp)})")
    print(f"  kernel CPU until ready: {statistics.median(COLD_CPU) * 1000:5.0f} ms")
    if ipc:
        print(f"cold start, IPC       : {statistics.median(ipc) * 1000:7.0f} ms")
    n = statistics.median(new)
    print(f"new interpreter, IPC, ready once it answers: {n * 1000:5.0f} ms")
    print(f"  kernel CPU until ready: {statistics.median(new_cpu) * 1000:5.0f} ms")
    if forked:
        f = statistics.median(forked)
        print(f"forked start, IPC     : {f * 1000:7.0f} ms  ({f / n:.2f}x the new interpreter)")
        print(f"  kernel CPU until ready: {statistics.median(forked_cpu) * 1000:5.0f} ms")
    warm = statistics.median(waits[1:]) if len(waits) > 1 else waits[0]
    print(f"batch -j 1 first run  : {waits[0] * 1000:7.0f} ms  (no spare yet)")
    print(
        f"batch -j 1 wait       : {warm * 1000:7.0f} ms  (median of runs 2..{len(waits)}, "
        f"{warm / cold:.2f}x the cold start)"
    )
    print(f"batch -j 1 wall / run : {per_run:7.2f} s")


if __name__ == "__main__":
    main()
