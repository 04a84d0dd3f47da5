"""``pytest --nb-smoke [PATH...]``: notebooks as pytest test items, checked by nb-smoke.

Registered through the ``pytest11`` entry point, so it is active wherever jupyter-repro is
installed, and does nothing unless ``--nb-smoke`` is given (the collection of an ordinary
test suite does not change). With it, every ``.ipynb`` file pytest collects (outside
``.ipynb_checkpoints``) becomes one test item, named after the file, marked ``nb_smoke``,
that lints the notebook and runs it top to bottom in a clean process exactly as
``nb-smoke PATH`` does: same ``[tool.nb-smoke]`` configuration (nearest pyproject.toml),
same cell tags (``skip-execution``, ``raises-exception``...), same failure text (the
``FAIL`` line and the failing cell's details). Lint findings become pytest warnings; under
``strict = true`` they fail the item, as on the command line.

Options: ``--nb-smoke-mode script|kernel``, ``--nb-smoke-fast``, ``--nb-smoke-full-timeit``, ``--nb-smoke-timeout
SECONDS`` override the configuration. Works with ``-n`` (pytest-xdist: one notebook per
item, distributed like any test), ``--junitxml``, ``-k`` and ``-m nb_smoke``.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest


class NbSmokeWarning(UserWarning):
    """A lint finding or notice about a notebook (not a failure unless ``strict``)."""


class NotebookFailed(Exception):
    """A notebook did not pass; carries nb-smoke's result for the failure report."""

    def __init__(self, result: Any) -> None:
        super().__init__(result.path)
        self.result = result


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("nb-smoke", "notebooks run top to bottom by nb-smoke")
    group.addoption(
        "--nb-smoke",
        action="store_true",
        default=False,
        help="collect .ipynb notebooks and run each top to bottom in a clean process",
    )
    group.addoption(
        "--nb-smoke-mode",
        choices=("script", "kernel"),
        default=None,
        help="script: fresh IPython process (default); kernel: fresh Jupyter kernel",
    )
    group.addoption(
        "--nb-smoke-fast",
        action="store_true",
        default=None,
        help="%%timeit and %%%%timeit always run once",
    )
    group.addoption(
        "--nb-smoke-full-timeit",
        action="store_true",
        default=None,
        help="%%timeit and %%%%timeit always run in full",
    )
    group.addoption(
        "--nb-smoke-timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="per notebook (default: [tool.nb-smoke] timeout, else 600)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "nb_smoke: a notebook checked by nb-smoke (--nb-smoke)")


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if not parent.config.getoption("nb_smoke"):
        return None
    if file_path.suffix != ".ipynb" or ".ipynb_checkpoints" in file_path.parts:
        return None
    return NotebookFile.from_parent(parent, path=file_path)


class NotebookFile(pytest.File):
    """One notebook file: one item."""

    def collect(self):
        yield NotebookItem.from_parent(self, name=self.path.name)


class NotebookItem(pytest.Item):
    """Lint and run one notebook with nb-smoke; fails as ``nb-smoke PATH`` would."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_marker("nb_smoke")

    def _options(self):
        import argparse

        from .cli import _Configured, add_arguments, options_from_args

        parser = argparse.ArgumentParser(add_help=False)
        add_arguments(parser)
        args = parser.parse_args(["--jobs", "1", str(self.path)])
        args = _Configured(args).args_for(self.path)
        get = self.config.getoption
        if get("nb_smoke_mode") is not None:
            args.mode = get("nb_smoke_mode")
        if get("nb_smoke_fast"):
            args.fast = True
        if get("nb_smoke_full_timeit"):
            args.full_timeit = True
        if get("nb_smoke_timeout") is not None:
            args.timeout = get("nb_smoke_timeout")
        return options_from_args(args)

    def runtest(self) -> None:
        from .report import render_details
        from .run import check_notebook, installed_kernelspecs

        options = self._options()
        kernels = {} if options.lint_only else installed_kernelspecs()
        # Named as on the command line run from the same folder, so the text is the same.
        here = Path(self.config.invocation_params.dir)
        path = Path(self.path)
        if path.is_relative_to(here):
            path = path.relative_to(here)
        result = check_notebook(path, options, kernels)
        self.user_properties.append(("nb_smoke_status", result.final_status))

        if result.ok:
            details = render_details(result)
            if details:
                warnings.warn(NbSmokeWarning(f"{result.path}:\n{details}"), stacklevel=1)
            return
        raise NotebookFailed(result)

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, NotebookFailed):
            from .report import render_details, result_line

            result = excinfo.value.result
            details = render_details(result)
            return result_line(result) + ("\n" + details if details else "")
        from ..errors import ReproError

        if isinstance(excinfo.value, ReproError):  # bad config or notebook: one line, as the CLI
            return str(excinfo.value)
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self):
        return self.path, None, f"notebook {self.path.name}"
