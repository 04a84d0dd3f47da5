"""The ``jupyter-repro server`` subcommand: arguments in, :class:`ServerOptions` out,
then :func:`~.process.serve` or :func:`print_command`."""

from __future__ import annotations

import argparse
import sys
from typing import IO

from ..errors import ReproError
from .options import ServerOptions, parse_int
from .plan import plan_server, redact
from .process import serve


def print_command(
    options: ServerOptions, out: IO[str] | None = None, err: IO[str] | None = None
) -> int:
    """``--print-command``: print the ``mlflow server`` line :func:`serve` would run and
    exit 0, creating nothing. Secrets are not printed; ``err`` names what the line needs.

    Raises:
        ReproError: bad input (exit 2), as for :func:`serve`.
    """
    out = out or sys.stdout
    err = err or sys.stderr
    plan = plan_server(options)
    print(plan.shell_command(), file=out)
    if plan.auth and plan.auth.secret_key:
        print(
            "jupyter-repro server: the server also needs MLFLOW_FLASK_SERVER_SECRET_KEY "
            f"(jupyter-repro server keeps one in {plan.auth.secret_key})",
            file=err,
        )
    for name, value in plan.secret_env.items():
        print(
            f"jupyter-repro server: the server also needs {name}={redact(value)} in its "
            "environment (it holds a password: not on the command line, not printed)",
            file=err,
        )
    if plan.auth and plan.auth.ini and not plan.auth.ini.exists():
        print(
            f"jupyter-repro server: {plan.auth.ini} is written by the first "
            "`jupyter-repro server` start",
            file=err,
        )
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``server`` subcommand to the umbrella parser."""
    d = ServerOptions()
    s = subparsers.add_parser(
        "server",
        help="start a team MLflow tracking server and print the MLFLOW_TRACKING_URI to use",
        description="Start `mlflow server` with a database backend (sqlite in DIR/mlflow.db "
        "unless --backend-store-uri) and artifacts served through it (DIR/artifacts unless "
        "--artifacts-destination), wait until it answers, print the "
        "`export MLFLOW_TRACKING_URI=...` line users paste, and run in the foreground until "
        "Ctrl-C / SIGTERM, which stop the whole server. Exit 1 if it fails or stops by "
        "itself, 2 on bad input, 130 / 143 when interrupted / terminated. "
        "Arguments after -- go to `mlflow server` verbatim. Guide: docs/team-server.md.",
    )
    s.add_argument(
        "--host",
        default=d.host,
        help=f"interface to bind (default {d.host}; "
        "0.0.0.0 for every interface: the machine's names are then allowed)",
    )
    s.add_argument("--port", default=str(d.port), help=f"TCP port (default {d.port})")
    s.add_argument(
        "--dir",
        default=d.dir,
        metavar="DIR",
        help=f"folder for mlflow.db, artifacts/ and basic-auth files (default ./{d.dir})",
    )
    s.add_argument(
        "--backend-store-uri",
        metavar="URI",
        default=None,
        help="database instead of sqlite:///DIR/mlflow.db, e.g. "
        "postgresql://user:pass@db/mlflow (default: $MLFLOW_BACKEND_STORE_URI)",
    )
    s.add_argument(
        "--artifacts-destination",
        metavar="URI",
        default=None,
        help="where served artifacts are stored instead of DIR/artifacts, e.g. "
        "s3://bucket/path (credentials on the server only)",
    )
    s.add_argument(
        "--workers",
        metavar="N",
        default=None,
        help="uvicorn worker processes (default: MLflow's, 4)",
    )
    s.add_argument(
        "--app-name",
        metavar="NAME",
        default=None,
        help="MLflow server app, e.g. basic-auth (users and passwords)",
    )
    s.add_argument(
        "--public-url",
        metavar="URL",
        default=None,
        help="URL users reach it by, e.g. behind a TLS proxy "
        "(https://mlflow.example.org): printed and allowed by the Host check",
    )
    s.add_argument(
        "--timeout",
        metavar="SECONDS",
        default=str(d.timeout),
        help=f"seconds to wait for the server to answer (default {d.timeout:g})",
    )
    s.add_argument(
        "--no-auth",
        action="store_true",
        help="allow a non-loopback --host without --app-name: anyone who reaches the port "
        "can then read and change every run (refused without this flag)",
    )
    s.add_argument(
        "--print-command",
        "--dry-run",
        action="store_true",
        help="print the mlflow server command line and exit (e.g. for a "
        "systemd unit); starts and creates nothing",
    )
    s.add_argument(
        "mlflow_args",
        nargs="*",
        metavar="-- MLFLOW_ARG",
        help="arguments after -- are passed to mlflow server verbatim",
    )
    s.set_defaults(func=server_command)


def server_command(args: argparse.Namespace) -> int:
    """``jupyter-repro server``: 0 (``--print-command``), 1 the server failed or stopped by
    itself, 2 bad input, 129 / 130 / 143 hangup / interrupted / terminated."""
    try:
        timeout = float(args.timeout)
    except ValueError:
        raise ReproError(f"--timeout must be a number of seconds, not {args.timeout!r}") from None
    options = ServerOptions(
        host=args.host,
        port=parse_int(args.port, "--port", 1, 65535),
        dir=args.dir,
        backend_store_uri=args.backend_store_uri,
        artifacts_destination=args.artifacts_destination,
        workers=None if args.workers is None else parse_int(args.workers, "--workers", 1, 1024),
        app_name=args.app_name,
        public_url=args.public_url,
        timeout=timeout,
        mlflow_args=tuple(args.mlflow_args),
        no_auth=args.no_auth,
    )
    if args.print_command:
        return print_command(options)
    return serve(options)
