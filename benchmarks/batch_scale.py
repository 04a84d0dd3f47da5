"""Grid throughput of ``jupyter-repro batch``: ``-j 1``, ``-j 2`` and on dask, in one run.

For each notebook it runs the same grid through the installed CLI
(``jupyter-repro batch NB --grid GRID --json FILE --no-progress``) four ways, one after the
other, each into its own fresh sqlite MLflow store and its own ``--output-dir``:

- ``-j 1``: the local pool, one run at a time;
- ``-j 2``: the local pool, two at a time;
- ``dask scheduler, 2 workers``: ``--executor dask --scheduler tcp://...`` on a real
  cluster this script starts (``dask scheduler`` and two ``dask worker --nthreads 1``
  processes on 127.0.0.1, next to ``sys.executable``), kept up for the whole benchmark as
  a team's cluster would be;
- ``dask LocalCluster -j 2``: ``--executor dask -j 2`` (the batch starts its own cluster).

What is reported, per configuration (medians over ``--rounds``):

- ``wall``: the whole CLI command, interpreter start to exit, start-up included;
- ``setup``: the report's ``setup_seconds``, the fixed start-up cost inside the batch
  (validation, provenance, executor and workers ready, experiment created);
- ``phase``: ``wall_seconds - setup_seconds``, from the first submitted run to the end of
  the batch (executor shut down); ``runs/min steady`` is computed from it, ``runs/min
  wall`` from ``wall``;
- ``median run``: the median of ``runs[].duration`` (MLflow run opened, papermill in a
  fresh kernel, artifacts logged, run closed), and its phases ``runs[].timings``;
- ratios of throughput against ``-j 1`` measured in the same round (median over rounds);
- the per-run overhead of each dask path against the local pool at the same concurrency
  (``-j 2``): the difference of median run durations, and of run-phase seconds per run
  (which also holds scheduling, shipping the notebook and returning the executed one);
- how long the CLI spends outside its own report (interpreter start, imports, exit) and
  how long its children outlive it (a caller that reads its output through pipes waits
  for them too; the next batch starts only once they are gone).

Environment: dask's nanny gives its workers, and so their kernels,
``OMP_NUM_THREADS=MKL_NUM_THREADS=OPENBLAS_NUM_THREADS=1``; the local pool's kernels
inherit this script's environment. ``--single-thread-blas`` sets the three for every
batch, to compare the executors under the same thread limits.

Warm-up: before the timed rounds, each configuration runs one untimed 1-run batch per
notebook (file cache; the long-lived cluster's workers import papermill/MLflow once, as
they would have long before on a team's cluster). Every timed batch still pays its own
start-up, which ``wall`` and ``setup`` show. Every second round runs the configurations in
reverse order, so drifting load on a shared machine does not always hit the same one.
Processes this script starts (the scheduler, the workers, each batch) lead their own
process groups and are stopped on the way out, also on Ctrl-C, SIGTERM or an error.

Usage::

    python benchmarks/batch_scale.py                       # 8 runs per notebook, 1 round
    python benchmarks/batch_scale.py --runs 16 --rounds 3
    python benchmarks/batch_scale.py --notebook NB.ipynb --grid GRID.yaml --json out.json
    python benchmarks/batch_scale.py --configs j1,dask --single-thread-blas

The default notebooks are the repository's ``example_notebooks/train_model.ipynb``
(grid ``C`` x ``seed``) and papermill's own test notebook ``report_mode_test.ipynb``
(grid ``a`` x ``b``), a third-party notebook with a ``parameters`` cell whose runs are
almost pure overhead (a fresh kernel that adds two numbers).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
BIN = Path(sys.executable).parent
CLI = BIN / "jupyter-repro"
DASK = BIN / "dask"

J1, J2, DASK_SCHED, DASK_LOCAL = (
    "-j 1",
    "-j 2",
    "dask scheduler, 2 workers",
    "dask LocalCluster -j 2",
)
CONFIG_KEYS = {"j1": J1, "j2": J2, "dask": DASK_SCHED, "localcluster": DASK_LOCAL}
#: Seconds a batch may take before it is interrupted and reported as failed.
BATCH_TIMEOUT = 900.0
#: What a dask nanny puts in its worker's environment (``distributed.nanny.pre-spawn-environ``),
#: which the worker's kernels inherit; ``--single-thread-blas`` gives it to every batch.
SINGLE_THREAD_BLAS = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
#: The environment of every process this script starts.
ENV: dict[str, str] = dict(os.environ)


@dataclass
class Workload:
    """One notebook and the grid every configuration runs."""

    name: str
    notebook: Path
    grid_text: str  # the grid file's content (YAML)
    description: str


@dataclass
class Config:
    """One way of running the grid: a name and the CLI options that select it."""

    name: str
    args: list[str]


@dataclass
class Measurement:
    """One timed batch: the CLI's wall time and what its ``--json`` report says."""

    config: str
    round: int
    wall: float = 0.0
    setup: float = 0.0
    in_batch: float = 0.0  # the report's wall_seconds
    durations: list[float] = field(default_factory=list)
    timings: list[dict[str, float]] = field(default_factory=list)
    split: list[int] = field(default_factory=list)  # runs per worker process, largest first
    linger: float = 0.0  # seconds its process group outlived the CLI (e.g. the forkserver)
    load1: float = 0.0  # 1-minute load average when the batch ended
    error: str = ""  # why the batch did not give a measurement

    @property
    def runs(self) -> int:
        return len(self.durations)

    @property
    def phase(self) -> float:
        """Seconds from the first submitted run to the end of the batch."""
        return self.in_batch - self.setup


# --- processes -------------------------------------------------------------------------


def _parent_death_signal() -> Any:
    """A ``preexec_fn`` that makes a child get SIGTERM when this process dies (Linux), so a
    scheduler or worker outlives neither a SIGKILLed benchmark; None elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)  # resolved here: the child only calls prctl
    pr_set_pdeathsig = 1

    def preexec() -> None:
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)

    return preexec


def _stop_group(proc: subprocess.Popen, first: int = signal.SIGTERM, grace: float = 15.0) -> None:
    """End ``proc`` and everything in its process group (it leads one: start_new_session).

    Sends ``first`` to the group, waits ``grace`` seconds for the leader and a little for
    the rest, then SIGKILLs whatever is left of the group.
    """
    try:
        os.killpg(proc.pid, first)
    except ProcessLookupError:
        pass
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        pass
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def _live_members(pgid: int) -> int:
    """How many processes of group ``pgid`` are still running (zombies, which hold no
    files and wait only for init to reap them, do not count)."""
    proc = Path("/proc")
    if not proc.is_dir():  # not Linux: any member, zombie or not
        try:
            os.killpg(pgid, 0)
            return 1
        except ProcessLookupError:
            return 0
    count = 0
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":  # state, ppid, pgrp, ...
            count += 1
    return count


def _group_gone(pgid: int, timeout: float) -> float:
    """Seconds until no process of group ``pgid`` is running (at most ``timeout``): how long
    a batch's children outlive it (its forkserver exiting), holding its stdout and stderr,
    and so that they do not overlap the next measurement."""
    t = time.perf_counter()
    while time.perf_counter() - t < timeout and _live_members(pgid):
        time.sleep(0.05)
    return time.perf_counter() - t


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def dask_cluster(folder: Path, workers: int = 2, timeout: float = 120.0) -> Iterator[str]:
    """A real ``dask scheduler`` and ``workers`` ``dask worker`` processes on 127.0.0.1.

    Yields the scheduler address once every worker has joined. Each process leads its own
    process group, so Ctrl-C in the terminal reaches only this script, which stops the
    workers and then the scheduler (SIGTERM, then SIGKILL) on the way out, whatever
    happened; on Linux they also get SIGTERM if this script is killed outright.

    Raises:
        SystemExit: the cluster did not come up within ``timeout`` (its logs are quoted).
    """
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    preexec = _parent_death_signal()
    procs: list[tuple[str, subprocess.Popen, Path]] = []

    def spawn(name: str, cmd: list[str]) -> None:
        log = folder / f"{name}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=preexec,
                env=ENV,
            )
        procs.append((name, proc, log))

    try:
        spawn(
            "scheduler",
            [str(DASK), "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
        )
        for i in range(workers):
            spawn(
                f"worker-{i}",
                [
                    str(DASK),
                    "worker",
                    address,
                    "--nthreads",
                    "1",
                    "--no-dashboard",
                    "--host",
                    "127.0.0.1",
                    "--name",
                    f"bench-{i}",
                    "--local-directory",
                    str(folder / f"worker-{i}"),
                    "--death-timeout",
                    "60",
                ],
            )
        from distributed import Client

        try:
            with Client(address, timeout=timeout) as client:
                client.wait_for_workers(workers, timeout=timeout)
        except (OSError, TimeoutError) as exc:
            logs = "\n".join(
                f"--- {n}\n{log.read_text(errors='replace')[-2000:]}" for n, _, log in procs
            )
            raise SystemExit(f"batch_scale: the dask cluster did not come up: {exc}\n{logs}")
        yield address
    finally:
        for _, proc, _ in reversed(procs):  # workers first, then the scheduler
            _stop_group(proc)


# --- one batch -------------------------------------------------------------------------


def run_batch(
    workload: Workload,
    config: Config,
    folder: Path,
    template_db: Path,
    grid: Path,
    round_no: int,
    timeout: float,
) -> Measurement:
    """Run the grid once through the CLI in ``config`` and read its ``--json`` report.

    ``folder`` must be new: it gets the fresh store (a copy of ``template_db``), the
    ``--output-dir`` and the report. A batch that fails, or exceeds ``timeout`` (it is then
    interrupted like Ctrl-C), gives a measurement with ``error`` set rather than an
    exception; Ctrl-C of this script interrupts the batch and propagates.
    """
    m = Measurement(config.name, round_no)
    (folder / "store").mkdir(parents=True)
    shutil.copyfile(template_db, folder / "store" / "mlflow.db")
    report = folder / "report.json"
    cmd = [
        str(CLI),
        "batch",
        str(workload.notebook),
        "--grid",
        str(grid),
        *config.args,
        "--tracking-uri",
        f"sqlite:///{folder / 'store' / 'mlflow.db'}",
        "--output-dir",
        str(folder / "runs"),
        "--json",
        str(report),
        "--no-progress",
    ]
    # Output to files, not pipes: the wall time is the CLI's own, start to exit. (A caller
    # reading pipes also waits for any child still holding them, measured as `linger`.)
    # Its own session: Ctrl-C is forwarded to it by _stop_group, as SIGINT, so the batch
    # ends its runs KILLED and shuts its workers down itself.
    with (folder / "stdout.txt").open("wb") as out, (folder / "stderr.txt").open("wb") as err:
        t = time.perf_counter()
        proc = subprocess.Popen(
            cmd,
            cwd=folder,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,
            env=ENV,
        )
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            _stop_group(proc, signal.SIGINT, grace=60.0)
            m.error = f"still running after {timeout:g} s; interrupted"
            return m
        except BaseException:
            _stop_group(proc, signal.SIGINT, grace=60.0)
            raise
        m.wall = time.perf_counter() - t
    m.linger = _group_gone(proc.pid, 30.0)
    m.load1 = os.getloadavg()[0]
    if proc.returncode != 0 or not report.exists():
        text = (folder / "stderr.txt").read_text(errors="replace").strip()
        tail = (text or (folder / "stdout.txt").read_text(errors="replace").strip()).splitlines()[
            -3:
        ]
        m.error = f"exit {proc.returncode}: " + " | ".join(tail)
        return m
    data = json.loads(report.read_text())
    bad = [r for r in data["runs"] if r["status"] != "FINISHED"]
    if bad:
        m.error = f"{len(bad)} run(s) not FINISHED: {bad[0]['status']} {bad[0]['reason'][:120]}"
        return m
    m.setup = data["setup_seconds"]
    m.in_batch = data["wall_seconds"]
    m.durations = [r["duration"] for r in data["runs"]]
    m.timings = [r["timings"] for r in data["runs"]]
    per_worker = Counter(r["worker"] for r in data["runs"])
    m.split = sorted(per_worker.values(), reverse=True)
    return m


# --- summaries -------------------------------------------------------------------------


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def summarize(ms: list[Measurement], baseline: list[Measurement]) -> dict[str, Any]:
    """Medians over rounds of one configuration; ratios are taken round by round against
    ``baseline`` (``-j 1``) of the same round, then their median."""
    ok = [m for m in ms if not m.error]
    if not ok:
        return {"error": ms[0].error if ms else "not run"}
    base = {m.round: m for m in baseline if not m.error}

    def phase_median(key: str) -> float:
        return _median([_median([t.get(key, 0.0) for t in m.timings]) for m in ok])

    return {
        "runs": ok[0].runs,
        "rounds": len(ok),
        "wall": _median([m.wall for m in ok]),
        "wall_range": [min(m.wall for m in ok), max(m.wall for m in ok)],
        "setup": _median([m.setup for m in ok]),
        "phase": _median([m.phase for m in ok]),
        "cli_outside": _median([m.wall - m.in_batch for m in ok]),
        "linger": _median([m.linger for m in ok]),
        "per_min_wall": _median([60 * m.runs / m.wall for m in ok]),
        "per_min_steady": _median([60 * m.runs / m.phase for m in ok]),
        "ratio_wall": _median([base[m.round].wall / m.wall for m in ok if m.round in base]),
        "ratio_steady": _median([base[m.round].phase / m.phase for m in ok if m.round in base]),
        "median_run": _median([_median(m.durations) for m in ok]),
        "phase_per_run": _median([m.phase / m.runs for m in ok]),
        "open_run": phase_median("open_run"),
        "execute": phase_median("execute"),
        "close_run": phase_median("close_run"),
        # runs per worker, e.g. "4+4" (round by round when they differ): dask may queue a
        # second short run on a busy 1-thread worker rather than move it to an idle one
        "split": ",".join(sorted({"+".join(map(str, m.split)) for m in ok})),
        "load1": _median([m.load1 for m in ok]),
        "errors": [m.error for m in ms if m.error],
    }


def print_table(workload: Workload, summary: dict[str, dict[str, Any]], rounds: int) -> None:
    """The table for one notebook, then the phases and the dask overhead lines."""
    print(f"\n{workload.name}: {workload.description}")
    print(f"  {workload.notebook}")
    what = f"median of {rounds} rounds" if rounds > 1 else "1 round"
    print(f"  ({what}; ratios = throughput / throughput of -j 1 in the same round)")
    head = (
        f"  {'configuration':<26} {'runs':>4} {'wall s':>7} {'setup s':>7} {'phase s':>7} "
        f"{'runs/min':>8} {'runs/min':>8} {'ratio':>6} {'ratio':>6} {'median':>7} "
        f"{'runs per':>8} {'load':>5}"
    )
    head2 = (
        f"  {'':<26} {'':>4} {'':>7} {'':>7} {'':>7} "
        f"{'wall':>8} {'steady':>8} {'wall':>6} {'steady':>6} {'run s':>7} "
        f"{'worker':>8} {'1min':>5}"
    )
    print(head)
    print(head2)
    for name, s in summary.items():
        if "error" in s:
            print(f"  {name:<26} FAILED: {s['error']}")
            continue
        print(
            f"  {name:<26} {s['runs']:>4} {s['wall']:>7.1f} {s['setup']:>7.1f} {s['phase']:>7.1f} "
            f"{s['per_min_wall']:>8.1f} {s['per_min_steady']:>8.1f} {s['ratio_wall']:>6.2f} "
            f"{s['ratio_steady']:>6.2f} {s['median_run']:>7.2f} {s['split']:>8} {s['load1']:>5.1f}"
        )
        if s["errors"]:
            print(f"  {'':<26} ({len(s['errors'])} round(s) failed: {s['errors'][0]})")
    print(
        "  per run (median s): open MLflow run / papermill / log + close; "
        "CLI start + exit around the batch"
    )
    for name, s in summary.items():
        if "error" not in s:
            print(
                f"    {name:<26} {s['open_run']:5.2f} / {s['execute']:5.2f} / {s['close_run']:5.2f}; "
                f"{s['cli_outside']:4.1f} s outside the batch, then {s['linger']:.1f} s until "
                "its last child exits"
            )
    ref = summary.get(J2, {})
    dask = [
        (n, summary[n])
        for n in (DASK_SCHED, DASK_LOCAL)
        if n in summary and "error" not in summary[n]
    ]
    if not dask or not ref or "error" in ref:
        return
    print("  dask per-run overhead vs local -j 2 (both run 2 at a time), + = dask slower:")
    for name, s in dask:
        print(
            f"    {name:<26} median run {s['median_run'] - ref['median_run']:+.2f} s "
            f"(open {s['open_run'] - ref['open_run']:+.2f}, papermill "
            f"{s['execute'] - ref['execute']:+.2f}, close {s['close_run'] - ref['close_run']:+.2f}); "
            f"run phase {s['phase_per_run'] - ref['phase_per_run']:+.2f} s/run; "
            f"start-up (setup) {s['setup'] - ref['setup']:+.1f} s"
        )


# --- workloads -------------------------------------------------------------------------


def default_workloads(runs: int) -> list[Workload]:
    """The repository's training notebook and papermill's own test notebook, ``runs`` each.

    Grids are written as explicit parameter sets so any ``runs`` works; for 8 they are
    exactly ``C`` x ``seed`` (4 x 2) and ``a`` x ``b`` (4 x 2).
    """
    cs = [0.01, 0.1, 1.0, 10.0]
    train = "".join(f"- {{C: {cs[i % 4]}, seed: {i // 4}, max_iter: 300}}\n" for i in range(runs))
    work = [
        Workload(
            "train_model",
            REPO / "example_notebooks" / "train_model.ipynb",
            train,
            f"{runs} runs, C in {cs[: min(4, runs)]} x seed 0..{(runs - 1) // 4} "
            "(scikit-learn logistic regression on digits, a confusion-matrix figure)",
        )
    ]
    import papermill

    third = Path(papermill.__file__).parent / "tests" / "notebooks" / "report_mode_test.ipynb"
    if third.exists():
        grid = "".join(f"- {{a: {i % 4 + 1}, b: {i // 4 + 1}}}\n" for i in range(runs))
        work.append(
            Workload(
                "report_mode_test",
                third,
                grid,
                f"{runs} runs, a in 1..{min(4, runs)} x b 1..{(runs - 1) // 4 + 1} "
                f"(papermill {papermill.__version__}'s test notebook: print(sum(a, b)); "
                "runs are nearly all overhead)",
            )
        )
    else:
        print(f"batch_scale: {third} not found; skipping the third-party notebook", file=sys.stderr)
    return work


def _warmup_grid(grid_text: str) -> str:
    """The first parameter set of a grid, for the untimed 1-run warm-up batch."""
    import yaml

    from jupyter_repro.batch.grid import grid_from_data

    first = grid_from_data(yaml.safe_load(grid_text))[0]
    return json.dumps([first]) + "\n"  # JSON is YAML


def _template_store(folder: Path) -> Path:
    """An empty, migrated MLflow sqlite store to copy for every batch (creating one costs
    seconds, which no configuration should pay inside its timing)."""
    db = folder / "template" / "mlflow.db"
    code = "import sys\nfrom jupyter_repro.provenance.store import prepare_store\nprepare_store(sys.argv[1])"
    subprocess.run(
        [sys.executable, "-c", code, f"sqlite:///{db}"], check=True, capture_output=True, text=True
    )
    return db


# --- main ------------------------------------------------------------------------------


def machine_facts() -> dict[str, Any]:
    """Cores, Python and package versions, and the checkout the CLI runs from."""
    from importlib.metadata import version

    head = subprocess.run(
        ["git", "-C", str(REPO), "describe", "--always", "--dirty=+dirty"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    return {
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": {
            p: version(p)
            for p in ("jupyter_repro", "papermill", "mlflow", "dask", "distributed", "ipykernel")
        },
        "jupyter_repro_checkout": head,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--notebook", type=Path, help="run this notebook instead of the two defaults"
    )
    parser.add_argument("--grid", type=Path, help="grid YAML for --notebook (required with it)")
    parser.add_argument("--runs", type=int, default=8, help="runs per default grid (default 8)")
    parser.add_argument(
        "--rounds", type=int, default=1, help="repeat and report medians (default 1)"
    )
    parser.add_argument(
        "--configs",
        default="j1,j2,dask,localcluster",
        help="subset of j1,j2,dask,localcluster (default: all; ratios need j1)",
    )
    parser.add_argument("--no-warmup", action="store_true", help="skip the untimed 1-run batches")
    parser.add_argument(
        "--single-thread-blas",
        action="store_true",
        help="set OMP/MKL/OPENBLAS_NUM_THREADS=1 for every batch, as dask's nanny does for "
        "its workers and so for their kernels (default: the local pool's kernels inherit "
        "this environment)",
    )
    parser.add_argument(
        "--batch-timeout", type=float, default=BATCH_TIMEOUT, help="seconds per batch (default 900)"
    )
    parser.add_argument("--json", type=Path, help="also save every measurement here")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (printed)")
    args = parser.parse_args(argv)
    if (args.notebook is None) != (args.grid is None):
        parser.error("--notebook and --grid go together")
    if args.runs < 1 or args.rounds < 1:
        parser.error("--runs and --rounds must be at least 1")
    unknown = set(args.configs.split(",")) - set(CONFIG_KEYS)
    if unknown:
        parser.error(f"unknown --configs {', '.join(sorted(unknown))}")
    return args


def _on_sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # unwind through every finally: batches, workers, scheduler


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; 0 when every configuration gave a measurement, 1 otherwise."""
    args = parse_args(argv)
    # Ctrl-C and SIGTERM unwind through every finally (also when started with SIGINT
    # ignored, as a background job of a script is).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _on_sigterm)
    if args.single_thread_blas:
        ENV.update(SINGLE_THREAD_BLAS)
    wanted = [CONFIG_KEYS[k] for k in CONFIG_KEYS if k in args.configs.split(",")]
    if args.notebook is not None:
        workloads = [
            Workload(
                args.notebook.stem,
                args.notebook.resolve(),
                args.grid.read_text(),
                f"grid {args.grid}",
            )
        ]
    else:
        workloads = default_workloads(args.runs)
    facts = machine_facts()
    load_before = os.getloadavg()
    print(
        f"batch_scale: {facts['cpu_count']} CPUs ({facts['cpus_usable']} usable), "
        f"Python {facts['python']}, jupyter_repro {facts['versions']['jupyter_repro']} "
        f"({facts['jupyter_repro_checkout']}), papermill {facts['versions']['papermill']}, "
        f"mlflow {facts['versions']['mlflow']}, dask/distributed {facts['versions']['distributed']}"
    )
    print("  load average (1/5/15 min) before: " + "/".join(f"{x:.2f}" for x in load_before))
    print(
        "  warm-up: "
        + ("none" if args.no_warmup else "one untimed 1-run batch per configuration and notebook")
        + "; wall = CLI start to exit; steady = runs / (wall_seconds - setup_seconds)"
    )
    blas = {k: ENV.get(k) for k in SINGLE_THREAD_BLAS}
    print(
        f"  environment of every batch: {', '.join(f'{k}={v}' for k, v in blas.items())} "
        "(dask workers set all three to 1 for themselves and their kernels)",
        flush=True,
    )
    started = time.time()
    tmp = Path(tempfile.mkdtemp(prefix="batch-scale-"))
    results: dict[str, Any] = {}
    try:
        template = _template_store(tmp)
        with _maybe_cluster(DASK_SCHED in wanted, tmp / "cluster") as address:
            configs = [
                Config(J1, ["-j", "1"]),
                Config(J2, ["-j", "2"]),
                Config(DASK_SCHED, ["--executor", "dask", "--scheduler", address or ""]),
                Config(DASK_LOCAL, ["--executor", "dask", "-j", "2"]),
            ]
            configs = [c for c in configs if c.name in wanted]
            for w in workloads:
                results[w.name] = _measure(w, configs, tmp / w.name, template, args)
                print_table(w, results[w.name]["summary"], args.rounds)
                sys.stdout.flush()
    finally:
        if args.keep:
            print(f"batch_scale: kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    load_after = os.getloadavg()
    failed = any(
        "error" in s or s["errors"] for r in results.values() for s in r["summary"].values()
    )
    print(
        "\nload average (1/5/15 min) after: "
        + "/".join(f"{x:.2f}" for x in load_after)
        + f"; {time.time() - started:.0f} s in all"
    )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "command": [sys.executable, *sys.argv],
                    "machine": facts,
                    "load_before": load_before,
                    "load_after": load_after,
                    "batch_env": blas,
                    "results": results,
                },
                indent=1,
            )
        )
        print(f"\nsaved {args.json}")
    return 1 if failed else 0


@contextmanager
def _maybe_cluster(wanted: bool, folder: Path) -> Iterator[str | None]:
    if not wanted:
        yield None
        return
    folder.mkdir(parents=True)
    with dask_cluster(folder) as address:
        yield address


def _measure(
    w: Workload, configs: list[Config], folder: Path, template: Path, args: argparse.Namespace
) -> dict[str, Any]:
    folder.mkdir(parents=True)
    grid = folder / "grid.yaml"
    grid.write_text(w.grid_text)
    if not args.no_warmup:
        warm = folder / "warmup-grid.yaml"
        warm.write_text(_warmup_grid(w.grid_text))
        for c in configs:
            m = run_batch(
                w, c, folder / "warmup" / _slug(c.name), template, warm, 0, args.batch_timeout
            )
            status = f"failed: {m.error}" if m.error else f"{m.wall:.1f} s"
            print(f"batch_scale: warm-up {w.name} {c.name}: {status}", file=sys.stderr)
    measurements: list[Measurement] = []
    for r in range(1, args.rounds + 1):
        order = configs if r % 2 else list(reversed(configs))
        for c in order:
            m = run_batch(
                w, c, folder / f"round{r}" / _slug(c.name), template, grid, r, args.batch_timeout
            )
            measurements.append(m)
            status = f"FAILED {m.error}" if m.error else f"{m.wall:.1f} s wall, load {m.load1:.1f}"
            print(f"batch_scale: {w.name} round {r} {c.name}: {status}", file=sys.stderr)
    baseline = [m for m in measurements if m.config == J1]
    summary = {
        c.name: summarize([m for m in measurements if m.config == c.name], baseline)
        for c in configs
    }
    return {
        "notebook": str(w.notebook),
        "grid": w.grid_text,
        "description": w.description,
        "summary": summary,
        "measurements": [vars(m) for m in measurements],
    }


def _slug(name: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in name).strip("-")


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("batch_scale: interrupted; the processes it started are stopped", file=sys.stderr)
        sys.exit(130)
