"""What ``%track`` adds to each cell: plain IPython vs ``%track on``, side by side.

    python benchmarks/track_overhead.py [--reps 300] [--kernel-reps 200] [--ipyflow-reps 40]
                                        [--no-kernel]

In one run, in one process, the same cells run alternately with tracking off and on (so
drift hits both alike) in an IPython ``InteractiveShell`` that holds a 30-cell notebook's
state; every run goes through ``run_cell`` with a cell id, the hooks, the JSONL record and
the full judgement, exactly as in a kernel. Cells of 1, 10, 20 and 50 statements, each
"repeat" (the same source again: the analysis cache hits) and "fresh" (a new source every
time, as after an edit: the analysis runs). Then 1,000 executions in a row (is the added
time flat?), a loop-heavy cell (no cost per statement), and the same comparison through a
real kernel over ZeroMQ (what a user feels): a plain kernel, one with ``%track on`` and,
when it is installed in ``benchmarks/.corpus/ipyflow-venv`` (``kernel_driver.IPYFLOW_SETUP``),
ipyflow's kernel driven through its comm as its JupyterLab extension drives it — requests
interleaved across the three, in the same run.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import tempfile
import time

from IPython.core.interactiveshell import InteractiveShell

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kernel_driver import IPYFLOW_SETUP, ipyflow_version


def cell_source(statements: int, salt: str = "") -> str:
    """A cell of ``statements`` statements: it reads notebook state (``base``), binds
    names, and mutates containers in place (method calls, subscript stores), the signals
    the analysis looks for. It builds its containers itself, so re-running it is legitimate
    and no notice is printed: the rows measure the tracking, not the warnings."""
    lines = ["acc = base + 1", "items = [acc]", "table = {}"]
    i = len(lines)
    while len(lines) < statements:
        kind = i % 4
        if kind == 0:
            lines.append(f"t{i} = acc * {i} + base")
        elif kind == 1:
            lines.append(f"items.append(acc + {i})")
        elif kind == 2:
            lines.append(f"acc = acc + len(items) + {i}")
        else:
            lines.append(f"table['k{i}'] = acc")
        i += 1
    lines = lines[:statements]
    if salt:  # a new source, same statements: defeats every cache keyed by source
        lines.append(f"# {salt}")
    return "\n".join(lines)


def setup_shell() -> tuple[InteractiveShell, object]:
    from traitlets.config import Config

    config = Config()
    config.HistoryManager.hist_file = ":memory:"  # sqlite on disk: the noisiest part of a run
    shell = InteractiveShell.instance(config=config)
    shell.run_cell("%load_ext jupyter_repro", store_history=False)
    from jupyter_repro.tracking.magic import session_for

    session = session_for(shell)
    # Re-running the same mutating cell is flagged (out_of_order with itself) each time:
    # notices are computed and printed as usual, into a buffer to keep this output legible.
    session.out = io.StringIO()
    session.enable()
    # a notebook's worth of state: 30 cells, run in order
    shell.run_cell("base = 1", store_history=True, cell_id="setup")
    for i in range(30):
        shell.run_cell(
            f"n{i} = base + {i}\nm{i} = [n{i}] * 3", store_history=True, cell_id=f"nb{i}"
        )
    return shell, session


def timed(shell: InteractiveShell, source: str, cell_id: str) -> float:
    """CPU seconds the main thread spent running the cell: other load on the machine does
    not blur the comparison as it does wall-clock time (the kernel rows below are wall)."""
    t0 = time.thread_time()
    shell.run_cell(source, store_history=True, cell_id=cell_id)
    return time.thread_time() - t0


def side_by_side(shell, session, statements: int, reps: int, fresh: bool) -> tuple[float, float]:
    """Median seconds per run with tracking off and on, interleaved."""
    off: list[float] = []
    on: list[float] = []
    for rep in range(reps):
        for tracking in (False, True) if rep % 2 else (True, False):
            salt = f"rep {rep} {tracking}" if fresh else ""
            src = cell_source(statements, salt)
            if tracking:
                session.enable()
                on.append(timed(shell, src, f"bench{statements}"))
            else:
                session.disable()
                off.append(timed(shell, src, f"bench{statements}"))
    session.enable()
    return statistics.median(off), statistics.median(on)


def flatness(shell, session, executions: int = 1000) -> tuple[float, float, float]:
    """Median tracked time of the first and last 100 of ``executions`` runs, and plain."""
    session.enable()
    src = cell_source(10)
    times = []
    for _ in range(executions):
        times.append(timed(shell, src, "flat"))
    session.disable()
    plain = []
    for _ in range(100):
        plain.append(timed(shell, src, "flat"))
    session.enable()
    return statistics.median(times[:100]), statistics.median(times[-100:]), statistics.median(plain)


def loop_ratio(shell, session, reps: int = 15) -> tuple[float, float]:
    src = "s = 0\nfor i in range(200_000):\n    s += i\n    items.append(i) if i % 50_000 == 0 else None"
    off, on = [], []
    for _ in range(reps):
        session.disable()
        off.append(timed(shell, src, "loop"))
        session.enable()
        on.append(timed(shell, src, "loop"))
    return statistics.median(off), statistics.median(on)


class _Frontend:
    """Stands in for a frontend's comm: serialises each message as a comm would."""

    def __init__(self) -> None:
        self.sent = 0

    def send(self, data: dict) -> None:
        json.dumps(data)
        self.sent += 1


def with_comm(shell, session, statements: int, reps: int) -> tuple[float, float]:
    """Median CPU seconds per run without and with a frontend comm open (a full report
    is then judged and sent after every run)."""
    src = cell_source(statements)
    frontend = _Frontend()
    without, with_ = [], []
    for _ in range(reps):
        without.append(timed(shell, src, "comm"))
        session.channel.comms.append(frontend)
        with_.append(timed(shell, src, "comm"))
        session.channel.comms.remove(frontend)
    assert frontend.sent == reps
    return statistics.median(without), statistics.median(with_)


def _kernel_cpu(km) -> float | None:
    """CPU seconds the kernel process has used so far (Linux ``/proc``), else None."""
    try:
        pid = km.provisioner.process.pid
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (AttributeError, OSError, ValueError, IndexError):
        return None


#: {statements: {kernel: (wall s median, kernel CPU s mean per cell or None, wall s
#: median after the execute reply)}}
KernelRows = dict[int, dict[str, tuple[float, "float | None", float]]]


class _Kernel:
    """One real kernel driven like JupyterLab (``kernel_driver.Frontend``) plus what it
    needs after each execution: ipyflow's extension sends ``compute_exec_schedule`` on its
    comm after every run and the kernel answers it before the next cell can start, so
    that request is part of ipyflow's time per cell."""

    def __init__(self, name: str) -> None:
        from kernel_driver import Frontend

        self.name = name
        self.fe = Frontend("ipyflow" if name == "ipyflow" else "python3")
        self.metadata: dict = {}
        if name == "%track":
            for line in ("%load_ext jupyter_repro", "%track on"):
                self.fe.execute(line, store_history=False)
        elif name == "ipyflow":
            reply = self.fe.open_comm("ipyflow", {"interface": "jupyterlab",
                                                  "cell_metadata_by_id": {}})  # fmt: skip
            if not any(m.get("type") == "establish" for m in reply.comm):
                raise RuntimeError(f"ipyflow comm not established: {reply.comm}")

    def run(self, source: str, cell_id: str) -> float:
        """Run one cell; the wall seconds spent after the execute reply (ipyflow's
        ``compute_exec_schedule``; 0 for the other kernels)."""
        if self.name == "ipyflow":
            self.metadata[cell_id] = {
                "index": len(self.metadata),
                "content": source,
                "type": "code",
            }
            self.fe.send({"type": "change_active_cell", "active_cell_id": cell_id})
        self.fe.execute(source, cell_id)
        if self.name != "ipyflow":
            return 0.0
        t0 = time.perf_counter()
        self.fe.send({"type": "compute_exec_schedule", "cell_metadata_by_id": self.metadata})
        return time.perf_counter() - t0

    def close(self) -> None:
        self.fe.close()


def kernel_side_by_side(reps: int, names: list[str], ipyflow_reps: int) -> KernelRows:
    """Real kernels side by side, requests interleaved (drift hits all alike): a plain
    IPython kernel, one with ``%track on``, and ipyflow's kernel when it is in ``names``.
    Wall times are medians; the kernel processes' CPU times means over the requests
    (``/proc`` counts clock ticks: too coarse for one request, exact enough over many, and
    blind to other load on the machine). ipyflow runs ``ipyflow_reps`` times per row (a
    50-statement cell costs it most of a second)."""
    kernels = [_Kernel(n) for n in names]
    try:
        for k in kernels:
            k.run("base = 1", "setup")
        out: KernelRows = {}
        for statements in (1, 10, 20, 50):
            src = cell_source(statements)
            times: dict[str, list[float]] = {k.name: [] for k in kernels}
            after: dict[str, list[float]] = {k.name: [] for k in kernels}
            cpu0 = {k.name: _kernel_cpu(k.fe.km) for k in kernels}
            for rep in range(reps):
                for k in kernels:
                    if k.name == "ipyflow" and rep >= ipyflow_reps:
                        continue
                    t0 = time.perf_counter()
                    after[k.name].append(k.run(src, f"bench{statements}"))
                    times[k.name].append(time.perf_counter() - t0)
            row = {}
            for k in kernels:
                end, start = _kernel_cpu(k.fe.km), cpu0[k.name]
                n = len(times[k.name])
                cpu = None if end is None or start is None else (end - start) / n
                row[k.name] = (
                    statistics.median(times[k.name]),
                    cpu,
                    statistics.median(after[k.name]),
                )
            out[statements] = row
        return out
    finally:
        for k in kernels:
            k.close()


def _kernel_rows(title: str, rows: KernelRows) -> None:
    names = list(next(iter(rows.values())))
    others = [n for n in names if n != "plain"]
    print(f"\n{title}")
    print(f"{'statements':>10} {'plain ms':>9} "
          + " ".join(f"{n + ' added':>15}" for n in others)
          + " | " + " ".join(f"{n + ' CPU added':>19}" for n in others)
          + (f" | {'ipyflow schedule ms':>19}" if "ipyflow" in others else ""))  # fmt: skip
    for n_stmt, row in rows.items():
        plain_wall, plain_cpu, _ = row["plain"]
        walls = " ".join(f"{(row[n][0] - plain_wall) * 1e3:>15.3f}" for n in others)
        cpus = " ".join(
            f"{(row[n][1] - plain_cpu) * 1e3:>19.3f}"
            if row[n][1] is not None and plain_cpu is not None
            else f"{'n/a':>19}"
            for n in others
        )
        schedule = f" | {row['ipyflow'][2] * 1e3:>19.3f}" if "ipyflow" in others else ""
        print(f"{n_stmt:>10} {plain_wall * 1e3:>9.3f} {walls} | {cpus}{schedule}")


def evidence_budget(reps: int) -> tuple[int, float]:
    """(objects, median CPU seconds) for a cell that spends its whole runtime-evidence
    budget (``evidence.CELL_BUDGET`` objects walked): the most that part adds to a cell."""
    from jupyter_repro.tracking import evidence

    values = [[[j, [j]] for j in range(3)] for _ in range(evidence.CELL_BUDGET)]
    times = []
    for _ in range(reps):
        budget = evidence.Budget()
        t0 = time.thread_time()
        for value in values:
            if evidence.walk(value, budget) is None:
                break
        times.append(time.thread_time() - t0)
    return evidence.CELL_BUDGET - budget.left, statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    """Run every measurement and print a table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=300)
    parser.add_argument("--kernel-reps", type=int, default=200)
    parser.add_argument("--no-kernel", action="store_true")
    parser.add_argument("--ipyflow-reps", type=int, default=40)
    args = parser.parse_args(argv)
    os.chdir(tempfile.mkdtemp(prefix="track-bench-"))  # the record goes here
    shell, session = setup_shell()
    print(f"python {sys.version.split()[0]}, IPython {__import__('IPython').__version__}; "
          f"{args.reps} interleaved runs per row; InteractiveShell with a 30-cell notebook; "
          "CPU ms per cell (medians)")  # fmt: skip
    print(
        f"{'statements':>10} {'source':>7} {'plain ms':>9} {'%track ms':>10} {'added ms':>9} {'ratio':>6}"
    )
    for statements in (1, 10, 20, 50):
        for fresh in (False, True):
            off, on = side_by_side(shell, session, statements, args.reps, fresh)
            print(f"{statements:>10} {'fresh' if fresh else 'repeat':>7} {off * 1e3:>9.3f} "
                  f"{on * 1e3:>10.3f} {(on - off) * 1e3:>9.3f} {on / off:>6.2f}")  # fmt: skip
    first, last, plain = flatness(shell, session)
    print(f"\n1000 executions of a 10-statement cell: added {1e3 * (first - plain):.3f} ms "
          f"(first 100) vs {1e3 * (last - plain):.3f} ms (last 100); plain {plain * 1e3:.3f} ms")  # fmt: skip
    off, on = loop_ratio(shell, session)
    print(f"loop of 200,000 iterations: plain {off * 1e3:.1f} ms, %track {on * 1e3:.1f} ms, "
          f"ratio {on / off:.3f} (nothing runs per statement)")  # fmt: skip
    off, on = with_comm(shell, session, 10, args.reps)
    print(f"with a frontend comm open (full report judged and sent after each run), 10 "
          f"statements: {off * 1e3:.3f} ms -> {on * 1e3:.3f} ms, added {(on - off) * 1e3:.3f} ms")  # fmt: skip
    objects, cost = evidence_budget(args.reps)
    print(f"runtime evidence at its per-cell budget ({objects} objects walked): "
          f"{cost * 1e3:.3f} ms (the most it adds to a cell; past it names are unverified)")  # fmt: skip
    if not args.no_kernel:
        names = ["plain", "%track"]
        version = ipyflow_version()
        if version is not None:
            names.append("ipyflow")
        rows = kernel_side_by_side(args.kernel_reps, names, args.ipyflow_reps)
        _kernel_rows(
            f"real kernels over ZeroMQ, requests interleaved ({args.kernel_reps} per row; "
            f"ipyflow {version or 'not installed'}, {args.ipyflow_reps} per row, with its "
            "compute_exec_schedule after each run): ms added per cell over the plain kernel, "
            "wall (median, execute request + ipyflow's schedule; noisy on a loaded machine) | "
            "kernel process CPU (mean) | of which ipyflow's schedule request (wall, median)",
            rows,
        )
        if version is None:
            print(f"\nipyflow not installed; to measure it: {IPYFLOW_SETUP}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
