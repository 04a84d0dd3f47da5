"""``--fast``: ``%timeit`` and ``%%timeit`` run their statement once.

A smoke test checks that code runs, not how fast it runs; on tutorial notebooks the
timing loops are most of the run time. ``%time`` already runs once and is left alone.
This module is imported inside the fresh IPython process or kernel, never by the CLI.
"""

from __future__ import annotations

import re

_OPTION = re.compile(r"-([nrp])\s*(\S+)\s*|-([A-Za-z]+)\s*")


def _once(line: str) -> str:
    """Rewrite ``%timeit`` options so the statement runs exactly once.

    Only leading options belong to the magic; ``-n``/``-r`` (and their values, glued or
    not) are replaced, other options (``-o``, ``-q``, ``-p3``) are kept.
    """
    rest = line.strip()
    kept: list[str] = []
    while rest.startswith("-"):
        match = _OPTION.match(rest)
        if match is None:
            break
        if match.group(1) == "p":
            kept.append(f"-p{match.group(2)}")
        elif match.group(3):
            kept.append(f"-{match.group(3)}")
        rest = rest[match.end() :]
    return " ".join(["-n1", "-r1", *kept, rest]).strip()


def install(shell) -> None:
    """Replace the ``timeit`` line and cell magics of ``shell`` with run-once versions."""
    original = shell.find_magic("timeit")
    if original is None:
        return
    magics = original.__self__  # IPython's ExecutionMagics

    def timeit_once(line: str = "", cell: str | None = None, local_ns=None):
        # IPython passes the caller's local namespace (%timeit inside a function).
        return magics.timeit(_once(line), cell, local_ns)

    timeit_once.needs_local_scope = True
    timeit_once.__doc__ = "nb-smoke --fast: run the statement once.\n\n" + (original.__doc__ or "")
    shell.register_magic_function(timeit_once, "line_cell", "timeit")


__all__ = ["install"]
