"""``jupyter-repro locate`` and ``jupyter-repro reproduce``: thin shells over
:mod:`.locate` and :mod:`.rerun`."""

from __future__ import annotations

import argparse
import json
import sys

from ..errors import ReproError
from ..fileio import check_report_path
from ..uris import redact

_URI_HELP = (
    "MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///<project>/mlruns/mlflow.db)"
)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``locate`` and ``reproduce`` subcommands to the umbrella parser."""
    loc = subparsers.add_parser(
        "locate",
        help="find the MLflow runs that produced a file (plot or any output)",
        description="Hash FILE and find, with an MLflow search query, the runs whose outputs "
        "include it; print each run's code, data, parameters, environment and the cell "
        "that produced it. Exit 0 found, 1 no run produced it, 2 bad input.",
    )
    loc.add_argument("file", help="a plot (PNG, SVG, ...) or any output file")
    loc.add_argument("--tracking-uri", default=None, help=_URI_HELP)
    loc.add_argument(
        "--experiment", action="append", default=[], help="search only this experiment"
    )
    loc.add_argument("--json", action="store_true", help="print the matches as JSON")
    loc.set_defaults(func=locate_command)

    rep = subparsers.add_parser(
        "reproduce",
        help="re-run a logged run from its commit and compare metrics and outputs",
        description="Check RUN_ID's commit out into a temporary git worktree, put the notebook "
        "as it ran in place, verify the data inputs' digests, re-run it with the same "
        "parameters in a fresh kernel (logged as a new MLflow run tagged "
        "jupyter_repro.reproduces=RUN_ID) and compare metrics and outputs. "
        "Exit 0 reproduced, 1 differs or data changed, 2 bad input.",
    )
    rep.add_argument("run_id", help="the MLflow run id")
    rep.add_argument("--tracking-uri", default=None, help=_URI_HELP)
    rep.add_argument("--rtol", type=float, default=1e-9, help="relative metric tolerance")
    rep.add_argument("--atol", type=float, default=0.0, help="absolute metric tolerance")
    rep.add_argument(
        "--tol",
        action="append",
        default=[],
        metavar="NAME=RTOL",
        help="relative tolerance for one metric (repeatable)",
    )
    rep.add_argument(
        "--allow-data-drift", action="store_true", help="re-run even if a data input changed"
    )
    rep.add_argument(
        "--repo", default=None, help="git repository holding the commit (default: the run's)"
    )
    rep.add_argument("--sanitize-with", metavar="FILE", help="nbval sanitizer file for outputs")
    rep.add_argument("--timeout", type=float, default=None, help="seconds allowed for the run")
    rep.add_argument("--json", metavar="FILE", help="also write the report as JSON to FILE")
    rep.add_argument(
        "--fresh-env",
        action="store_true",
        help="run the kernel in the run's logged environment, rebuilt with uv in an isolated "
        "venv from its lock (cached by lock hash under ~/.cache/jupyter-repro/envs, or "
        "$JUPYTER_REPRO_ENV_CACHE)",
    )
    rep.add_argument(
        "--python",
        metavar="PATH",
        default=None,
        help="with --fresh-env: interpreter of the logged Python minor version to build with",
    )
    rep.add_argument(
        "--rebuild", action="store_true", help="with --fresh-env: build anew even if cached"
    )
    rep.set_defaults(func=reproduce_command)


def locate_command(args: argparse.Namespace) -> int:
    """``jupyter-repro locate``: exit 0 found, 1 not found, 2 bad input."""
    from ..provenance.store import check_reachable, resolve_tracking_uri
    from .locate import format_match, locate, matches_json

    uri = resolve_tracking_uri(args.tracking_uri)
    check_reachable(uri)
    sha, matches = locate(args.file, uri, args.experiment or None)
    if args.json:
        print(json.dumps(matches_json(args.file, sha, matches), indent=1, default=str))
    else:
        if matches:
            print(f"{args.file} (sha256 {sha[:16]}...) was produced by {len(matches)} run(s):")
            for m in matches:
                print(format_match(m))
        else:
            print(f"{args.file} (sha256 {sha[:16]}...): no run in {redact(uri)} produced it")
    return 0 if matches else 1


def _per_metric(items: list[str]) -> dict[str, float]:
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            out[name] = float(value)
        except ValueError:
            sep = ""
        if not sep or not name:
            raise ReproError(f"--tol wants NAME=RTOL (e.g. loss=1e-3), not {item!r}")
    return out


def reproduce_command(args: argparse.Namespace) -> int:
    """``jupyter-repro reproduce``: exit 0 reproduced, 1 differs / data changed, 2 bad input."""
    from ..provenance.store import check_reachable, resolve_tracking_uri
    from .rerun import Tolerances, check_run_id, format_report, reproduce

    check_run_id(args.run_id)
    check_report_path(args.json, "--json")

    if (args.python or args.rebuild) and not args.fresh_env:
        raise ReproError("--python and --rebuild need --fresh-env")
    per_metric = _per_metric(args.tol)
    for name, value in [("--rtol", args.rtol), ("--atol", args.atol), *per_metric.items()]:
        if not value >= 0:  # also rejects NaN
            raise ReproError(f"tolerance {name} must be a number >= 0, not {value}")
    tol = Tolerances(args.rtol, args.atol, per_metric)
    uri = resolve_tracking_uri(args.tracking_uri)
    check_reachable(uri)
    report = reproduce(
        args.run_id,
        uri,
        tol,
        allow_data_drift=args.allow_data_drift,
        repo=args.repo,
        sanitize_with=args.sanitize_with,
        timeout=args.timeout,
        echo=lambda line: print(line, file=sys.stderr),
        fresh_env=args.fresh_env,
        python=args.python,
        rebuild=args.rebuild,
    )
    print(format_report(report), flush=True)
    if args.json:
        from ..batch.cli import write_json_atomic

        write_json_atomic(args.json, report.to_dict())
    return report.exit_code
