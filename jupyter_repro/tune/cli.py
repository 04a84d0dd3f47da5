"""``jupyter-repro tune``: a thin argparse layer over :func:`.study.run_tune`."""

from __future__ import annotations

import argparse
import sys

from ..errors import ReproError


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``tune`` subcommand to the umbrella parser."""
    t = subparsers.add_parser(
        "tune",
        help="search a notebook's parameters with Optuna, each trial an MLflow run",
        description="Run an Optuna study over NOTEBOOK's parameters cell: every trial runs "
        "the notebook in a fresh kernel exactly like a `batch` run and is one MLflow run "
        "(linked both ways); the trial's value is the metric the notebook records.",
    )
    t.add_argument("notebook", help=".ipynb or jupytext .py/.md notebook")
    t.add_argument(
        "--space",
        required=True,
        metavar="FILE",
        help="search space: .yaml (Optuna's "
        "float/int/categorical) or .py defining space(trial) -> dict",
    )
    t.add_argument("--trials", type=int, required=True, metavar="N", help="trials to run")
    t.add_argument("--metric", required=True, metavar="NAME", help="the recorded metric")
    t.add_argument("--direction", choices=("minimize", "maximize"), default="minimize")
    t.add_argument(
        "-j", "--jobs", type=int, default=1, help="trials at once (default 1), on any executor"
    )
    t.add_argument("--study", default=None, help="Optuna study name (default: notebook name)")
    t.add_argument(
        "--storage",
        default=None,
        metavar="URL",
        help="Optuna RDB storage (default: sqlite optuna.db beside the MLflow sqlite store)",
    )
    t.add_argument("--sampler", choices=("tpe", "random", "grid"), default="tpe")
    t.add_argument("--pruner", choices=("median", "none"), default="median")
    t.add_argument(
        "--pruner-startup-trials",
        type=int,
        default=5,
        metavar="N",
        help="complete trials before the median pruner prunes (Optuna's default 5)",
    )
    t.add_argument("--seed", type=int, default=None, help="the sampler's seed")
    t.add_argument(
        "--timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="for the whole study: no trial starts after it",
    )
    t.add_argument(
        "--trial-timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="for one trial's run (FAIL after it)",
    )
    t.add_argument(
        "--notify-command",
        default=None,
        metavar="CMD",
        help="shell command run at the end; the result as JSON on its stdin",
    )
    t.add_argument(
        "--mlflow-ui",
        default="http://127.0.0.1:5000",
        metavar="URL",
        help="base of mlflow_run_url for a local store (default %(default)s)",
    )
    t.add_argument(
        "--dashboard-url",
        default="http://127.0.0.1:8080",
        metavar="URL",
        help="base of optuna-dashboard, for the runs' links to their trials "
        "(default %(default)s, optuna-dashboard's own)",
    )
    from ..batch.cli import add_run_arguments

    add_run_arguments(t)
    t.add_argument("--json", metavar="FILE", help="also write the result as JSON to FILE")
    t.set_defaults(func=tune_command)
    extend_gc(subparsers)


def tune_command(args: argparse.Namespace) -> int:
    """``jupyter-repro tune``: exit 0 a trial completed, 1 none did, 2 bad input."""
    from ..batch.cli import batch_options
    from ..fileio import check_writable
    from .study import TuneOptions, format_summary, run_tune

    check_writable(args.json, "--json")
    if args.pruner_startup_trials < 0:
        raise ReproError("--pruner-startup-trials must be 0 or more")
    options = TuneOptions(
        space=args.space,
        trials=args.trials,
        metric=args.metric,
        direction=args.direction,
        jobs=args.jobs,
        study=args.study,
        storage=args.storage,
        sampler=args.sampler,
        pruner=args.pruner,
        pruner_startup=args.pruner_startup_trials,
        seed=args.seed,
        timeout=args.timeout,
        notify_command=args.notify_command,
        mlflow_ui=args.mlflow_ui,
        dashboard_url=args.dashboard_url,
        # trials in flight are tune's -j on every executor; batch's own -j is not used
        run=batch_options(
            args, "--trial-timeout", jobs=None, timeout=args.trial_timeout, progress=False
        ),
    )
    report = run_tune(args.notebook, options)
    print(format_summary(report), flush=True)
    for line in report.warnings:
        print(f"warning: {line}")
    if args.json:
        from ..batch.cli import write_json_atomic

        write_json_atomic(args.json, report.to_dict())
    return report.exit_code


def extend_gc(subparsers: argparse._SubParsersAction) -> None:
    """Give ``jupyter-repro gc`` its Optuna half: ``--storage URL`` (default: the
    ``optuna.db`` beside the MLflow sqlite store, when it exists) — RUNNING trials whose
    ``tune`` is gone end FAIL, after the MLflow runs are ended (:mod:`.gc`)."""
    g = subparsers.choices.get("gc")
    if g is None:
        return
    g.add_argument(
        "--storage",
        default=None,
        metavar="URL",
        help="Optuna storage whose dangling trials to fail (default: optuna.db beside the "
        "MLflow sqlite store, if it exists)",
    )
    runs_gc = g.get_default("func")

    def gc_with_trials(args: argparse.Namespace) -> int:
        from ..provenance.store import resolve_tracking_uri, sqlite_path
        from .gc import gc_trials
        from .storage import public_url, resolve_storage

        code = runs_gc(args)
        uri = resolve_tracking_uri(args.tracking_uri)
        url = resolve_storage(args.storage, uri)
        db = sqlite_path(url)
        if args.storage is None and (db is None or not db.exists()):
            return code  # no tune ever ran against this store
        count = gc_trials(url, args.stale_after, args.dry_run)
        verb = "would mark FAIL" if args.dry_run else "marked FAIL"
        print(f"{count} dangling trial(s) {verb} in {public_url(url)}", file=sys.stderr)
        return code

    g.set_defaults(func=gc_with_trials)
