"""One exception hierarchy for the whole toolkit.

Every error carries the facts a report needs as attributes (path, cell index, ...) and
renders a one-line human message in ``str()``. CLIs turn a :class:`ReproError` into that
line and exit code 2 (usage or bad input); they never show a traceback for one.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any


class ReproError(Exception):
    """Base class of every error jupyter_repro raises on purpose."""

    exit_code: int = 2


class ProtocolError(ReproError, ValueError):
    """A frontend message that does not follow ``docs/protocol.md`` (``%track``'s comm).

    Attributes:
        in_reply_to: the ``type`` of the offending message (or None when absent).
    """

    def __init__(self, message: str, in_reply_to: str | None = None) -> None:
        self.in_reply_to = in_reply_to
        super().__init__(message)


class ExportError(ReproError):
    """A ``%track export`` file could not be written; the message names the path and
    the cause (one line)."""


class NotebookReadError(ReproError):
    """A notebook file could not be read: missing, not JSON, wrong nbformat, binary, empty.

    Attributes:
        path: the file that could not be read.
        cause: a short phrase saying why ("invalid JSON at line 3 column 1").
    """

    def __init__(self, path: str | Path, cause: str) -> None:
        self.path = str(path)
        self.cause = cause
        super().__init__(f"{self.path}: {cause}")


class KernelNotFoundError(ReproError):
    """The notebook's kernelspec (or ``--kernel``) is not installed here.

    Attributes:
        path: the notebook.
        kernel_name: the kernelspec name that was asked for.
        installed: names of the kernelspecs that are installed.
    """

    def __init__(self, path: str | Path, kernel_name: str, installed: list[str]) -> None:
        self.path = str(path)
        self.kernel_name = kernel_name
        self.installed = sorted(installed)
        names = ", ".join(self.installed) or "none"
        super().__init__(
            f"{self.path}: kernelspec '{kernel_name}' is not installed "
            f"(installed: {names}); pass --kernel NAME to use one of them"
        )


class ParameterError(ReproError):
    """Parameters cannot be applied to a notebook (no ``parameters`` cell, unknown name).

    Attributes:
        path: the notebook.
        unknown: the names given that the parameters cell does not define.
        known: the names the parameters cell does define.
    """

    def __init__(
        self,
        path: str | Path,
        message: str,
        unknown: list[str] | None = None,
        known: list[str] | None = None,
    ) -> None:
        self.path = str(path)
        self.unknown = list(unknown or [])
        self.known = list(known or [])
        super().__init__(f"{self.path}: {message}")


class Terminated(KeyboardInterrupt):
    """SIGTERM, delivered like Ctrl-C so the same clean-up runs (exit code 143)."""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise Terminated()


def run_command(prog: str, func: Callable[[Any], int], args: Any) -> int:
    """Run a CLI command: a :class:`ReproError` becomes one line on stderr and its exit
    code (2); Ctrl-C exits 130 and SIGTERM 143, after the command's own clean-up (it sees
    a ``KeyboardInterrupt``); a closed pipe (``| head``) ends quietly. Every CLI of the
    toolkit goes through here."""
    import signal

    previous = None
    if hasattr(signal, "SIGTERM"):
        try:
            previous = signal.signal(signal.SIGTERM, _on_sigterm)
        except ValueError:  # not the main thread
            pass
    try:
        return int(func(args))
    except ReproError as exc:
        from .uris import redact_text

        print(f"{prog}: error: {redact_text(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except Terminated:
        print(f"{prog}: terminated", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`nb-smoke ... | head`): stop without a traceback.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
