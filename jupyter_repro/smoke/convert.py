"""Notebook -> run spec: the code cells to run, in order, with their boundaries kept.

The "script" nb-smoke runs is a list of cells, each with IPython syntax intact, handed to
IPython's ``run_cell`` one by one in a fresh process (or to a fresh kernel). Unlike
``jupyter nbconvert --to script``, this keeps every cell's index, id and line numbers, so a
failure is reported at its cell and line, and magics need no ``get_ipython()`` shim.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from nbformat import NotebookNode

from ..notebook import cell_tags
from ..parameters import inject_parameters
from .options import SKIP_TAGS


@dataclass(frozen=True)
class SpecCell:
    """One code cell in a run spec.

    Attributes:
        index: 0-based index in the original notebook, or None for the cell that
            nb-smoke injected with ``-p`` values.
        cell_id: nbformat cell id, when there is one.
        execution_count: the count saved in the notebook (for labels like ``[In 7]``).
        source: the code, IPython syntax included.
        tags: the cell's tags.
        action: ``run`` or ``skip`` (tagged ``skip-execution`` / ``nb-smoke-skip``).
    """

    index: int | None
    cell_id: str | None
    execution_count: int | None
    source: str
    tags: tuple[str, ...]
    action: str

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "id": self.cell_id,
            "execution_count": self.execution_count,
            "source": self.source,
            "tags": list(self.tags),
            "action": self.action,
        }


def build_cells(nb: NotebookNode, parameters: dict[str, Any] | None = None) -> list[SpecCell]:
    """The code cells of ``nb`` to run, with ``parameters`` injected as papermill does.

    The notebook object is not modified. Markdown and raw cells are left out; their
    indices still count, so ``SpecCell.index`` is the cell's index in the notebook.
    """
    for index, cell in enumerate(nb.cells):
        cell.setdefault("metadata", {})["_nb_smoke_index"] = index
    try:
        source_nb = inject_parameters(nb, parameters) if parameters else nb
        cells: list[SpecCell] = []
        for cell in source_nb.cells:
            if cell.get("cell_type") != "code":
                continue
            tags = tuple(cell_tags(cell))
            index = cell["metadata"].get("_nb_smoke_index")
            action = "skip" if any(t in tags for t in SKIP_TAGS) else "run"
            cells.append(
                SpecCell(
                    index=index,
                    cell_id=cell.get("id"),
                    execution_count=cell.get("execution_count"),
                    source=cell.get("source", ""),
                    tags=tags,
                    action=action,
                )
            )
        return cells
    finally:
        for cell in nb.cells:
            cell["metadata"].pop("_nb_smoke_index", None)


#: Code whose outcome script mode cannot make the same as a kernel's (docs/nb-smoke.md,
#: "Script mode and kernel mode"); a notebook with any of it runs in kernel mode. Each
#: pattern comes with the reason nb-smoke prints. The rest of what a cell can observe is
#: the same in both modes (tests/test_smoke_fidelity.py).
KERNEL_ONLY: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(r"get_ipython\(\)\.kernel\b|\bipykernel\b"),
        "uses the kernel object (get_ipython().kernel / ipykernel)",
    ),
    (
        re.compile(
            r"^\s*(?:import|from)\s+comm\b|\bipywidgets\b|(?<![.\w])interact(?:ive|_manual)?\(",
            re.M,
        ),
        "uses comms or ipywidgets, which need a kernel",
    ),
    (
        re.compile(r"^\s*%matplotlib\s+(?:widget|ipympl|notebook|nbagg)\b", re.M),
        "uses an interactive matplotlib backend",
    ),
    (
        re.compile(r"^\s*%(?:connect_info|qtconsole|autosave|subshell|less|more|man)\b", re.M),
        "uses a kernel-only magic",
    ),
)


def kernel_only_reasons(cells: list[SpecCell]) -> list[tuple[int | None, str]]:
    """Cells whose code only a kernel runs as Jupyter does, found in the source (µs a cell).

    Returns ``(cell index, reason)`` pairs, at most one per reason; nb-smoke runs such a
    notebook in kernel mode instead of script mode and says why in a note.
    """
    found: list[tuple[int | None, str]] = []
    for pattern, reason in KERNEL_ONLY:
        for cell in cells:
            if cell.action == "run" and pattern.search(cell.source):
                found.append((cell.index, reason))
                break
    return found
