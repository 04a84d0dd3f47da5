"""``nb-smoke``: prove that notebooks run top to bottom in a clean process.

A thin shell over :func:`jupyter_repro.smoke.run.smoke_notebooks`; see ``docs/nb-smoke.md``.
Exit codes: 0 all passed, 1 something failed, 2 usage error or unreadable input.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import threading
from pathlib import Path

from .. import _fast_import  # first: skips a slow import
from ..errors import ReproError, run_command
from ..fileio import atomic_write_text, check_report_path, check_writable
from ..parameters import add_override_arguments, overrides
from .config import apply_config, blame, config_for, read_table, track_explicit
from .lint import RuleError, resolve_rules
from .options import SmokeOptions
from .report import (
    github_annotations,
    render_details,
    result_line,
    summary_line,
    to_json_text,
    to_junit_xml,
    to_sarif_text,
    write_image_pairs,
)
from .results import NotebookResult


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """nb-smoke's options (shared by ``nb-smoke`` and ``jupyter-repro smoke``)."""
    d = SmokeOptions()
    parser.add_argument("paths", nargs="+", metavar="PATH", help="notebooks or folders")
    parser.add_argument(
        "--mode",
        choices=("script", "kernel"),
        default=d.mode,
        help="script: fresh IPython process (default); kernel: fresh Jupyter kernel",
    )
    parser.add_argument(
        "--kernel",
        dest="kernel_name",
        metavar="NAME",
        help="kernelspec to run instead of the notebook's: --mode kernel starts it; in script "
        "mode its language decides how the code runs, and auto-routed notebooks start it",
    )
    parser.add_argument(
        "-j",
        "--jobs",
        type=int,
        default=d.jobs,
        metavar="N",
        help=f"notebooks at once (default: the CPU count, here {d.jobs})",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=d.timeout,
        metavar="SECONDS",
        help=f"per notebook; killed with its children after it (default {d.timeout:g})",
    )
    parser.add_argument(
        "--fast",
        action="store_true",
        help="%%timeit and %%%%timeit always run once (default: once only where nothing "
        "a later cell sees depends on the repeats)",
    )
    parser.add_argument(
        "--full-timeit", action="store_true", help="%%timeit and %%%%timeit always run in full"
    )
    parser.add_argument("--strict", action="store_true", help="warnings are failures")
    parser.add_argument("--lint-only", action="store_true", help="static checks only, run nothing")
    parser.add_argument("--no-lint", dest="lint", action="store_false", help="skip static checks")
    add_override_arguments(parser)
    parser.add_argument(
        "--jupytext", action="store_true", help="also find jupytext .py/.md notebooks in folders"
    )
    parser.add_argument(
        "--check-outputs",
        action="store_true",
        help="compare fresh outputs with the saved ones (nbval's rules and tags)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=d.repeat,
        metavar="N",
        help="run each notebook N times and report cells whose outputs differ",
    )
    parser.add_argument(
        "--sanitize-with", metavar="FILE", help="nbval sanitizer file (regex/replace pairs)"
    )
    parser.add_argument(
        "--save-images",
        action="store_true",
        help="with --json: write differing images (saved and fresh) beside the report",
    )
    parser.add_argument(
        "--mlflow",
        action="store_true",
        help="log each run to MLflow with all its coordinates, as jupyter-repro batch does",
    )
    parser.add_argument("--tracking-uri", metavar="URI", help="MLflow store for --mlflow")
    parser.add_argument("--experiment", metavar="NAME", help="MLflow experiment for --mlflow")
    parser.add_argument(
        "--select",
        metavar="RULES",
        help="lint rules to run, comma-separated, instead of the default set (ALL: every rule)",
    )
    parser.add_argument(
        "--extend-select", metavar="RULES", help="lint rules to add to the selected ones"
    )
    parser.add_argument("--ignore", metavar="RULES", help="lint rules not to run")
    parser.add_argument(
        "--isolated", action="store_true", help="ignore [tool.nb-smoke] in pyproject.toml files"
    )
    parser.add_argument(
        "--output-format",
        choices=("full", "github"),
        default="full",
        help="full: text (default); github: GitHub Actions annotations (::error/::warning)",
    )
    parser.add_argument("--sarif", metavar="FILE", help="write a SARIF 2.1.0 report here")
    parser.add_argument("--json", metavar="FILE", help="write the JSON report here")
    parser.add_argument("--junit-xml", metavar="FILE", help="write a JUnit XML report here")
    parser.add_argument("--show-output", action="store_true", help="print every cell's output")
    parser.add_argument("-q", "--quiet", action="store_true", help="only failures and the summary")
    track_explicit(parser)  # so [tool.nb-smoke] never overrides what the command line gave


def _rule_list(value: str | None) -> list[str] | None:
    if value is None:
        return None
    return [v.strip() for v in value.split(",") if v.strip()]


def options_from_args(args: argparse.Namespace) -> SmokeOptions:
    """Build :class:`SmokeOptions` from parsed arguments (raises ReproError on bad values)."""
    params = overrides(args)
    if args.jobs < 1:
        raise ReproError("--jobs must be at least 1")
    if args.timeout is not None and args.timeout <= 0:
        raise ReproError("--timeout must be positive")
    if args.repeat < 1:
        raise ReproError("--repeat must be at least 1")
    if args.fast and args.full_timeit:
        raise ReproError("--fast and --full-timeit contradict each other: give one")
    if args.save_images and not args.json:
        raise ReproError("--save-images needs --json FILE (images go beside the report)")
    try:
        rules = resolve_rules(
            _rule_list(args.select),
            _rule_list(args.ignore) or (),
            _rule_list(args.extend_select) or (),
        )
    except RuleError as exc:
        raise ReproError(f"--select/--ignore/--extend-select: {exc}") from None
    if args.sanitize_with:
        from ..outputs import load_sanitizers

        try:
            load_sanitizers(args.sanitize_with)
        except (OSError, re.error) as exc:
            raise ReproError(f"{args.sanitize_with}: cannot use as a sanitizer file: {exc}")
    return SmokeOptions(
        mode=args.mode,
        kernel_name=args.kernel_name,
        jobs=args.jobs,
        timeout=args.timeout,
        fast=args.fast,
        full_timeit=args.full_timeit,
        strict=args.strict,
        lint=args.lint,
        lint_only=args.lint_only,
        parameters=params,
        allow_unknown=args.allow_unknown,
        jupytext=args.jupytext,
        check_outputs=args.check_outputs,
        repeat=args.repeat,
        sanitize_with=args.sanitize_with,
        mlflow=args.mlflow,
        tracking_uri=args.tracking_uri,
        experiment=args.experiment,
        rules=rules,
    )


class _Progress:
    """A tqdm bar on a terminal; plain lines when piped."""

    def __init__(self, total_hint: int | None, quiet: bool, show_output: bool) -> None:
        self.tty = sys.stderr.isatty() and not os.environ.get("CI")
        self.quiet = quiet
        self.show_output = show_output
        self.lock = threading.Lock()
        self.bar = None
        if self.tty:
            from tqdm import tqdm

            self.bar = tqdm(
                total=total_hint, unit="nb", desc="nb-smoke", file=sys.stderr, leave=False
            )

    quiet_all = False  # --output-format github: only the annotations and the summary

    def __call__(self, result: NotebookResult) -> None:
        if self.quiet_all:
            if self.bar is not None:
                self.bar.update(1)
            return
        with self.lock:
            text = result_line(result)
            details = render_details(result, self.show_output)
            show = not self.quiet or not result.ok or result.findings or result.notices
            if self.bar is not None:
                if show:
                    self.bar.write(text, file=sys.stdout)
                    if details:
                        self.bar.write(details, file=sys.stdout)
                self.bar.update(1)
            elif show:
                print(text, flush=True)
                if details:
                    print(details, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class _Configured:
    """Arguments and options per ``[tool.nb-smoke]`` table (see :mod:`.config`)."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.parser = argparse.ArgumentParser(add_help=False)
        add_arguments(self.parser)
        self._options: dict[Path | None, SmokeOptions] = {}

    def args_for(self, path: str | Path) -> argparse.Namespace:
        """The command line's arguments, completed by the config that governs ``path``."""
        if getattr(self.args, "isolated", False):
            return self.args
        source = config_for(path)
        table = read_table(source) if source is not None else None
        return apply_config(self.args, table, source, self.parser)

    def options(self, args: argparse.Namespace, path: str | Path) -> SmokeOptions:
        """:func:`options_from_args` of ``args_for(path)``'s result; a bad value that came
        from the config names its file and key."""
        try:
            return options_from_args(args)
        except ReproError as exc:
            source = None if getattr(self.args, "isolated", False) else config_for(path)
            table = read_table(source) if source is not None else None
            raise blame(exc, self.args, table, source) from None

    def options_for(self, path: Path) -> SmokeOptions:
        source = None if getattr(self.args, "isolated", False) else config_for(path)
        if source not in self._options:
            self._options[source] = self.options(self.args_for(path), path)
        return self._options[source]


def run(args: argparse.Namespace) -> int:
    """Run nb-smoke for parsed arguments; returns the exit code."""
    from ..notebook import discover_notebooks, read_notebook
    from .pairs import one_per_pair
    from .run import smoke_files

    configured = _Configured(args)
    here = Path.cwd()
    governing = here if config_for(here) else Path(args.paths[0])
    args = configured.args_for(governing)
    options = configured.options(args, governing)
    check_writable(args.json, "--json")
    check_writable(args.junit_xml, "--junit-xml")
    check_writable(args.sarif, "--sarif")
    found = list(discover_notebooks(args.paths, jupytext=options.jupytext))
    inputs = [*found, *args.paths]  # both files of a jupytext pair are inputs
    check_report_path(args.json, "--json", inputs)
    check_report_path(args.junit_xml, "--junit-xml", [*inputs, *filter(None, [args.json])])
    check_report_path(args.sarif, "--sarif", [*inputs, *filter(None, [args.json, args.junit_xml])])
    notebooks = one_per_pair(found, read_notebook)  # a jupytext pair is checked once
    if not notebooks:
        print("nb-smoke: no notebooks found in " + ", ".join(args.paths), file=sys.stderr)
        return 2
    for path in notebooks:  # a bad config is an error before anything runs
        configured.options_for(path)
    if options.mlflow and not options.lint_only:  # a bad store is one line before any run
        from ..provenance.store import check_reachable, resolve_tracking_uri

        check_reachable(resolve_tracking_uri(options.tracking_uri, notebooks[0].parent))
    github = args.output_format == "github"
    progress = _Progress(len(notebooks), args.quiet or github, args.show_output and not github)
    if github:
        progress.quiet_all = True
    try:
        report = smoke_files(
            notebooks, options, on_result=progress, options_for=configured.options_for
        )
    finally:
        progress.close()
    if github:
        for line in github_annotations(report):
            print(line, flush=True)
    if args.json:
        if args.save_images:
            write_image_pairs(report, args.json)
        atomic_write_text(args.json, to_json_text(report))
    if args.junit_xml:
        atomic_write_text(args.junit_xml, to_junit_xml(report))
    if args.sarif:
        atomic_write_text(args.sarif, to_sarif_text(report))
    print(summary_line(report), flush=True)
    return report.exit_code


def register(subparsers) -> None:
    """Add ``jupyter-repro smoke`` (the same as ``nb-smoke``)."""
    parser = subparsers.add_parser("smoke", help="run notebooks top to bottom in a clean process")
    add_arguments(parser)
    parser.set_defaults(func=run)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``nb-smoke`` console script."""
    _fast_import.skip_unused_formats()  # this process runs no user code (its workers do)
    parser = argparse.ArgumentParser(
        prog="nb-smoke",
        description="Run notebooks top to bottom in a clean process and report the failing cell.",
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    return run_command("nb-smoke", run, args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
