"""The batch as a function: validate everything, then run every parameter set.

Order matters and is the contract: the notebook is read, its kernelspec checked, every
parameter set validated and every ``--data`` input hashed *before* the MLflow store is
touched, so bad input (exit 2) never leaves a run behind (tests/test_batch_faults.py).
"""

from __future__ import annotations

import concurrent.futures as cf
import signal
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from ..errors import KernelNotFoundError, ReproError
from ..notebook import kernelspec_name, read_notebook
from ..parameters import find_parameters_cell, notebook_parameters, validate_parameters
from ..processes import process_identity
from ..provenance.attempts import close_orphans
from ..provenance.data import digest_input
from ..provenance.mlflow_log import collect_provenance, format_param
from ..provenance.names import PARAMS_UNVERIFIED, RunStatus
from ..provenance.store import check_reachable, prepare_experiment, resolve_tracking_uri
from ..uris import redact, redact_text
from .registry import executor_class
from .spec import RunResult, RunSpec


@dataclass(frozen=True)
class BatchOptions:
    """Every knob of ``jupyter-repro batch``; defaults live here and nowhere else.

    Attributes:
        experiment: MLflow experiment name (default: the notebook's file stem).
        tracking_uri: overrides ``MLFLOW_TRACKING_URI`` and the local default store.
        jobs: runs at a time (``-j``): local pool processes, or LocalCluster workers with
            ``executor="dask"`` and no scheduler. None: 1 locally, one per core on dask.
        timeout: seconds allowed for each whole run (None: no limit).
        kernel: kernelspec to use instead of the notebook's own.
        output_dir: executed notebooks go to ``<output_dir>/<experiment>/<run>.ipynb``.
        allow_unknown: run even with unknown names / no parameters cell (runs flagged).
        data: declared inputs (files or folders), hashed and logged as datasets.
        heartbeat_interval: seconds between heartbeat refreshes of a running run.
        stop_grace: seconds to wait for in-flight runs to close after SIGTERM/SIGINT.
        start_timeout: seconds to wait for a kernel to start.
        progress: show a progress bar on stderr (when it is a terminal).
        executor: a registered executor name (:func:`~.executors.executor_names`):
            ``"local"`` (process pool) or ``"dask"`` (see docs/batch.md).
        scheduler: ``tcp://HOST:PORT`` of a dask scheduler; None with dask starts a
            LocalCluster.
        shared_fs: dask workers see this file system: do not ship the notebook and data.
        connect_timeout: seconds to wait for the dask scheduler and a first worker.
        fork_kernels: local workers fork Python kernels from a template process that
            imported ipykernel (:class:`~jupyter_repro.kernels.KernelTemplate`) instead
            of starting a new interpreter for each (``--no-fork-kernels``: False).
    """

    experiment: str | None = None
    tracking_uri: str | None = None
    jobs: int | None = None
    timeout: float | None = None
    kernel: str | None = None
    output_dir: str = "runs"
    allow_unknown: bool = False
    data: tuple[str, ...] = ()
    heartbeat_interval: float = 30.0
    stop_grace: float = 20.0
    start_timeout: float = 60.0
    progress: bool = True
    executor: str = "local"
    scheduler: str | None = None
    shared_fs: bool = False
    connect_timeout: float = 30.0
    fork_kernels: bool = True


@dataclass
class BatchReport:
    """The outcome of a batch: one result per parameter set, in grid order."""

    results: list[RunResult]
    experiment: str
    tracking_uri: str
    interrupted: int = 0  # the signal number that stopped the batch, or 0
    warnings: list[str] = field(default_factory=list)
    setup_seconds: float = 0.0  # validation, provenance, workers and store ready
    wall_seconds: float = 0.0

    @property
    def exit_code(self) -> int:
        """0 every run FINISHED; 1 some run failed or was killed; 128+signal if stopped."""
        if self.interrupted:
            return 128 + self.interrupted
        return 0 if all(r.status == RunStatus.FINISHED for r in self.results) else 1

    def to_dict(self) -> dict[str, Any]:
        """The machine-readable report (``--json``); fields documented in docs/batch.md."""
        from dataclasses import asdict

        from ..provenance.mlflow_log import format_param

        runs = []
        for r in self.results:
            item = asdict(r)
            item.pop("notebook_text", None)
            item["params"] = {k: format_param(v) for k, v in r.params.items()}
            item["reason"] = redact_text(r.reason or "") or r.reason
            runs.append(item)
        return {
            "experiment": self.experiment,
            "tracking_uri": redact(self.tracking_uri),
            "exit_code": self.exit_code,
            "interrupted_by": signal.Signals(self.interrupted).name if self.interrupted else None,
            "warnings": self.warnings,
            "setup_seconds": round(self.setup_seconds, 3),
            "wall_seconds": round(self.wall_seconds, 3),
            "runs": runs,
        }


class _Stop(BaseException):  # not caught by `except Exception` while handling a result
    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(signal.Signals(signum).name)


def check_kernel(path: str | Path, name: str) -> None:
    """Raise :class:`KernelNotFoundError` unless kernelspec ``name`` is installed."""
    from jupyter_client.kernelspec import KernelSpecManager

    installed = KernelSpecManager().find_kernel_specs()
    if name not in installed:
        raise KernelNotFoundError(path, name, list(installed))


def _render_params(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in params.items()) or "(defaults)"


def plan_batch(
    notebook: str | Path, param_sets: list[dict[str, Any]], options: BatchOptions
) -> tuple[Any, str, list[str]]:
    """Validate without side effects: returns (notebook, kernel name, warnings).

    Raises:
        NotebookReadError, KernelNotFoundError, ParameterError, ReproError: bad input.
    """
    nb = read_notebook(notebook)
    kernel = options.kernel or kernelspec_name(nb) or "python3"
    check_kernel(notebook, kernel)
    warnings: list[str] = []
    for params in param_sets:
        for line in validate_parameters(notebook, nb, params, options.allow_unknown):
            if line not in warnings:
                warnings.append(line)
    if options.jobs is not None and options.jobs < 1:
        raise ReproError(f"-j must be at least 1, not {options.jobs}")
    warnings += executor_class(options.executor).check_options(options)
    return nb, kernel, warnings


def open_experiment(executor: Any, uri: str, experiment: str) -> str:
    """The experiment's id, created if needed, by a worker of ``executor`` (the process
    that owns the store connection). Raises ``ReproError`` with one line when the store
    cannot be opened there."""
    try:
        return executor.submit(prepare_experiment, uri, experiment).result()
    except ReproError:
        raise
    except Exception as exc:  # the store cannot be opened (on a worker): one line
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        raise ReproError(
            f"cannot open experiment '{experiment}' in {uri}: {type(exc).__name__}: {first}"
        ) from None


def run_batch(
    notebook: str | Path,
    param_sets: list[dict[str, Any]],
    options: BatchOptions = BatchOptions(),
    echo: Any = None,
) -> BatchReport:
    """Run ``notebook`` once per parameter set and log each run to MLflow.

    Args:
        echo: a callable taking one line (warnings, progress notes); default stderr.

    Raises:
        ReproError: bad input, raised before any MLflow run exists.
    """
    started = time.perf_counter()
    say = echo or (lambda line: print(line, file=sys.stderr))
    from ..provenance.store import quiet_mlflow

    quiet_mlflow()
    path = Path(notebook)
    executor_cls = executor_class(options.executor)
    # first: the workers' imports (the local pool's forkserver) overlap with everything
    # below; undone if the batch never starts (bad input)
    started_early = executor_cls.prepare()
    try:
        nb, kernel, warnings = plan_batch(path, param_sets, options)
        # before any worker starts: an unreachable server is one line now, not a minute
        # of MLflow's retries in every run
        check_reachable(resolve_tracking_uri(options.tracking_uri, path.parent))
        for line in warnings:
            say(f"warning: {line}")
        data = [digest_input(p) for p in options.data]
        known = notebook_parameters(nb)
        flags: dict[str, str] = {}
        if find_parameters_cell(nb) is None and any(param_sets):
            flags[PARAMS_UNVERIFIED] = (
                "no cell tagged 'parameters': papermill injected at the top and the notebook's "
                "own assignments may have overwritten the logged values (--allow-unknown)"
            )
        elif any(name not in known for params in param_sets for name in params):
            flags[PARAMS_UNVERIFIED] = (
                "some logged parameters are not assigned by the parameters cell (--allow-unknown)"
            )

        # The store is created and opened by a worker (warm: its forkserver preloaded MLflow);
        # this process never imports MLflow on the normal path.
        uri = resolve_tracking_uri(options.tracking_uri, path.parent)
        experiment = options.experiment or path.stem
        provenance = collect_provenance(path, data)
        batch_id = uuid.uuid4().hex
        jobs = min(options.jobs or executor_cls.default_jobs(), len(param_sets))
        executor = executor_cls.create(options, path, batch_id, jobs)
    except BaseException:
        # anything before the executor takes the forkserver over (bad input, a provenance
        # or executor failure) ends it now, not when this process exits
        if started_early:
            executor_cls.unprepare()
        raise
    try:
        for line in executor.check(uri, kernel):
            say(f"warning: {line}")
        where = executor.describe(len(param_sets))
        if where:
            say(where)
        experiment_id = open_experiment(executor, uri, experiment)
    except BaseException:
        executor.kill()
        raise
    # Second-resolution stamp plus a part of the batch id: two batches started in the same
    # second never share a run name (or an executed notebook's file name).
    stamp = f"{datetime.now().strftime('%Y%m%d-%H%M%S')}-{batch_id[:4]}"
    out_dir = Path(options.output_dir) / experiment
    owner = process_identity()
    specs = []
    for index, params in enumerate(param_sets):
        run_name = f"{path.stem}-{stamp}-{index:03d}"
        defaults = {
            n: format_param(info.default) if info.has_literal_default else info.default_source
            for n, info in known.items()
            if n not in params
        }
        specs.append(
            RunSpec(
                index=index,
                run_name=run_name,
                notebook=str(path.resolve()),
                params=params,
                defaults=defaults,
                output_path=str((out_dir / f"{run_name}.ipynb").resolve()),
                kernel_name=kernel,
                cwd=str(path.resolve().parent),
                timeout=options.timeout,
                start_timeout=options.start_timeout,
                uri=uri,
                experiment_id=experiment_id,
                batch_id=batch_id,
                provenance=provenance,
                heartbeat_interval=options.heartbeat_interval,
                flags=flags,
                owner=owner,
                check_attempts=executor_cls.reruns_lost_runs,
                # the last `jobs` runs start no spare kernel: no run would take it
                warm_next=index < len(param_sets) - jobs,
            )
        )
    report = BatchReport([], experiment, uri, warnings=warnings)
    report.setup_seconds = time.perf_counter() - started
    results: dict[int, RunResult] = {}

    def on_signal(signum: int, frame: Any) -> None:
        raise _Stop(signum)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    futures: dict[cf.Future, RunSpec] = {}
    from tqdm import tqdm

    bar = tqdm(
        total=len(specs),
        desc="runs",
        unit="run",
        file=sys.stderr,
        disable=None if options.progress else True,
    )
    try:
        try:
            for spec in specs:
                futures[executor.submit_run(spec)] = spec
            for fut in cf.as_completed(futures):
                results[futures[fut].index] = _result_of(fut, futures[fut])
                bar.update(1)
                r = results[futures[fut].index]
                bar.set_postfix_str(f"{r.run_name}: {r.status}")
        except _Stop as stop:
            report.interrupted = stop.signum
            say(f"jupyter-repro batch: {stop}: stopping {len(futures) - len(results)} run(s)")
            for s in previous:
                signal.signal(s, signal.SIG_IGN)
            executor.stop()
            executor.cancel_pending()
            done, _ = cf.wait(futures, timeout=options.stop_grace)
            executor.kill()
            for fut, spec in futures.items():
                if spec.index not in results:
                    if fut in done and not fut.cancelled():
                        results[spec.index] = _result_of(fut, spec)
                    else:
                        results[spec.index] = RunResult.not_started(spec, "batch interrupted")
    finally:
        bar.close()
        for s, handler in previous.items():
            signal.signal(s, handler)
    if report.interrupted:
        close_orphans(uri, experiment_id, batch_id, RunStatus.KILLED)
    else:
        failed = RunStatus.FAILED
        try:
            executor.submit(close_orphans, uri, experiment_id, batch_id, failed).result()
        except Exception:  # the pool broke (a worker died): do it here
            close_orphans(uri, experiment_id, batch_id, failed)
        executor.shutdown()
    report.results = [results[i] for i in sorted(results)]
    report.wall_seconds = time.perf_counter() - started
    return report


def _result_of(fut: cf.Future, spec: RunSpec) -> RunResult:
    try:
        result = fut.result()
        if result.notebook_text is not None:  # run on another machine: write it here
            from ..fileio import atomic_write_text

            try:
                Path(spec.output_path).parent.mkdir(parents=True, exist_ok=True)
                atomic_write_text(spec.output_path, result.notebook_text)
            except OSError as exc:  # the run itself stands; only the local copy is missing
                result.output_path = None
                note = f"executed notebook not written to {spec.output_path}: {exc.strerror}"
                result.reason = f"{result.reason}; {note}" if result.reason else note
            result.notebook_text = None
        return result
    except cf.CancelledError:
        return RunResult.not_started(spec, "batch interrupted before this run started")
    except Exception as exc:  # the worker process died or logging failed: say so per run
        text = str(exc).strip().splitlines()
        return RunResult.failed_unseen(spec, f"{type(exc).__name__}: {text[0] if text else ''}")


def format_table(report: BatchReport) -> str:
    """The end-of-batch table: run, parameters, status, key metrics, duration, run id."""
    rows = [("run", "parameters", "status", "metrics", "time", "mlflow run id")]
    for r in report.results:
        metrics = ", ".join(f"{k}={v:.4g}" for k, v in list(r.metrics.items())[:3])
        status = r.status if not r.reason else f"{r.status} ({redact_text(r.reason)[:60]})"
        rows.append(
            (
                r.run_name,
                _render_params(r.params)[:50],
                status,
                metrics,
                f"{r.duration:.1f}s",
                r.run_id or "-",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    for r in report.results:  # the table cuts reasons short: each in full, once
        if r.reason and len(r.reason) > 60:
            lines.append(f"{r.run_name}: {r.status}: {redact_text(r.reason)}")
    ok = sum(r.status == RunStatus.FINISHED for r in report.results)
    lines.append(
        f"{ok}/{len(report.results)} runs finished; experiment '{report.experiment}' "
        f"in {redact(report.tracking_uri)}"
    )
    return "\n".join(lines)
