"""``jupyter-repro``: the umbrella command (also ``jupyter repro``).

Subcommands live in their own packages; each exposes ``register(subparsers)`` that adds
its parser and sets ``func`` (a callable taking the parsed ``argparse.Namespace`` and
returning an exit code). This module only wires them together, so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from . import (
    __version__,
    _fast_import,  # first: skips a slow import
)
from .errors import run_command

#: (module, description) of each subcommand provider, in ``--help`` order.
SUBCOMMAND_MODULES: tuple[str, ...] = (
    "jupyter_repro.smoke.cli",
    "jupyter_repro.batch.cli",
    "jupyter_repro.tune.cli",
    "jupyter_repro.reproduce.cli",
    "jupyter_repro.server.cli",
    "jupyter_repro.reproduce.env_cli",
)


def build_parser() -> argparse.ArgumentParser:
    """The full ``jupyter-repro`` parser with every installed subcommand."""
    parser = argparse.ArgumentParser(
        prog="jupyter-repro",
        description="Notebook hygiene and reproducibility: smoke runs, batch runs, provenance.",
    )
    parser.add_argument("--version", action="version", version=f"jupyter-repro {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name and name.startswith(exc.name):
                continue  # a subcommand package left out of this install
            raise
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``jupyter-repro``; returns the exit code (0 ok, 1 failed, 2 usage)."""
    _fast_import.skip_unused_formats()  # this process runs no user code
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from .provenance.store import quiet_mlflow

    quiet_mlflow()  # no telemetry thread, no "View run" or table-creation lines
    return run_command("jupyter-repro", args.func, args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
