"""``--fast``: ``%timeit`` and ``%%timeit`` run their statement once.

A smoke test checks that code runs, not how fast it runs; on tutorial notebooks the
timing loops are most of the run time. ``%time`` already runs once and is left alone.
This module is imported inside the fresh IPython process or kernel, never by the CLI.
"""

from __future__ import annotations

_OPTIONS_WITH_VALUE = {"-n", "-r", "-p"}


def _once(line: str) -> str:
    """Rewrite ``%timeit`` options so the statement runs exactly once, quietly."""
    words = line.split(" ")
    out: list[str] = []
    i = 0
    # Only leading options belong to the magic; the rest is the statement.
    while i < len(words) and words[i].startswith("-"):
        word = words[i]
        if word in _OPTIONS_WITH_VALUE:
            i += 2
            continue
        if word[:2] in _OPTIONS_WITH_VALUE and len(word) > 2:
            i += 1
            continue
        out.append(word)
        i += 1
    rest = " ".join(words[i:])
    return " ".join(["-n1", "-r1", *out, rest]).strip()


def install(shell) -> None:
    """Replace the ``timeit`` line and cell magics of ``shell`` with run-once versions."""
    original = shell.find_magic("timeit")
    original_cell = shell.find_cell_magic("timeit")
    if original is None:
        return

    def timeit_once(line: str = "", cell: str | None = None):
        if cell is None:
            return original(_once(line))
        return original_cell(_once(line), cell)

    timeit_once.__doc__ = "nb-smoke --fast: run the statement once.\n\n" + (original.__doc__ or "")
    shell.register_magic_function(timeit_once, "line_cell", "timeit")


__all__ = ["install"]
