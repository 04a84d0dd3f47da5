"""The verdict vocabulary, defined once.

The kernel's ``%track``, nb-smoke's static lint, the JupyterLab extension and the docs all
speak these names; their string values are part of the JSON reports and of the comm
protocol (``docs/protocol.md``), so they never change meaning once published.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any


class Verdict(str, Enum):
    """A problem with the state a cell ran in, or with how a notebook was saved."""

    OUT_OF_ORDER = "out_of_order"
    """The cell ran after a cell below it, or reads a name defined only below it: a
    top-to-bottom run would not reproduce what the user saw."""

    STALE = "stale"
    """A name the cell read was rebound or mutated by another cell after this cell ran."""

    HIDDEN_STATE = "hidden_state"
    """The cell depends on a name that no code in the notebook defines any more (a deleted
    or edited cell, or something typed in a console)."""

    EDITED = "edited"
    """The cell's source differs from what last ran."""

    NEVER_RUN = "never_run"
    """A code cell that was never executed, between cells that were."""

    UNDEFINED_NAME = "undefined_name"
    """The cell reads a name that nothing defines: it fails with NameError in a clean run."""

    MULTIPLE_DEFINITIONS = "multiple_definitions"
    """A name assigned in several cells and read elsewhere. Information (see
    :data:`INFORMATION`): what a reader saw depends on which of those cells ran last, and
    when that differs from a top-to-bottom run another verdict (``stale``,
    ``out_of_order``) says so."""

    HOME_PATH = "home_path"
    """An absolute path into a user's home folder: the notebook runs only on that machine."""

    UNSEEDED_RANDOM = "unseeded_random"
    """A random generator used with no seed set earlier: results change on every run."""

    UNTRUSTED_PICKLE = "untrusted_pickle"
    """A pickle loaded from a file the notebook does not write: unpickling runs code."""

    @property
    def description(self) -> str:
        """One sentence for humans, used in reports and tooltips."""
        return _DESCRIPTIONS[self]

    @property
    def information(self) -> bool:
        """True for a verdict that says nothing is wrong with a shown result (see
        :data:`INFORMATION`)."""
        return self in INFORMATION


_DESCRIPTIONS = {
    Verdict.OUT_OF_ORDER: "ran out of order, or reads a name defined only in a cell below",
    Verdict.STALE: "reads a name that another cell changed after this cell ran",
    Verdict.HIDDEN_STATE: "depends on a name that no code in the notebook defines",
    Verdict.EDITED: "source differs from what last ran",
    Verdict.NEVER_RUN: "code cell never executed, between executed cells",
    Verdict.UNDEFINED_NAME: "reads a name that nothing defines",
    Verdict.MULTIPLE_DEFINITIONS: "information: a name assigned in several cells and read in "
    "another; a top-to-bottom run takes the last assignment above the reader",
    Verdict.HOME_PATH: "absolute path into a user's home folder",
    Verdict.UNSEEDED_RANDOM: "random generator used with no seed set earlier",
    Verdict.UNTRUSTED_PICKLE: "loads a pickle the notebook did not write itself",
}


#: Verdicts that are information, not a problem: a top-to-bottom run gives the same
#: results. They stay in JSON reports, are not shown as badges or notices by default, and
#: never make a ``%track`` report inconsistent (scenario 19 of the tracking scenarios).
INFORMATION = frozenset({Verdict.MULTIPLE_DEFINITIONS})

#: What the JupyterLab extension shows for each ``%track`` verdict: the short text of the
#: badge and the full name. ``labextension/src/verdictTable.ts`` is generated from this
#: and the descriptions above by :func:`typescript_table` (a test checks they match).
BADGES = {
    Verdict.OUT_OF_ORDER: ("order", "Out of order"),
    Verdict.STALE: ("stale", "Stale"),
    Verdict.HIDDEN_STATE: ("hidden", "Hidden state"),
    Verdict.EDITED: ("edited", "Edited"),
    Verdict.NEVER_RUN: ("unrun", "Never run"),
    Verdict.UNDEFINED_NAME: ("undef", "Undefined name"),
    Verdict.MULTIPLE_DEFINITIONS: ("multi", "Multiple definitions"),
}


def typescript_table() -> str:
    """The source of ``labextension/src/verdictTable.ts``: every ``%track`` verdict's
    badge, label, description and whether it is information, from this module.

    Regenerate with ``python -m jupyter_repro.verdicts > labextension/src/verdictTable.ts``.
    """
    lines = [
        "/**",
        " * Generated from jupyter_repro/verdicts.py by",
        " * `python -m jupyter_repro.verdicts > labextension/src/verdictTable.ts`: do not edit.",
        " */",
        "export interface IVerdictRow {",
        "  badge: string;",
        "  label: string;",
        "  description: string;",
        "  information: boolean;",
        "}",
        "",
        "export const VERDICT_TABLE: { [name: string]: IVerdictRow } = {",
    ]
    rows = list(BADGES.items())
    for i, (verdict, (badge, label)) in enumerate(rows):
        lines += [
            f"  {verdict.value}: {{",
            f"    badge: {_ts(badge)},",
            f"    label: {_ts(label)},",
            f"    description: {_ts(verdict.description)},",
            f"    information: {'true' if verdict.information else 'false'}",
            "  }" + ("," if i < len(rows) - 1 else ""),
        ]
    lines += ["};", ""]
    return "\n".join(lines)


def _ts(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


@dataclass(frozen=True)
class Finding:
    """One verdict on one cell.

    Attributes:
        verdict: what is wrong.
        cell_index: 0-based position of the cell in the notebook (all cells counted).
        message: a plain-words sentence naming the variables and the other cells.
        cell_id: the nbformat 4.5 cell id, when the notebook has one.
        names: the variables involved.
        related_cells: 0-based indices of the other cells involved.
        information: True when the finding says nothing is wrong with a shown result: its
            verdict is information by kind (:data:`INFORMATION`), or this one finding is
            (a ``stale`` whose value was changed only by cells *below* the reader, so a
            top-to-bottom run shows what the cell shows; see docs/tracking.md, "stale from
            a cell below"). Information never makes a report inconsistent and is not a
            "needs attention" badge.
    """

    verdict: Verdict
    cell_index: int
    message: str
    cell_id: str | None = None
    names: tuple[str, ...] = ()
    related_cells: tuple[int, ...] = field(default=())
    information: bool = False

    def __post_init__(self) -> None:
        if self.verdict.information and not self.information:
            object.__setattr__(self, "information", True)

    def to_json(self) -> dict[str, Any]:
        """The finding as in the JSON report (see docs/report-schema.md)."""
        data = asdict(self)
        data["verdict"] = self.verdict.value
        data["names"] = list(self.names)
        data["related_cells"] = list(self.related_cells)
        return data


if __name__ == "__main__":  # pragma: no cover - the generator of verdictTable.ts
    print(typescript_table(), end="")
