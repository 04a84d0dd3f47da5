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
    """A name assigned in several cells and read elsewhere: its value depends on which of
    those cells ran last."""

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


_DESCRIPTIONS = {
    Verdict.OUT_OF_ORDER: "ran out of order, or reads a name defined only in a cell below",
    Verdict.STALE: "reads a name that another cell changed after this cell ran",
    Verdict.HIDDEN_STATE: "depends on a name that no code in the notebook defines",
    Verdict.EDITED: "source differs from what last ran",
    Verdict.NEVER_RUN: "code cell never executed, between executed cells",
    Verdict.UNDEFINED_NAME: "reads a name that nothing defines",
    Verdict.MULTIPLE_DEFINITIONS: "a name assigned in several cells; its value depends on run order",
    Verdict.HOME_PATH: "absolute path into a user's home folder",
    Verdict.UNSEEDED_RANDOM: "random generator used with no seed set earlier",
    Verdict.UNTRUSTED_PICKLE: "loads a pickle the notebook did not write itself",
}


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
    """

    verdict: Verdict
    cell_index: int
    message: str
    cell_id: str | None = None
    names: tuple[str, ...] = ()
    related_cells: tuple[int, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        """The finding as in the JSON report (see docs/report-schema.md)."""
        data = asdict(self)
        data["verdict"] = self.verdict.value
        data["names"] = list(self.names)
        data["related_cells"] = list(self.related_cells)
        return data
