"""What ``%track`` adds to each cell: plain IPython vs ``%track on``, side by side.

    python benchmarks/track_overhead.py [--reps 300] [--kernel-reps 200] [--no-kernel]

In one run, in one process, the same cells run alternately with tracking off and on (so
drift hits both alike) in an IPython ``InteractiveShell`` that holds a 30-cell notebook's
state; every run goes through ``run_cell`` with a cell id, the hooks, the JSONL record and
the full judgement, exactly as in a kernel. Cells of 1, 10, 20 and 50 statements, each
"repeat" (the same source again: the analysis cache hits) and "fresh" (a new source every
time, as after an edit: the analysis runs). Then 1,000 executions in a row (is the added
time flat?), a loop-heavy cell (no cost per statement), and the same comparison through a
real kernel over ZeroMQ (what a user feels). ipyflow is measured too when its kernel is
installed.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import os
import statistics
import sys
import tempfile
import time

from IPython.core.interactiveshell import InteractiveShell

ISSUE_IPYFLOW_MS = {1: 41.0, 10: 270.0, 50: 1500.0}  # ipyflow 0.0.231, from issue 4


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


def _quiet(msg: dict) -> None:
    """Output hook that drops the kernel's output instead of printing it."""


def _start(kernel_name: str):
    from jupyter_client import KernelManager

    km = KernelManager(kernel_name=kernel_name)
    km.start_kernel()
    kc = km.client()
    kc.start_channels()
    kc.wait_for_ready(timeout=60)
    return km, kc


def _kernel_cpu(km) -> float | None:
    """CPU seconds the kernel process has used so far (Linux ``/proc``), else None."""
    try:
        pid = km.provisioner.process.pid
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (AttributeError, OSError, ValueError, IndexError):
        return None


KernelRow = tuple[float, float, "float | None", "float | None"]


def kernel_side_by_side(
    reps: int, tracked_setup: str, kernel_name: str = "python3"
) -> dict[int, KernelRow]:
    """Two real kernels, one plain and one running ``tracked_setup`` first, requests
    interleaved: {statements: (plain wall, tracked wall, plain CPU, tracked CPU)}; wall
    times are medians, the kernel processes' CPU times means over the ``reps`` requests
    (``/proc`` counts CPU in clock ticks: too coarse for one request, exact enough over
    hundreds, and blind to other load on the machine)."""
    plain_km, plain = _start("python3")
    tracked_km, tracked = _start(kernel_name)
    try:
        if tracked_setup:
            tracked.execute_interactive(tracked_setup, timeout=60, output_hook=_quiet)
        for kc in (plain, tracked):
            kc.execute_interactive("base = 1", timeout=60, output_hook=_quiet)
        out = {}
        for statements in (1, 10, 20, 50):
            src = cell_source(statements)
            times: dict[str, list[float]] = {"plain": [], "tracked": []}
            kms = {"plain": plain_km, "tracked": tracked_km}
            cpu0 = {k: _kernel_cpu(km) for k, km in kms.items()}
            for _ in range(reps):
                for name, kc in (("plain", plain), ("tracked", tracked)):
                    t0 = time.perf_counter()
                    kc.execute_interactive(src, timeout=60, output_hook=_quiet)
                    times[name].append(time.perf_counter() - t0)
            cpu = {}
            for k, km in kms.items():
                end = _kernel_cpu(km)
                cpu[k] = None if end is None or cpu0[k] is None else (end - cpu0[k]) / reps
            out[statements] = (
                statistics.median(times["plain"]),
                statistics.median(times["tracked"]),
                cpu["plain"],
                cpu["tracked"],
            )
        return out
    finally:
        for km, kc in ((plain_km, plain), (tracked_km, tracked)):
            kc.stop_channels()
            km.shutdown_kernel(now=True)


def _kernel_rows(title: str, rows: dict[int, KernelRow]) -> None:
    print(f"\n{title}")
    print(
        f"{'statements':>10} {'plain ms':>9} {'tracked ms':>10} {'added ms':>9} {'ratio':>6}"
        f" | {'CPU ms plain':>12} {'tracked':>8} {'added':>7}"
    )
    for n, (p, t, pc, tc) in rows.items():
        cpu = (
            f"{pc * 1e3:>12.3f} {tc * 1e3:>8.3f} {(tc - pc) * 1e3:>7.3f}"
            if pc is not None and tc is not None
            else f"{'n/a':>12}"
        )
        print(
            f"{n:>10} {p * 1e3:>9.3f} {t * 1e3:>10.3f} {(t - p) * 1e3:>9.3f} {t / p:>6.2f} | {cpu}"
        )


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
        rows = kernel_side_by_side(args.kernel_reps, "%load_ext jupyter_repro\n%track on")
        _kernel_rows(
            f"two real kernels over ZeroMQ, {args.kernel_reps} interleaved requests per row: "
            "wall ms (median; noisy on a loaded machine) | kernel process CPU ms (mean)",
            rows,
        )
    has_ipyflow = importlib.util.find_spec("ipyflow") is not None
    if has_ipyflow and not args.no_kernel:
        _kernel_rows(
            "ipyflow kernel vs plain kernel", kernel_side_by_side(args.kernel_reps, "", "ipyflow")
        )
    else:
        print(
            "\nipyflow not installed here; issue 4 measured ipyflow 0.0.231 adding "
            + ", ".join(f"{v:g} ms to a {n}-statement cell" for n, v in ISSUE_IPYFLOW_MS.items())
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
