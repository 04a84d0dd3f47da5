"""``jupyter-repro batch`` and ``jupyter-repro gc``: thin shells over :mod:`.runner` and
:mod:`jupyter_repro.provenance.gc`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ReproError
from ..parameters import add_override_arguments
from ..uris import redact, redact_text

if TYPE_CHECKING:
    from .runner import BatchOptions


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``batch`` and ``gc`` subcommands to the umbrella parser."""
    b = subparsers.add_parser(
        "batch",
        help="run a notebook over a parameter grid, each run logged to MLflow",
        description="Run NOTEBOOK once per parameter set with papermill, in a fresh kernel "
        "each time, and log every run to MLflow with its code, data, parameters, "
        "environment and execution.",
    )
    b.add_argument("notebook", help=".ipynb or jupytext .py/.md notebook")
    add_override_arguments(b)
    b.add_argument(
        "--grid", metavar="FILE.yaml", help="grid: product of lists and/or a list of sets"
    )
    b.add_argument(
        "-j",
        "--jobs",
        type=int,
        default=None,
        help="runs at a time: local processes (default 1), or LocalCluster workers with "
        "--executor dask and no --scheduler (default: one per core); ignored with --scheduler",
    )
    b.add_argument(
        "--timeout", type=float, default=None, metavar="SECONDS", help="seconds allowed per run"
    )
    add_run_arguments(b)
    b.add_argument("--json", metavar="FILE", help="also write the report as JSON to FILE")
    b.add_argument("--no-progress", action="store_true", help="no progress bar")
    b.set_defaults(func=run_batch_command)

    g = subparsers.add_parser(
        "gc",
        help="mark RUNNING runs whose process is gone as KILLED",
        description="Find MLflow runs left RUNNING by a batch process that is gone (SIGKILL, "
        "crash, reboot) or whose heartbeat is stale, and end them as KILLED.",
    )
    g.add_argument("--tracking-uri", default=None, help="as for batch")
    g.add_argument("--experiment", action="append", default=[], help="limit to this experiment")
    g.add_argument(
        "--stale-after",
        type=float,
        default=600.0,
        help="seconds without a heartbeat before a run counts as dead (default 600)",
    )
    g.add_argument(
        "--include-foreign",
        action="store_true",
        help="also end runs of other tools (no heartbeat) started before --stale-after",
    )
    g.add_argument("--dry-run", action="store_true", help="only list what would be ended")
    g.set_defaults(func=gc_command)


def run_batch_command(args: argparse.Namespace) -> int:
    """``jupyter-repro batch``: exit 0 all finished, 1 a run failed, 2 bad input."""
    from .grid import parameter_sets
    from .runner import format_table, run_batch

    sets = parameter_sets(args.parameter, args.parameters_file, args.grid)
    options = batch_options(args, progress=not args.no_progress)
    from ..fileio import check_report_path

    inputs = [args.notebook, *args.data, *filter(None, [args.parameters_file, args.grid])]
    check_report_path(args.json, "--json", inputs)
    out = Path(args.output_dir)
    existing = next((p for p in (out, *out.parents) if p.exists()), Path("."))
    if not existing.is_dir():
        raise ReproError(f"--output-dir {args.output_dir}: {existing} is not a folder")
    report = run_batch(args.notebook, sets, options)
    print(format_table(report), flush=True)
    if args.json:
        write_json_atomic(args.json, report.to_dict())
    return report.exit_code


def write_json_atomic(path: str, data: dict) -> None:
    """Write ``data`` as JSON to ``path`` atomically (see :func:`jupyter_repro.fileio`)."""
    import json

    from ..fileio import atomic_write_text

    atomic_write_text(path, json.dumps(data, indent=1, default=str))


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """Options every command that makes batch runs shares (``batch``, ``tune``): where
    runs execute (executor, dask scheduler), which kernel, which MLflow store and
    experiment, where executed notebooks go, declared data inputs, the heartbeat
    interval (seconds). :func:`batch_options` turns them into :class:`.BatchOptions`."""
    from .registry import ExecutorNames

    parser.add_argument(
        "--executor",
        choices=ExecutorNames(),
        default="local",
        help="where runs execute: local worker processes (default), a dask cluster, or "
        "another registered executor (entry point group jupyter_repro.executors)",
    )
    parser.add_argument(
        "--scheduler",
        metavar="tcp://HOST:PORT",
        default=None,
        help="with --executor dask: the dask scheduler to submit to (default: start a "
        "LocalCluster on this machine)",
    )
    parser.add_argument(
        "--shared-fs",
        action="store_true",
        help="with --executor dask: workers see this file system, so the notebook and "
        "--data inputs are not shipped to them",
    )
    parser.add_argument(
        "--connect-timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="with --executor dask: wait this long for the scheduler and a first worker "
        "(default 30)",
    )
    parser.add_argument(
        "--kernel", default=None, help="kernelspec to use instead of the notebook's"
    )
    parser.add_argument(
        "--no-fork-kernels",
        dest="fork_kernels",
        action="store_false",
        help="start each run's kernel as a new interpreter instead of forking it from a "
        "template process that imported ipykernel (forked kernels of one batch share "
        "Python's string-hash seed; see docs/batch.md)",
    )
    parser.add_argument(
        "--experiment", default=None, help="MLflow experiment (default: notebook name)"
    )
    parser.add_argument(
        "--tracking-uri",
        default=None,
        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else "
        "sqlite:///<project>/mlruns/mlflow.db)",
    )
    parser.add_argument(
        "--output-dir", default="runs", help="executed notebooks go to DIR/<experiment>/"
    )
    parser.add_argument(
        "--data",
        action="append",
        default=[],
        metavar="PATH",
        help="declared input file or folder (hashed, logged as an MLflow dataset)",
    )
    parser.add_argument("--heartbeat-interval", type=float, default=30.0, help=argparse.SUPPRESS)


def batch_options(
    args: argparse.Namespace, timeout_flag: str = "--timeout", **fixed: Any
) -> BatchOptions:
    """The :class:`.BatchOptions` of a command's arguments (those of
    :func:`add_run_arguments`, plus ``--jobs``/``--timeout``/``--allow-unknown`` when the
    command has them); ``fixed`` sets fields the command decides itself (``tune``: the
    per-trial timeout, named ``timeout_flag`` in errors, and no progress bar). The one
    place arguments become batch options.

    Raises:
        ReproError: a timeout or heartbeat interval that is not positive.
    """
    import dataclasses

    from .runner import BatchOptions

    values = {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(BatchOptions)
        if hasattr(args, f.name)
    }
    values.update(fixed)
    values["data"] = tuple(values.get("data", ()))
    options = BatchOptions(**values)
    if options.timeout is not None and options.timeout <= 0:
        raise ReproError(f"{timeout_flag} must be positive, not {options.timeout:g}")
    if options.heartbeat_interval <= 0:
        raise ReproError(
            f"--heartbeat-interval must be positive, not {options.heartbeat_interval:g}"
        )
    return options


def gc_command(args: argparse.Namespace) -> int:
    """``jupyter-repro gc``: exit 0 (runs ended or listed), 2 bad input."""
    from ..provenance.gc import find_dangling, mark_killed
    from ..provenance.store import check_reachable, resolve_tracking_uri, sqlite_path

    if not args.stale_after >= 0:
        raise ReproError(f"--stale-after must be 0 or more seconds, not {args.stale_after:g}")
    uri = resolve_tracking_uri(args.tracking_uri)
    check_reachable(uri)
    db = sqlite_path(uri)
    if db is not None and not db.exists():  # never create a store just to find it empty
        print(f"no MLflow store at {db}: 0 dangling runs", file=sys.stderr)
        return 0
    runs = find_dangling(uri, args.experiment or None, args.stale_after, args.include_foreign)
    verb = "would mark KILLED" if args.dry_run else "marked KILLED"
    for run in runs:
        print(redact_text(f"{run.run_id}  {run.run_name}  {verb}: {run.reason}"))
    if not args.dry_run:
        mark_killed(uri, runs)
    print(f"{len(runs)} dangling run(s) {verb} in {redact(uri)}", file=sys.stderr)
    return 0
