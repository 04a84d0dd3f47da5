"""Clean execution of notebooks: one fresh process per notebook, in parallel, with timeouts.

:func:`smoke_notebooks` is nb-smoke as a function (the CLI is a thin shell over it). For
each notebook it reads the file (bad input becomes an ``error`` result naming the file),
runs the static lint, builds the run spec, and starts
``python -m jupyter_repro.smoke.worker`` in the notebook's folder, in a new session, with
stdin closed, a clean environment for Jupyter variables, an empty IPython profile
(``IPYTHONDIR`` in the private temporary folder, so no user startup code or extension
runs) and, in script mode, matplotlib's inline backend (``plt.show()`` never blocks; the
figure becomes an output, as in a kernel). Temporary files live in a private temporary
folder, never beside the notebook, and the notebook itself is only read.
"""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ..errors import NotebookReadError, ParameterError, ReproError
from ..notebook import (
    cell_label,
    discover_notebooks,
    first_lines,
    kernelspec_name,
    notebook_language,
    read_notebook,
)
from ..outputs import cell_comparison_mode, compare_cell_outputs, load_sanitizers, outputs_text
from ..parameters import validate_parameters
from .convert import SpecCell, build_cells, kernel_only_reasons
from .lint import lint_cells
from .options import RAISES_TAG, SmokeOptions
from .pairs import inputs_as_jupyter_opens, one_per_pair
from .results import (
    ERROR,
    FAILED,
    PASSED,
    TIMED_OUT,
    CellFailure,
    NotebookResult,
    Notice,
    SmokeReport,
)

#: matplotlib's backend in a Jupyter kernel: figures become outputs, show() never blocks.
INLINE_BACKEND = "module://matplotlib_inline.backend_inline"

#: Environment variables a fresh run must not inherit from a running Jupyter kernel.
_KERNEL_ENV = (
    "JPY_PARENT_PID",
    "JPY_SESSION_NAME",
    "JPY_INTERRUPT_EVENT",
    "KERNEL_ID",
    "IPYKERNEL_CELL_NAME",
    "MPLBACKEND",
    "PYDEVD_USE_FRAME_EVAL",
    # Set when nb-smoke runs under pytest; ipykernel then leaves fd 1/2 alone and
    # sys.stdout.fileno() raises, which a kernel started by Jupyter never does.
    "PYTEST_CURRENT_TEST",
)


def installed_kernelspecs() -> dict[str, str]:
    """Installed kernelspec names -> language, as ``jupyter kernelspec list`` sees them."""
    from jupyter_client.kernelspec import KernelSpecManager

    ksm = KernelSpecManager()
    out: dict[str, str] = {}
    for name in ksm.find_kernel_specs():
        try:
            out[name] = ksm.get_kernel_spec(name).language.lower()
        except Exception:  # a broken kernel.json must not stop the run
            out[name] = "unknown"
    return out


def smoke_notebooks(
    paths: Iterable[str | Path],
    options: SmokeOptions | None = None,
    on_result: Callable[[NotebookResult], None] | None = None,
    options_for: Callable[[Path], SmokeOptions] | None = None,
) -> SmokeReport:
    """Check notebooks: static lint, then a clean top-to-bottom run of each.

    Args:
        paths: notebooks and folders (searched recursively, see
            :func:`jupyter_repro.notebook.discover_notebooks`).
        options: how to check; defaults to :class:`SmokeOptions()`.
        on_result: called from worker threads as each notebook finishes (progress).
        options_for: the options for one notebook (``[tool.nb-smoke]`` of its project);
            default ``options`` for every notebook, which also sets ``jobs``.

    Returns:
        A :class:`SmokeReport` with one result per notebook, in input order.

    Raises:
        ReproError: only for problems with the whole call (none for a single bad notebook:
            those become ``error`` results and the others are still checked).
    """
    options = options or SmokeOptions()
    return smoke_files(find_notebooks(paths, options), options, on_result, options_for)


def find_notebooks(paths: Iterable[str | Path], options: SmokeOptions) -> list[Path]:
    """The notebooks under ``paths`` (:func:`~jupyter_repro.notebook.discover_notebooks`),
    each jupytext pair kept once (:func:`~jupyter_repro.smoke.pairs.one_per_pair`)."""
    return one_per_pair(discover_notebooks(paths, jupytext=options.jupytext), read_notebook)


def smoke_files(
    notebooks: Sequence[Path],
    options: SmokeOptions | None = None,
    on_result: Callable[[NotebookResult], None] | None = None,
    options_for: Callable[[Path], SmokeOptions] | None = None,
) -> SmokeReport:
    """:func:`smoke_notebooks` for notebook files already found (by
    :func:`find_notebooks`, as the CLI does to count them).
    """
    options = options or SmokeOptions()
    started = time.monotonic()
    remove_stale_folders()  # left by an nb-smoke killed with -9
    found_kernels: list[dict[str, str]] = []
    results: list[NotebookResult | None] = [None] * len(notebooks)
    lock = threading.Lock()

    def kernels() -> dict[str, str]:
        with lock:
            if not found_kernels:
                found_kernels.append(installed_kernelspecs())
            return found_kernels[0]

    def job(i: int, path: Path) -> None:
        own = options_for(path) if options_for is not None else options
        result = check_notebook(path, own, {} if own.lint_only else kernels())
        with lock:
            results[i] = result
        if on_result is not None:
            on_result(result)

    jobs = max(1, options.jobs)
    if jobs == 1 or len(notebooks) <= 1:
        try:
            for i, path in enumerate(notebooks):
                job(i, path)
        except BaseException:
            _LIVE.kill_all()
            raise
    else:
        pool = ThreadPoolExecutor(max_workers=jobs)
        try:
            for future in [pool.submit(job, i, p) for i, p in enumerate(notebooks)]:
                future.result()
        except BaseException:
            # Ctrl-C or SIGTERM: stop queued notebooks, kill the running ones' processes.
            pool.shutdown(wait=False, cancel_futures=True)
            _LIVE.kill_all()
            raise
        pool.shutdown()
    report = SmokeReport([r for r in results if r is not None])
    report.seconds = time.monotonic() - started
    return report


def check_notebook(
    path: Path,
    options: SmokeOptions,
    kernels: dict[str, str] | None = None,
) -> NotebookResult:
    """Lint and run one notebook; never raises for bad input (returns an ``error``)."""
    started = time.monotonic()
    result = NotebookResult(path=str(path), mode="lint" if options.lint_only else options.mode)
    try:
        nb, pair_note = inputs_as_jupyter_opens(path, read_notebook(path))
        if pair_note:
            result.notices.append(Notice("jupytext_pair", pair_note, strict=False))
        if options.lint_only and options.parameters:
            # -p/-f are checked as the run path checks them (same one-line error, exit 2):
            # a pre-commit lint must not pass a command line that the run would refuse.
            for warning in validate_parameters(
                path, nb, dict(options.parameters), options.allow_unknown
            ):
                result.notices.append(Notice("parameter", warning, strict=False))
        if options.lint or options.lint_only:
            outcome = lint_cells(nb, options.rules)
            result.findings = outcome.findings
            for index, message in outcome.notes:
                result.notices.append(Notice("lint_comment", message, cell_index=index))
        if not options.lint_only:
            _execute(path, nb, options, kernels if kernels is not None else {}, result)
    except (NotebookReadError, ParameterError, ReproError) as exc:
        result.status = ERROR
        result.error = str(exc)
    except Exception as exc:  # a bug of ours must not hide the other notebooks' results
        result.status = ERROR
        result.error = f"{path}: internal error in nb-smoke: {type(exc).__name__}: {exc}"
    if options.strict and result.status == PASSED:
        result.strict_failed = bool(result.findings) or any(n.strict for n in result.notices)
    result.seconds = time.monotonic() - started
    return result


def _resolve_mode(
    path: Path, nb, options: SmokeOptions, kernels: dict[str, str], result: NotebookResult
) -> tuple[str, str | None]:
    """Pick script or kernel mode and the kernel name; notes go into ``result``."""
    from ..errors import KernelNotFoundError

    wanted = options.kernel_name or kernelspec_name(nb)
    if wanted == "python":
        # jupyter_client's KernelManager starts "python" as its native "python3" (so do
        # nbconvert, nbclient, nbmake, papermill); a notebook saved so is not kernel-less.
        wanted = "python3"
    language = notebook_language(nb)
    if options.kernel_name and options.kernel_name in kernels:
        # A kernelspec forced with --kernel decides the language, as nbclient's and
        # nbconvert's kernel_name do: an R-declared notebook run with --kernel python3 is
        # Python code, and script mode runs it as such.
        language = kernels[options.kernel_name]
    if options.mode == "kernel":
        name = wanted or "python3"
        if name not in kernels:
            raise KernelNotFoundError(path, name, list(kernels))
        return "kernel", name
    if language != "python":
        if wanted and wanted in kernels:
            result.notices.append(
                Notice(
                    "non_python_kernel",
                    f"{language} notebook: run in kernel '{wanted}'",
                    strict=False,
                )
            )
            return "kernel", wanted
        raise ReproError(
            f"{path}: a {language} notebook cannot run in script mode and its kernelspec "
            f"'{wanted}' is not installed; install it or pass --kernel NAME"
        )
    if wanted and wanted not in kernels:
        result.notices.append(
            Notice(
                "kernelspec_not_installed",
                f"kernelspec '{wanted}' is not installed here; running the Python code "
                "in the current environment",
                strict=False,
            )
        )
    return "script", None


def _execute(
    path: Path,
    nb,
    options: SmokeOptions,
    kernels: dict[str, str],
    result: NotebookResult,
) -> None:
    params = dict(options.parameters)
    for warning in validate_parameters(path, nb, params, options.allow_unknown):
        result.notices.append(Notice("parameter", warning, strict=False))
    mode, kernel_name = _resolve_mode(path, nb, options, kernels, result)
    cells = build_cells(nb, params)
    if mode == "script":
        reasons = kernel_only_reasons(cells)
        wanted = options.kernel_name or kernelspec_name(nb)
        wanted = "python3" if wanted in (None, "python") else wanted
        fallback = wanted if wanted in kernels else "python3" if "python3" in kernels else None
        for index, reason in reasons:
            if fallback is not None:
                text = f"{reason}: run in kernel mode (kernel '{fallback}'), as script mode would differ"
            else:
                text = f"{reason}: script mode may differ from a kernel, and no Python kernel is installed"
            result.notices.append(Notice("script_mode_limit", text, cell_index=index, strict=False))
        if reasons and fallback is not None:
            mode, kernel_name = "kernel", fallback
    result.mode = mode
    spec = {
        "path": str(path),
        "mode": mode,
        "kernel_name": kernel_name,
        "timeit": "once" if options.fast else "full" if options.full_timeit else "auto",
        "metadata": dict(nb.get("metadata", {})),
        "cells": [c.to_json() for c in cells],
    }
    runs = _run_repeats(path, spec, options)
    first = runs[0]
    _interpret(cells, *first, options, result)
    left = [p for e in first[0] if e.get("event") == "leftovers" for p in e.get("processes", [])]
    if left:
        result.notices.append(
            Notice(
                "processes_left",
                f"{len(left)} process{'es' if len(left) > 1 else ''} the notebook started "
                f"{'were' if len(left) > 1 else 'was'} still running at its end and "
                f"{'were' if len(left) > 1 else 'was'} killed: {'; '.join(left[:3])}",
                strict=False,
            )
        )
    sanitizers = load_sanitizers(options.sanitize_with)
    if options.check_outputs and result.status == PASSED:
        _check_saved_outputs(nb, cells, result, sanitizers)
    if len(runs) > 1:
        _compare_repeats(nb, cells, runs, options, result, sanitizers)
    if options.mlflow:
        _log_to_mlflow(path, nb, cells, params, options, result)


def executed_notebook(nb, cells: Sequence[SpecCell], result: NotebookResult):
    """The notebook as this run left it: fresh outputs and execution counts, and the
    injected parameters cell where papermill would put it. ``nb`` is not modified."""
    import nbformat

    out = nbformat.from_dict(copy.deepcopy(dict(nb)))
    by_index = {c.index: pos for pos, c in enumerate(cells) if c.index is not None}
    count = 0
    for index, cell in enumerate(out.cells):
        if cell.get("cell_type") != "code":
            continue
        pos = by_index.get(index)
        if pos is not None and pos in result.cell_outputs:
            count += 1
            cell["outputs"] = [nbformat.from_dict(o) for o in result.cell_outputs[pos]]
            cell["execution_count"] = count
        else:
            cell["outputs"], cell["execution_count"] = [], None
    injected = [pos for pos, c in enumerate(cells) if c.index is None]
    if injected:
        pos = injected[0]
        after = next((c.index for c in cells[pos + 1 :] if c.index is not None), len(out.cells))
        new = nbformat.v4.new_code_cell(cells[pos].source)
        new.metadata["tags"] = list(cells[pos].tags)
        new.outputs = [nbformat.from_dict(o) for o in result.cell_outputs.get(pos, [])]
        out.cells.insert(after, new)
    return out


def _log_to_mlflow(
    path: Path, nb, cells: Sequence[SpecCell], params: dict[str, Any],
    options: SmokeOptions, result: NotebookResult,
) -> None:  # fmt: skip
    """--mlflow: one MLflow run per checked notebook, through batch's own logging path."""
    from ..provenance import names
    from ..provenance.mlflow_log import log_finished_notebook

    status = names.RunStatus.FINISHED if result.status == PASSED else names.RunStatus.FAILED
    error = None
    if result.failure is not None:
        f = result.failure
        error = {"cell_index": f.cell_index, "ename": f.ename, "evalue": f.evalue}
    try:
        result.mlflow_run_id = log_finished_notebook(
            path,
            executed_notebook(nb, cells, result),
            status,
            reason=result.error or "",
            error=error,
            params=params,
            tracking_uri=options.tracking_uri,
            experiment=options.experiment,
            extra_tags={
                names.SOURCE: "nb-smoke",
                names.SMOKE_MODE: result.mode,
            },
        )
    except Exception as exc:  # the check itself stands; say why it was not logged
        result.notices.append(
            Notice("mlflow", f"not logged to MLflow: {type(exc).__name__}: {exc}", strict=False)
        )


def _run_repeats(
    path: Path, spec: dict[str, Any], options: SmokeOptions
) -> list[tuple[list[dict[str, Any]], bytes, bytes, bool]]:
    """Run the spec ``options.repeat`` times, one after another.

    Repeats of one notebook never overlap: they share the notebook's folder, and a
    notebook that writes files there would trip over its own copies. ``-j`` still runs
    different notebooks at once.
    """
    runs = []
    for _k in range(max(1, options.repeat)):
        with tempfile.TemporaryDirectory(prefix=TMP_PREFIX) as tmp:
            _write_owner(Path(tmp))
            runs.append(_run_worker(path, spec, Path(tmp), options.timeout))
    return runs


#: Prefix of nb-smoke's private temporary folders (in :func:`tempfile.gettempdir`).
TMP_PREFIX = "nb-smoke-"


def _write_owner(tmp: Path) -> None:
    """Record which nb-smoke process owns ``tmp`` (pid and start time, for pid reuse)."""
    from ..processes import write_owner

    write_owner(tmp)


def remove_stale_folders(root: str | Path | None = None) -> list[Path]:
    """Delete nb-smoke temporary folders whose nb-smoke process is gone (killed with -9):
    :func:`jupyter_repro.processes.remove_stale_folders` for ``nb-smoke-*``."""
    from ..processes import remove_stale_folders as remove

    return remove(TMP_PREFIX, root)


def _run_worker(
    path: Path, spec: dict[str, Any], tmp: Path, timeout: float | None
) -> tuple[list[dict[str, Any]], bytes, bytes, bool]:
    spec_file, events_file = tmp / "spec.json", tmp / "events.jsonl"
    spec_file.write_text(json.dumps(spec), encoding="utf-8")
    events_file.touch()
    env = {k: v for k, v in os.environ.items() if k not in _KERNEL_ENV}
    if spec["mode"] == "script":
        env["MPLBACKEND"] = INLINE_BACKEND  # a kernel sets the same for itself
        env["JPY_PARENT_PID"] = str(os.getpid())  # jupyter_client gives a kernel this
    env["IPYTHONDIR"] = str(tmp / "ipython")  # no profile: no user startup code
    # Kernel connection files go into the private folder too, so a kill -9 leaves none
    # in the user's runtime dir (the folder itself is removed by the next run).
    env["JUPYTER_RUNTIME_DIR"] = str(tmp / "runtime")
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    cwd = path.resolve().parent
    with open(tmp / "stdout", "wb") as out, open(tmp / "stderr", "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "jupyter_repro.smoke.worker", str(spec_file), str(events_file)],
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            env=env,
            start_new_session=True,
        )
        _LIVE.add(proc)
        timed_out = False
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
        except BaseException:
            _kill_tree(proc, _read_events(events_file))
            _LIVE.discard(proc)
            raise
        events = _read_events(events_file)
        _kill_tree(proc, events)
        _LIVE.discard(proc)
    return events, Spool(tmp / "stdout"), Spool(tmp / "stderr"), timed_out


#: Bytes of one cell's stdout (and of its stderr) kept for the report; a cell that prints
#: more keeps its first and last halves with a line saying how much was left out.
CELL_OUTPUT_CAP = 2 * 1024 * 1024


class Spool:
    """A worker's stdout or stderr, left on disk: only the slices asked for are read, each
    at most :data:`CELL_OUTPUT_CAP` bytes, so a notebook printing gigabytes costs disk, not
    memory. The open handle keeps the file readable after its temporary folder is removed
    (POSIX); it is closed when the spool is garbage-collected.
    """

    def __init__(self, path: Path) -> None:
        self._file = open(path, "rb")  # noqa: SIM115 - lives as long as the spool
        self.size = os.fstat(self._file.fileno()).st_size

    def __len__(self) -> int:
        return self.size

    def __del__(self) -> None:
        self._file.close()

    def _read(self, at: int, count: int) -> bytes:
        return os.pread(self._file.fileno(), max(0, count), at) if count > 0 else b""

    def __getitem__(self, part: slice) -> bytes:
        """``spool[start:stop]`` (no step): those bytes, capped in the middle."""
        start = max(0, part.start or 0)
        stop = self.size if part.stop is None else min(part.stop, self.size)
        count = stop - start
        if count <= CELL_OUTPUT_CAP:
            return self._read(start, count)
        half = CELL_OUTPUT_CAP // 2
        note = f"\n[nb-smoke: {count - 2 * half:,} bytes of output left out]\n".encode()
        return self._read(start, half) + note + self._read(stop - half, half)

    def tail_text(self, chars: int) -> str:
        """The last ``chars`` characters (about: decoded from the last bytes), stripped."""
        return (
            self._read(max(0, self.size - 4 * chars), 4 * chars)
            .decode("utf-8", "replace")
            .strip()[-chars:]
        )


class _LiveWorkers:
    """Worker processes alive right now, so an interrupt can kill them all at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._procs: set[subprocess.Popen] = set()

    def add(self, proc: subprocess.Popen) -> None:
        with self._lock:
            self._procs.add(proc)

    def discard(self, proc: subprocess.Popen) -> None:
        with self._lock:
            self._procs.discard(proc)

    def kill_all(self) -> None:
        """Kill every live worker with its session and kernel (Ctrl-C, SIGTERM)."""
        with self._lock:
            procs = list(self._procs)
        for proc in procs:
            _kill_tree(proc, [])


_LIVE = _LiveWorkers()


def _read_events(path: Path) -> list[dict[str, Any]]:
    events = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            break  # a line cut short by a kill is the last one
    return events


def _kill_tree(proc: subprocess.Popen, events: list[dict[str, Any]]) -> None:
    """Kill the worker, its whole session, and a kernel it started (own session).

    Only processes that are still the ones nb-smoke started are touched: the worker while
    it has not been reaped, the kernel only if its start time matches the one the worker
    reported (a pid may have been reused by then).
    """
    from ..processes import kill_tree, signal_group

    if proc.poll() is None:
        kill_tree(proc.pid, group=True)
    else:  # reaped: its pid may name another process now, but its session may live on
        signal_group(proc.pid, signal.SIGKILL)
    for event in events:
        if event.get("event") == "kernel" and event.get("pid") and event.get("create_time"):
            kill_tree(event["pid"], event["create_time"], group=True)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


def _slice(data: Spool, start: int | None, end: int | None) -> str:
    if start is None:
        return ""
    return data[start:end].decode("utf-8", errors="replace")


def _interpret(
    cells: Sequence[SpecCell],
    events: list[dict[str, Any]],
    stdout: Spool,
    stderr: Spool,
    timed_out: bool,
    options: SmokeOptions,
    result: NotebookResult,
) -> None:
    starts = [e for e in events if e.get("event") == "cell_start"]
    ends = {e["position"]: e for e in events if e.get("event") == "cell_end"}
    cell_outputs = _cell_outputs(events, stdout, stderr)
    result.cell_outputs = cell_outputs
    outputs = {pos: outputs_text(outs) for pos, outs in cell_outputs.items()}
    # What a failing cell printed before its error (the error itself is reported apart).
    printed = {
        pos: outputs_text(o for o in outs if o.get("output_type") != "error")
        for pos, outs in cell_outputs.items()
    }
    for pos, text in outputs.items():
        key = str(cells[pos].index) if cells[pos].index is not None else "injected"
        result.output[key] = text[-20000:]
    result.cells_run = sum(1 for e in ends.values() if e.get("ok") or e.get("error"))
    for event in events:
        if event.get("event") == "timeit":
            result.timeit_shortened = int(event.get("shortened", 0))
            result.timeit_full = int(event.get("full", 0))

    for pos in sorted(ends):
        end, cell = ends[pos], cells[pos]
        tagged = RAISES_TAG in cell.tags
        if end.get("ok"):
            if tagged:
                result.notices.append(
                    Notice(
                        "raises_exception_did_not_raise",
                        f"{_label(cell)} is tagged '{RAISES_TAG}' but raised nothing",
                        cell_index=cell.index,
                    )
                )
            continue
        error = end.get("error") or {}
        # The tag allows an exception; not exit() and not a kernel that died.
        fatal = error.get("ename") == "DeadKernelError" or error.get("evalue", "").startswith(
            "exit() was called"
        )
        if tagged and not fatal:
            continue
        result.status = FAILED
        result.failure = _failure(cell, error, printed.get(pos, ""))
        return

    crash = next((e for e in events if e.get("event") == "crash"), None)
    done = any(e.get("event") == "done" for e in events)
    if timed_out:
        result.status = TIMED_OUT
        running = starts[-1]["position"] if starts else None
        if running is not None and running not in ends:
            cell = cells[running]
            result.failure = _failure(
                cell,
                {
                    "ename": "Timeout",
                    "evalue": f"notebook exceeded {options.timeout:g} s "
                    f"while running {_label(cell)}; killed with its children",
                },
                printed.get(running, ""),
            )
        elif starts:
            result.error = (
                f"timed out after {options.timeout:g} s: every cell finished but the "
                "process did not exit"
            )
        else:
            result.error = f"timed out after {options.timeout:g} s before the first cell"
        return
    if crash is not None or not done:
        result.status = FAILED
        if crash is not None and crash.get("ename") == "NoSuchKernel":
            result.status = ERROR
            result.error = f"{result.path}: {crash.get('evalue')}"
            return
        running = starts[-1]["position"] if starts else None
        detail = (
            f"{crash['ename']}: {crash['evalue']}"
            if crash
            else "the Python process running the notebook died during this cell "
            "(os._exit, a crash in native code, or killed)"
        )
        if running is not None and running not in ends:
            # Named like nbclient's error for a kernel that dies, so both modes agree.
            result.failure = _failure(
                cells[running],
                {"ename": crash["ename"] if crash else "DeadKernelError", "evalue": detail},
                printed.get(running, ""),
            )
        else:
            result.error = detail + "; " + stderr.tail_text(500)
            result.status = FAILED


def _cell_outputs(
    events: list[dict[str, Any]], stdout: Spool, stderr: Spool
) -> dict[int, list[dict[str, Any]]]:
    """Each cell's outputs in nbformat shape, keyed by position in the spec.

    Kernel mode sends them whole. Script mode sends displays and results; its streams are
    the process's stdout/stderr between one cell's start and the next (so they include
    what child processes and C code wrote, as a kernel's do).
    """
    starts = [e for e in events if e.get("event") == "cell_start"]
    ends = {e["position"]: e for e in events if e.get("event") == "cell_end"}
    displays = {pos: copy.deepcopy(end.get("outputs", [])) for pos, end in ends.items()}
    # Displays updated in place after their cell ended (update_display_data, G07): kernel
    # mode sends every cell's final outputs, script mode each update as it happens.
    for event in events:
        if event.get("event") == "final_outputs":
            for key, outs in event.get("outputs", {}).items():
                if int(key) in displays:
                    displays[int(key)] = outs
        elif event.get("event") == "display_update":
            outs = displays.get(event["position"], [])
            if 0 <= event["index"] < len(outs):
                outs[event["index"]].update(data=event["data"], metadata=event["metadata"])
    found: dict[int, list[dict[str, Any]]] = {}
    for k, start in enumerate(starts):
        pos = start["position"]
        end = ends.get(pos, {})
        outs = list(displays.get(pos, []))
        if end.get("streams") == "fd" or pos not in ends:
            nxt = starts[k + 1] if k + 1 < len(starts) else {}
            begin = end.get("stream_start") or start  # after the cell's last clear_output()
            streams = []
            for name, data, key in (("stdout", stdout, "stdout"), ("stderr", stderr, "stderr")):
                text = _slice(data, begin.get(key), nxt.get(key))
                if text:
                    streams.append({"output_type": "stream", "name": name, "text": text})
            outs = streams + outs
        found[pos] = outs
    return found


def _check_saved_outputs(
    nb, cells: Sequence[SpecCell], result: NotebookResult, sanitizers: list[tuple[str, str]]
) -> None:
    """--check-outputs: compare each fresh cell's outputs with those saved in the notebook."""
    fresh = result.cell_outputs
    for pos, cell in enumerate(cells):
        if cell.index is None or pos not in fresh:
            continue
        saved = nb.cells[cell.index]
        if saved.get("execution_count") is None and not saved.get("outputs"):
            continue  # never run when saved: nothing to compare with
        if cell_comparison_mode(saved) != "compare":
            continue
        diff = compare_cell_outputs(cell.index, saved.get("outputs", []), fresh[pos], sanitizers)
        if diff is not None:
            result.output_differences.append(diff)
            result.image_pairs.extend(
                _image_pairs(cell.index, saved.get("outputs", []), fresh[pos], diff)
            )
    if result.output_differences:
        result.status = FAILED
        cells_list = ", ".join(str(d.cell_index) for d in result.output_differences)
        result.error = f"outputs differ from the saved notebook in cell(s) {cells_list}"


def _image_pairs(index: int, saved: list, fresh: list, diff) -> list[tuple[str, str, str, str]]:
    """``(name, mimetype, saved value, fresh value)`` for each differing image."""
    from ..outputs import images_of

    a, b = images_of(saved), images_of(fresh)
    return [
        (f"cell{index}-{k}", mime, a[k][1] if k < len(a) else "", b[k][1] if k < len(b) else "")
        for k, mime, _ref, _new in diff.images
    ]


def _compare_repeats(
    nb,
    cells: Sequence[SpecCell],
    runs: list[tuple[list[dict[str, Any]], bytes, bytes, bool]],
    options: SmokeOptions,
    result: NotebookResult,
    sanitizers: list[tuple[str, str]],
) -> None:
    """--repeat N: cells whose outputs differ between runs, with a probable cause."""
    from ..determinism import probable_cause, scan_notebook

    def ran_ok(events: list[dict[str, Any]]) -> set[int]:
        return {e["position"] for e in events if e.get("event") == "cell_end" and e.get("ok")}

    base, ok_base = result.cell_outputs, ran_ok(runs[0][0])
    differing: dict[int, tuple[int, Any]] = {}
    for k, run in enumerate(runs[1:], start=2):
        probe = NotebookResult(path=result.path, mode=result.mode)
        _interpret(cells, *run, options, probe)
        if result.status == PASSED and probe.status != PASSED and probe.failure is not None:
            result.status = FAILED
            result.failure = probe.failure
            result.error = f"run {k} of {len(runs)} failed although run 1 passed (flaky)"
        for pos in sorted(ok_base & ran_ok(run[0])):
            if pos in differing or cells[pos].index is None:
                continue
            saved = nb.cells[cells[pos].index]
            if cell_comparison_mode(saved) != "compare":
                continue
            diff = compare_cell_outputs(
                cells[pos].index, base[pos], probe.cell_outputs[pos], sanitizers,
                ("run 1", f"run {k}"),
            )  # fmt: skip
            if diff is not None:
                differing[pos] = (k, diff)
    if not differing:
        return
    sources = scan_notebook(
        [(i, c.get("source", "")) for i, c in enumerate(nb.cells) if c.get("cell_type") == "code"]
    )
    for pos in sorted(differing):
        k, diff = differing[pos]
        index = cells[pos].index
        result.nondeterministic.append(
            {
                "cell_index": index,
                "cell_id": cells[pos].cell_id,
                "first_differing_run": k,
                "cause": probable_cause(sources, index),
                "difference": diff.to_json(),
            }
        )
    first = result.nondeterministic[0]
    if result.status == PASSED:
        result.status = FAILED
    result.error = (
        f"outputs differ between runs from cell {first['cell_index']} on "
        f"({len(differing)} cell{'s' if len(differing) > 1 else ''}); "
        f"probable cause: {first['cause']}"
    )


def _label(cell: SpecCell) -> str:
    return cell_label(cell.index, cell.execution_count)


def _failure(cell: SpecCell, error: dict[str, Any], output: str) -> CellFailure:
    return CellFailure(
        cell_index=cell.index,
        cell_id=cell.cell_id,
        execution_count=cell.execution_count,
        first_lines=first_lines(cell.source),
        ename=error.get("ename", "Error"),
        evalue=error.get("evalue", ""),
        line=error.get("line"),
        traceback=error.get("traceback", ""),
        output=output[-4000:],
        source_line=_source_line(cell.source, error.get("line")),
    )


def _source_line(source: str, line: int | None) -> str:
    lines = source.splitlines()
    if not line or not 0 < line <= len(lines):
        return ""
    return lines[line - 1].strip()


__all__ = ["check_notebook", "installed_kernelspecs", "smoke_notebooks"]
