"""How nb-smoke runs ``%timeit`` and ``%%timeit``: once where that is safe, or always.

A smoke test checks that code runs, not how fast it runs; on tutorial notebooks the
timing loops are most of the run time. ``%time`` already runs once and is left alone.
Policies (:func:`install`): ``"auto"`` (the default) runs a statement once when
:func:`jupyter_repro.smoke.timeit_rule.full_length_reason` finds nothing a later cell
could observe depends on how many times it ran, in full otherwise; ``"once"``
(``--fast``) always runs it once; ``"full"`` (``--full-timeit``) always in full.
:data:`COUNTS` counts the statements run once (``shortened``) and in full (``full``).
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


#: ``%timeit`` calls run once and in full in this process, for the report.
COUNTS = {"shortened": 0, "full": 0}


def install(shell, policy: str = "once") -> None:
    """Replace the ``timeit`` line and cell magics of ``shell`` by the policy's versions.

    Args:
        shell: the IPython ``InteractiveShell`` of the kernel or script-mode process.
        policy: ``"once"`` (every statement once), ``"full"`` (every one in full, only
            counted) or ``"auto"`` (once only when
            :func:`~jupyter_repro.smoke.timeit_rule.full_length_reason` says so).
    """
    original = shell.find_magic("timeit")
    if original is None:
        return
    magics = original.__self__  # IPython's ExecutionMagics

    def timeit_smoke(line: str = "", cell: str | None = None, local_ns=None):
        # IPython passes the caller's local namespace (%timeit inside a function).
        once = policy == "once"
        if policy == "auto":
            from jupyter_repro.smoke.timeit_rule import full_length_reason

            namespace = shell.user_ns if local_ns is None else {**shell.user_ns, **local_ns}
            try:
                once = full_length_reason(line, cell, namespace, magics, shell) is None
            except Exception:  # the rule must never break a run: keep the full length
                once = False
        COUNTS["shortened" if once else "full"] += 1
        return magics.timeit(_once(line) if once else line, cell, local_ns)

    timeit_smoke.needs_local_scope = True
    timeit_smoke.__doc__ = f"nb-smoke ({policy}): run the statement once.\n\n" + (
        original.__doc__ or ""
    )
    shell.register_magic_function(timeit_smoke, "line_cell", "timeit")


__all__ = ["COUNTS", "install"]
