#!/usr/bin/env python
"""Which cells must re-run after a one-cell edit, and which does each tool flag?

    python benchmarks/track_accuracy.py [--workers 2] [--limit N] [--tools track,ipyflow,rerun]

The corpus: code cells of public tutorial notebooks nobody here wrote (repositories and
commits in ``CORPUS`` below, fetched into ``benchmarks/.corpus/``, never committed), and
one-cell edits of them:

* ``literal``: a number in an assignment of a real cell changed (``x = 5`` → ``x = 6``,
  ``x2_sub[0, 0] = 99`` → ``100``), up to three cells per notebook;
* ``output_only``: a ``print`` added to a real cell (nothing below needs to re-run);
* grafted kinds (``GRAFTS``): the changes ``%track`` has to see through methods, aliases,
  containers, views and files (issue 12) are rare in tutorials, so a few short cells are
  inserted into the real notebook (a setup cell, the cell that is edited, a reader right
  after it, and the real cells carry on below) — both versions of the pair hold them, and
  only the edited cell differs.

The truth: both versions run top to bottom in fresh kernels (nbclient); outputs are
compared per cell after normalising addresses (``0x7f…``) and the working folder; the
must-rerun set is the cells below the edited one whose outputs differ. Cells whose output
differs between two fresh runs of the same notebook (random numbers, clocks) are left out.

Each tool then plays the user, in a fresh kernel driven as JupyterLab drives it
(``kernel_driver.py``): run the original top to bottom, edit the cell, re-run only it, and
read which cells below are flagged:

* ``%track``: ``%load_ext jupyter_repro`` and ``%track on``, the ``jupyter_repro.track``
  comm opened and told the notebook's cells (as the extension does), then the JSON of
  ``%track report --json``; a cell is flagged when its ``flagged`` list (protocol 1.1: the
  verdicts that are not information) is not empty — what the JupyterLab extension shows as
  "needs attention"; the cells whose only verdict is information (a ``stale`` from a cell
  below, ``multiple_definitions``) are counted apart, as ``%track info``;
* ipyflow: its kernel, through its ``ipyflow`` comm; flagged = ``waiting_cells`` ∪
  ``ready_cells`` of the ``compute_exec_schedule`` reply after the re-run;
* ``rerun-below``: every code cell below the edit.

A pair is *safe* for a tool when every must-rerun cell is flagged. Printed: safe pairs,
cells flagged in total and the oracle's total, overall and per edit kind, and the pairs
each tool misses; the whole result goes to ``benchmarks/results/track_accuracy-<time>.json``.
"""

from __future__ import annotations

import argparse
import ast
import datetime as dt
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from kernel_driver import (  # noqa: E402
    Frontend,
    ipyflow_python,
    ipyflow_version,
    shutdown_all,
    track_manager,
    untrack_manager,
)

RESULTS = HERE / "results"
MIRRORS = Path("/work/.mirror")

#: (repository, commit, notebooks): public tutorial notebooks, pure Python / numpy / pandas.
CORPUS: list[tuple[str, str, list[str]]] = [
    (
        "jakevdp/WhirlwindTourOfPython",
        "6f1daf714fe52a8dde6a288674ba46a7feed8816",
        [
            "03-Semantics-Variables.ipynb",
            "06-Built-in-Data-Structures.ipynb",
            "08-Defining-Functions.ipynb",
            "11-List-Comprehensions.ipynb",
            "12-Generators.ipynb",
        ],
    ),
    (
        "jakevdp/PythonDataScienceHandbook",
        "d66231454ef753818dc9213c9b5942e067266966",
        [
            "notebooks/02.02-The-Basics-Of-NumPy-Arrays.ipynb",
            "notebooks/02.07-Fancy-Indexing.ipynb",
            "notebooks/03.01-Introducing-Pandas-Objects.ipynb",
            "notebooks/03.02-Data-Indexing-and-Selection.ipynb",
        ],
    ),
]
MAX_CELLS = 12  # code cells kept per notebook (the first ones that run here)
MAX_LITERAL_EDITS = 3
#: Cells left out of the corpus: magics and shell escapes, help, plots, input, network,
#: files the repositories ship (not copied), sleeps and timings.
SKIP = re.compile(
    r"^\s*[%!]|\?\s*$|help\(|input\(|plt\.|matplotlib|seaborn|read_csv|urlopen|open\(|"
    r"time\.sleep|timeit|display\(|from IPython|import this|%",
    re.M,
)


@dataclass(frozen=True)
class Graft:
    """Cells inserted into a real notebook so that an edit of a given kind can be made:
    ``setup`` · ``action`` (the cell edited into ``edited``) · ``reader``; the reader
    (and every real cell below) is what may have to re-run."""

    kind: str
    setup: str
    action: str
    edited: str
    reader: str


GRAFTS: list[Graft] = [
    Graft(
        "method_self",
        "class Tally:\n    def __init__(self):\n        self.total = 0\n\n"
        "    def add(self, v):\n        self.total += v\n\ntally = Tally()",
        "tally.add(2)",
        "tally.add(5)",
        "print('total', tally.total)",
    ),
    Graft(
        "method_setter",
        "class Point:\n    def __init__(self, x):\n        self.x = x\n\n"
        "    def set_x(self, x):\n        self.x = x\n\n"
        "    def double(self):\n        return 2 * self.x\n\npt = Point(1)",
        "pt.set_x(3)",
        "pt.set_x(4)",
        "print(pt.double())",
    ),
    Graft(
        "method_pure",
        "class Point:\n    def __init__(self, x):\n        self.x = x\n\n"
        "    def double(self):\n        return 2 * self.x\n\npt = Point(3)",
        "dbl = pt.double()\nprint('computed')",
        "dbl = pt.double()\nprint('computed again')",
        "print(pt.x, dbl)",
    ),
    Graft(
        "loop_variable",
        "groups = {'a': [1], 'b': [2, 3]}",
        "for v in groups.values():\n    v.append(0)",
        "for v in groups.values():\n    v.append(9)",
        "print(groups)",
    ),
    Graft(
        "setdefault",
        "index = {}",
        "bucket = index.setdefault('k', [])\nbucket.append(1)",
        "bucket = index.setdefault('k', [])\nbucket.append(2)",
        "print(index)",
    ),
    Graft(
        "container_element",
        "rows = [[1, 2], [3, 4]]",
        "first = rows[0]\nfirst.append(5)",
        "first = rows[0]\nfirst.append(6)",
        "print(rows)",
    ),
    Graft(
        "shallow_copy",
        "import copy\norig = {'xs': [1, 2]}\nsnap = copy.copy(orig)",
        "snap['xs'].append(3)",
        "snap['xs'].append(4)",
        "print(orig)",
    ),
    Graft(
        "shallow_slice",
        "nested = [[0], [1]]\nhalf = nested[:]",
        "half[1].append(7)",
        "half[1].append(8)",
        "print(nested)",
    ),
    Graft(
        "shallow_list",
        "pairs = [[0, 0]]\ncopied = list(pairs)",
        "copied[0][0] = 1",
        "copied[0][0] = 2",
        "print(pairs)",
    ),
    Graft(
        "numpy_view",
        "import numpy as np\ngrid = np.zeros((3, 3))",
        "row = grid[0]\nrow[:] = 1",
        "row = grid[0]\nrow[:] = 2",
        "print(grid.sum())",
    ),
    Graft(
        "file_in_variable",
        "data_path = 'bench_notes.txt'\nwith open(data_path, 'w') as fh:\n    fh.write('start')",
        "with open(data_path, 'w') as fh:\n    fh.write('first')",
        "with open(data_path, 'w') as fh:\n    fh.write('second')",
        "with open(data_path) as fh:\n    print(fh.read())",
    ),
    Graft(
        "folder_create",
        "import os\nout_dir = 'bench_out'\nos.makedirs(out_dir, exist_ok=True)",
        "os.makedirs(os.path.join(out_dir, 'run_a'), exist_ok=True)",
        "os.makedirs(os.path.join(out_dir, 'run_b'), exist_ok=True)",
        "print(sorted(os.listdir(out_dir)))",
    ),
    Graft(
        "folder_rename",
        "import os\nos.makedirs('bench_src', exist_ok=True)\nopen('bench_src/a.txt', 'w').close()",
        "for name in os.listdir('bench_src'):\n    os.rename(os.path.join('bench_src', name), "
        "os.path.join('bench_src', 'v1_' + name))",
        "for name in os.listdir('bench_src'):\n    os.rename(os.path.join('bench_src', name), "
        "os.path.join('bench_src', 'v2_' + name))",
        "print(sorted(os.listdir('bench_src')))",
    ),
    Graft(
        "folder_listing",
        "import os\nlist_dir = 'bench_list'\nos.makedirs(list_dir, exist_ok=True)",
        "fname = 'one.txt'\nopen(os.path.join(list_dir, fname), 'w').close()",
        "fname = 'two.txt'\nopen(os.path.join(list_dir, fname), 'w').close()",
        "print(sorted(os.listdir(list_dir)))",
    ),
]
GRAFTS_PER_KIND = 2


# -- the corpus ------------------------------------------------------------------------
@dataclass
class Notebook:
    """A notebook as a list of code cells: ``[(cell_id, source), ...]``."""

    name: str
    cells: list[tuple[str, str]]


@dataclass
class Pair:
    """One edit: ``original`` and the same notebook with cell ``index`` replaced by ``edited``."""

    pair_id: str
    kind: str
    original: Notebook
    index: int
    edited: str

    def edited_notebook(self) -> Notebook:
        cells = list(self.original.cells)
        cells[self.index] = (cells[self.index][0], self.edited)
        return Notebook(self.original.name + "+edit", cells)


def mirror(repo: str) -> Path:
    """The local git directory of a fetched repository (``fetch github:<repo>``)."""
    path = MIRRORS / repo.replace("/", "+") / "repo"
    if not path.exists():
        raise SystemExit(f"{repo}: not fetched ({path} missing); fetch it first")
    return path


def read_notebook(repo: str, commit: str, path: str) -> Notebook:
    """The usable code cells of ``path`` at ``commit`` (at most ``MAX_CELLS``)."""
    import nbformat

    text = subprocess.run(
        ["git", "--git-dir", str(mirror(repo)), "show", f"{commit}:{path}"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    nb = nbformat.reads(text, as_version=4)
    cells = []
    for cell in nb.cells:
        if cell.cell_type != "code" or not cell.source.strip() or SKIP.search(cell.source):
            continue
        try:
            ast.parse(cell.source)
        except SyntaxError:  # Python 2 prints and the like
            continue
        cells.append((f"c{len(cells)}", cell.source))
        if len(cells) == MAX_CELLS:
            break
    short = f"{repo.split('/')[1]}/{Path(path).stem}"
    return Notebook(short, cells)


def literal_edits(source: str) -> str | None:
    """``source`` with the first number in a top-level assignment bumped, or None."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    lines = source.splitlines(keepends=True)
    for stmt in tree.body:
        if not isinstance(stmt, ast.Assign | ast.AugAssign):
            continue
        for node in ast.walk(stmt.value):
            if (
                isinstance(node, ast.Constant)
                and type(node.value) in (int, float)
                and node.lineno == node.end_lineno
            ):
                line = lines[node.lineno - 1]
                old = line[node.col_offset : node.end_col_offset]
                new = repr(node.value + 1) if isinstance(node.value, int) else repr(node.value * 2)
                if old.startswith("-") or not re.fullmatch(r"[0-9.eE_]+", old):
                    continue
                lines[node.lineno - 1] = line[: node.col_offset] + new + line[node.end_col_offset :]
                return "".join(lines)
    return None


def build_pairs(notebooks: list[Notebook]) -> list[Pair]:
    """Literal and output-only edits of every notebook, then each graft in
    ``GRAFTS_PER_KIND`` notebooks (a third of the way down each)."""
    pairs: list[Pair] = []
    for nb in notebooks:
        n_literal = 0
        for i, (_, src) in enumerate(nb.cells[:-1]):  # an edit of the last cell has no "below"
            new = literal_edits(src)
            if new is not None and n_literal < MAX_LITERAL_EDITS:
                pairs.append(Pair(f"{nb.name}#{i}:literal", "literal", nb, i, new))
                n_literal += 1
        k = len(nb.cells) // 2
        pairs.append(
            Pair(
                f"{nb.name}#{k}:output_only",
                "output_only",
                nb,
                k,
                nb.cells[k][1] + "\nprint('checked')",
            )
        )
    for g, graft in enumerate(GRAFTS):
        for j in range(GRAFTS_PER_KIND):
            base = notebooks[(g + 2 * j) % len(notebooks)]
            at = max(1, len(base.cells) // 3)
            inserted = [
                ("g_setup", graft.setup),
                ("g_action", graft.action),
                ("g_reader", graft.reader),
            ]
            cells = base.cells[:at] + inserted + base.cells[at:]
            nb = Notebook(f"{base.name}+{graft.kind}", cells)
            pairs.append(
                Pair(f"{nb.name}#{at + 1}:{graft.kind}", graft.kind, nb, at + 1, graft.edited)
            )
    return interleave(pairs)


def interleave(pairs: list[Pair]) -> list[Pair]:
    """Round-robin over edit kinds, so that a run stopped early has covered every kind."""
    by_kind: dict[str, list[Pair]] = {}
    for pair in pairs:
        by_kind.setdefault(pair.kind, []).append(pair)
    out: list[Pair] = []
    while any(by_kind.values()):
        for pending in by_kind.values():
            if pending:
                out.append(pending.pop(0))
    return out


# -- the truth -------------------------------------------------------------------------
_ADDRESS = re.compile(r"0x[0-9a-fA-F]+")


def normalise(outputs: list[dict[str, Any]], cwd: str) -> str:
    """One string per cell's outputs: text only, addresses and the folder replaced."""
    parts = []
    previous = None
    for out in outputs:
        kind = out["output_type"]
        if kind == "stream":  # one print may arrive in several messages: join them
            same = previous is not None and previous.get("name") == out["name"]
            parts.append(out["text"] if same else f"{out['name']}:{out['text']}")
            previous = out
            continue
        previous = None
        if kind == "error":
            parts.append(f"error:{out['ename']}: {out['evalue']}")
        else:
            data = out.get("data", {})
            parts.append(f"{kind}:" + data.get("text/plain", ",".join(sorted(data))))
    text = "".join(parts)
    for folder in {cwd, str(Path(cwd).resolve())}:
        text = text.replace(folder, "<cwd>")
    return _ADDRESS.sub("0x?", text)


def run_fresh(nb: Notebook, timeout: int = 60, attempts: int = 3) -> list[str]:
    """``_run_fresh``, again when the kernel dies before it is ready (it happens on a
    machine loaded far beyond its cores); the last failure is raised."""
    for attempt in range(attempts):
        try:
            return _run_fresh(nb, timeout)
        except RuntimeError as exc:
            if "died" not in str(exc) or attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


def _run_fresh(nb: Notebook, timeout: int = 60) -> list[str]:
    """Run ``nb`` top to bottom in a fresh kernel (nbclient) in an empty folder; the
    normalised outputs of each cell."""
    import nbformat
    from jupyter_client import KernelManager
    from nbclient import NotebookClient

    doc = nbformat.v4.new_notebook()
    doc.cells = [nbformat.v4.new_code_cell(src, id=cid) for cid, src in nb.cells]
    cwd = tempfile.mkdtemp(prefix="track-truth-")
    km = KernelManager(kernel_name="python3")  # ours, so a stopped benchmark can kill it
    track_manager(km)
    try:
        client = NotebookClient(
            doc, km=km, timeout=timeout, kernel_name="python3", allow_errors=True,
            resources={"metadata": {"path": cwd}},
            # on a loaded machine output can trail the reply by seconds: wait for all of
            # it, and fail loudly rather than compare a cell with its outputs cut short
            iopub_timeout=120, raise_on_iopub_timeout=True,
        )  # fmt: skip
        client.execute(env=dict(os.environ, PYTHONHASHSEED="0"), stderr=subprocess.DEVNULL)
        return [normalise(cell.get("outputs", []), cwd) for cell in doc.cells]
    finally:
        if km.has_kernel:
            km.shutdown_kernel(now=True)
        untrack_manager(km)
        shutil.rmtree(cwd, ignore_errors=True)


# -- the tools -------------------------------------------------------------------------
INFO_VERDICTS = {"multiple_definitions"}


#: The extra column ``track_flags`` fills: every cell with a verdict, information included.
TRACK_WITH_INFO = "%track +info"


def track_flags(pair: Pair) -> dict[str, set[int]]:
    """Indices of the cells ``%track`` flags after the user's edit-and-re-run (its
    ``flagged`` lists), and under :data:`TRACK_WITH_INFO` the cells with any verdict but
    ``multiple_definitions`` (information-level ``stale`` included)."""
    with Frontend("python3") as fe:
        for line in ("%load_ext jupyter_repro", "%track on"):
            r = fe.execute(line, store_history=False)
            if r.status != "ok":
                raise RuntimeError(f"{line}: {r.stderr or r.outputs}")
        cells = pair.original.cells

        def tell(cells: list[tuple[str, str]]) -> None:
            fe.send({"type": "notebook", "protocol": "1.1",
                     "cells": [{"id": i, "cell_type": "code", "source": s} for i, s in cells]})  # fmt: skip

        fe.open_comm("jupyter_repro.track", {"type": "hello", "protocol": "1.1"})
        tell(cells)
        for cid, src in cells:
            fe.execute(src, cid)
        edited = pair.edited_notebook().cells
        tell(edited)
        fe.execute(edited[pair.index][1], edited[pair.index][0])
        r = fe.execute("%track report --json", store_history=False)
        report = json.loads(r.stdout)
    index = {cid: i for i, (cid, _) in enumerate(cells)}
    known = [c for c in report["cells"] if c["cell_id"] in index]
    return {
        "%track": {index[c["cell_id"]] for c in known if c["flagged"]},
        TRACK_WITH_INFO: {index[c["cell_id"]] for c in known if set(c["verdicts"]) - INFO_VERDICTS},
    }


def _ipyflow_metadata(cells: list[tuple[str, str]]) -> dict[str, Any]:
    return {cid: {"index": i, "content": src, "type": "code"} for i, (cid, src) in enumerate(cells)}


def ipyflow_flags(pair: Pair) -> set[int]:
    """Indices of the cells ipyflow marks waiting or ready after the edit-and-re-run."""
    cells = pair.original.cells
    with Frontend("ipyflow") as fe:
        r = fe.open_comm(
            "ipyflow", {"interface": "jupyterlab", "cell_metadata_by_id": _ipyflow_metadata(cells),
                        "cell_parents": {}, "cell_children": {}},
        )  # fmt: skip
        if not any(m.get("type") == "establish" for m in r.comm):
            raise RuntimeError(f"ipyflow comm not established: {r.comm}")

        def run(cid: str, src: str, now: list[tuple[str, str]]) -> dict[str, Any]:
            fe.send({"type": "change_active_cell", "active_cell_id": cid})
            fe.execute(src, cid)
            replies = fe.send(
                {"type": "compute_exec_schedule", "cell_metadata_by_id": _ipyflow_metadata(now),
                 "is_reactively_executing": False}
            ).comm  # fmt: skip
            schedules = [m for m in replies if m.get("type") == "compute_exec_schedule"]
            return schedules[-1] if schedules else {}

        for cid, src in cells:
            run(cid, src, cells)
        edited = pair.edited_notebook().cells
        schedule = run(edited[pair.index][0], edited[pair.index][1], edited)
        if not schedule.get("success", False):
            raise RuntimeError(f"ipyflow compute_exec_schedule failed: {schedule}")
    index = {cid: i for i, (cid, _) in enumerate(cells)}
    marked = set(schedule.get("waiting_cells", [])) | set(schedule.get("ready_cells", []))
    return {index[c] for c in marked if c in index}


def rerun_below(pair: Pair) -> set[int]:
    """Every code cell below the edit."""
    return set(range(pair.index + 1, len(pair.original.cells)))


TOOLS: dict[str, Callable[[Pair], set[int] | dict[str, set[int]]]] = {
    "%track": track_flags,
    "ipyflow": ipyflow_flags,
    "rerun-below": rerun_below,
}
#: ``--tools`` names: short and shell-friendly (the full names are accepted too).
TOOL_NAMES = {"track": "%track", "ipyflow": "ipyflow", "rerun": "rerun-below"}


# -- one pair --------------------------------------------------------------------------
@dataclass
class Outcome:
    """The truth and every tool's verdict on one pair (cell indices)."""

    pair_id: str
    kind: str
    index: int
    cells: int
    must_rerun: list[int]
    noisy: list[int] = field(default_factory=list)
    flagged: dict[str, list[int] | None] = field(default_factory=dict)
    safe: dict[str, bool | None] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)


_STREAM = re.compile(r"(stdout|stderr):")


def same_output(a: str, b: str) -> bool:
    """Two normalised outputs equal as text, however the streams were split into
    messages (results cached before streams were joined still compare right)."""
    return a == b or _STREAM.sub("", a) == _STREAM.sub("", b)


def must_rerun(pair: Pair, original_out: list[str], edited_out: list[str],
               noisy: set[int]) -> set[int]:  # fmt: skip
    """Cells below the edit whose outputs differ between the two fresh runs."""
    return {
        i
        for i in range(pair.index + 1, len(pair.original.cells))
        if i not in noisy and not same_output(original_out[i], edited_out[i])
    }


def judge(pair: Pair, truth: set[int], noisy: set[int],
          tools: dict[str, Callable[[Pair], set[int] | dict[str, set[int]]]]) -> Outcome:  # fmt: skip
    """Run every tool on ``pair`` and compare with ``truth``. A tool may answer for
    several columns at once (a dict of column name to cells)."""
    outcome = Outcome(pair.pair_id, pair.kind, pair.index, len(pair.original.cells),
                      sorted(truth), sorted(noisy))  # fmt: skip
    for name, tool in tools.items():
        try:
            answer = tool(pair)
        except Exception as exc:  # a tool that breaks on a pair: recorded, not fatal
            outcome.flagged[name] = None
            outcome.safe[name] = None
            outcome.errors[name] = f"{type(exc).__name__}: {exc}"[:300]
            continue
        for column, cells in (answer if isinstance(answer, dict) else {name: answer}).items():
            flagged = {i for i in cells if i > pair.index and i not in noisy}
            outcome.flagged[column] = sorted(flagged)
            outcome.safe[column] = truth <= flagged
    return outcome


def rejudge(previous: Outcome, truth: set[int], noisy: set[int]) -> Outcome:
    """``previous`` with a new truth: each tool's stored flagged cells compared again."""
    outcome = Outcome(previous.pair_id, previous.kind, previous.index, previous.cells,
                      sorted(truth), sorted(noisy), errors=dict(previous.errors))  # fmt: skip
    for name, flagged in previous.flagged.items():
        if flagged is None:
            outcome.flagged[name], outcome.safe[name] = None, None
            continue
        kept = {i for i in flagged if i not in noisy}
        outcome.flagged[name] = sorted(kept)
        outcome.safe[name] = truth <= kept
    return outcome


# -- the run ---------------------------------------------------------------------------
def table(outcomes: list[Outcome], tools: list[str]) -> str:
    """Safe pairs / cells flagged / oracle cells, overall and per edit kind."""
    kinds = sorted({o.kind for o in outcomes}, key=lambda k: (k != "literal", k))
    head = f"{'edit kind':<18} {'pairs':>5} {'oracle':>6} | " + " | ".join(
        f"{t + ' safe':>16} {'flagged':>7}" for t in tools
    )
    rows = [head, "-" * len(head)]
    for kind in [*kinds, "all"]:
        sel = [o for o in outcomes if kind in ("all", o.kind)]
        cells = [f"{kind:<18} {len(sel):>5} {sum(len(o.must_rerun) for o in sel):>6} |"]
        for t in tools:
            judged = [o for o in sel if o.safe.get(t) is not None]
            safe = sum(bool(o.safe[t]) for o in judged)
            flagged = sum(len(o.flagged[t] or []) for o in judged)
            cells.append(f"{f'{safe}/{len(judged)}':>16} {flagged:>7} |")
        rows.append(" ".join(cells).rstrip(" |"))
    return "\n".join(rows)


def git_commit(path: Path) -> str:
    """The %track under test: the last commit of this checkout that touched
    ``jupyter_repro/`` (``+dirty`` when it has uncommitted changes)."""
    out = subprocess.run(
        ["git", "-C", str(path), "log", "-1", "--format=%h", "--", "jupyter_repro"],
        capture_output=True, text=True,
    )  # fmt: skip
    dirty = subprocess.run(["git", "-C", str(path), "status", "--porcelain", "jupyter_repro"],
                           capture_output=True, text=True).stdout.strip()  # fmt: skip
    return out.stdout.strip() + ("+dirty" if dirty else "")


def main(argv: list[str] | None = None) -> int:
    """Build the corpus, compute the truth, measure every tool; print and save."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--limit", type=int, default=0, help="only the first N pairs")
    parser.add_argument("--no-ipyflow", action="store_true")
    parser.add_argument(
        "--tools", default="track,ipyflow,rerun",
        help="comma-separated tools to measure (track, ipyflow, rerun); default all three, "
        "as for the published figures; e.g. --tools track for a quick iteration",
    )  # fmt: skip
    parser.add_argument(
        "--resume", type=Path, metavar="JSONL",
        help="a previous run's .jsonl: its pairs are kept, only the others are run",
    )  # fmt: skip
    parser.add_argument(
        "--retruth", action="store_true",
        help="with --resume: recompute the truth of the kept pairs (fresh runs) and judge "
        "their stored flagged cells again; the tools are not re-run",
    )  # fmt: skip
    parser.add_argument(
        "--report-only", action="store_true",
        help="with --resume: print the table of the pairs already measured, run nothing",
    )  # fmt: skip
    args = parser.parse_args(argv)
    started = time.monotonic()

    def stop(signum: int, frame: object) -> None:  # timeout/Ctrl-C: no kernel left behind
        shutdown_all()
        print(f"stopped by signal {signum}; outcomes so far are in the .jsonl", flush=True)
        os._exit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    chosen = {TOOL_NAMES.get(t.strip(), t.strip()) for t in args.tools.split(",") if t.strip()}
    unknown = chosen - set(TOOLS)
    if unknown:
        parser.error(f"--tools: unknown {', '.join(sorted(unknown))} "
                     f"(choose from {', '.join(TOOL_NAMES)})")  # fmt: skip
    tools = {name: tool for name, tool in TOOLS.items() if name in chosen}
    ipyflow_note = None
    if "ipyflow" not in tools:
        ipyflow_note = "left out (--tools)"
    elif args.no_ipyflow:
        ipyflow_note = "left out (--no-ipyflow)"
    elif ipyflow_python() is None:
        ipyflow_note = "not installed in benchmarks/.corpus/ipyflow-venv (see kernel_driver.py)"
    if ipyflow_note:
        tools.pop("ipyflow", None)
    import IPython

    import jupyter_repro

    versions = {
        "python": sys.version.split()[0],
        "IPython": IPython.__version__,
        "jupyter_repro": getattr(jupyter_repro, "__version__", "?"),
        "%track commit": git_commit(HERE.parent),
        "ipyflow": ipyflow_version() if "ipyflow" in tools else ipyflow_note,
    }
    notebooks = [read_notebook(repo, commit, p) for repo, commit, paths in CORPUS for p in paths]
    pairs = build_pairs(notebooks)
    if args.limit:
        pairs = pairs[: args.limit]
    RESULTS.mkdir(exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    partial = RESULTS / f"track_accuracy-{stamp}.jsonl"  # one line per pair, as they finish
    done: dict[str, Outcome] = {}
    if args.resume:
        for line in args.resume.read_text().splitlines():
            o = Outcome(**json.loads(line))
            done[o.pair_id] = o
        partial.write_text(args.resume.read_text())
    todo = [p for p in pairs if p.pair_id not in done]
    if args.report_only:  # a stopped run: the table of the pairs it finished
        pairs, todo = [p for p in pairs if p.pair_id in done], []
    print(f"{len(pairs)} pairs ({len(todo)} to run) from {len(notebooks)} notebooks; tools: {', '.join(tools)}; "
          + "; ".join(f"{k} {v}" for k, v in versions.items()), flush=True)  # fmt: skip

    # the truth: each distinct original once (real notebooks twice: noise), each edit once
    need_truth = pairs if args.retruth else todo
    originals = {p.original.name: p.original for p in need_truth}
    fresh: dict[str, list[str]] = {}
    noise: dict[str, set[str]] = {}  # notebook -> sources of cells whose output varies
    lock = threading.Lock()

    cache_file = RESULTS / "truth-cache.json"  # fresh outputs by notebook content
    cache: dict[str, Any] = json.loads(cache_file.read_text()) if cache_file.exists() else {}

    def key(nb: Notebook) -> str:
        # v2: outputs collected with raise_on_iopub_timeout (v1 could lose trailing output)
        return "v2:" + hashlib.sha1(json.dumps(nb.cells).encode()).hexdigest()

    def cached_run(nb: Notebook) -> list[str]:
        if key(nb) not in cache:
            cache[key(nb)] = run_fresh(nb)
        return cache[key(nb)]

    def truth_of_base(nb: Notebook) -> None:
        if key(nb) + ":noise3" in cache:
            first, noisy_src = cache[key(nb)], set(cache[key(nb) + ":noise3"])
            with lock:
                fresh[nb.name], noise[nb.name] = first, noisy_src
            return
        first, second = run_fresh(nb), run_fresh(nb)
        with lock:
            fresh[nb.name] = first
            noise[nb.name] = {
                nb.cells[i][1] for i in range(len(first)) if not same_output(first[i], second[i])
            }
            cache[key(nb)], cache[key(nb) + ":noise3"] = first, sorted(noise[nb.name])

    with ThreadPoolExecutor(args.workers) as pool:
        bases = {name.split("+")[0] for name in originals}  # noise is judged on real ones
        list(pool.map(truth_of_base, [nb for nb in notebooks if nb.name in bases]))
        rest = [nb for name, nb in originals.items() if name not in fresh]
        print(f"truth of {len(fresh) + len(rest)} originals in {time.monotonic() - started:.0f} s",
              flush=True)  # fmt: skip
        for nb, out in zip(rest, pool.map(cached_run, rest), strict=True):
            fresh[nb.name] = out
    cache_file.write_text(json.dumps(cache))

    def one(pair: Pair) -> Outcome:
        base = pair.original.name.split("+")[0]
        noisy_src = noise.get(base, set())
        noisy = {i for i, (_, s) in enumerate(pair.original.cells) if s in noisy_src}
        edited_out = run_fresh(pair.edited_notebook())
        if pair.pair_id in done:  # cells left out then stay out: their verdicts were not kept
            noisy |= set(done[pair.pair_id].noisy)
        truth = must_rerun(pair, fresh[pair.original.name], edited_out, noisy)
        if pair.pair_id in done:  # --retruth: the tools' stored verdicts, judged again
            outcome = rejudge(done[pair.pair_id], truth, noisy)
        else:
            outcome = judge(pair, truth, noisy, tools)
        marks = " ".join(f"{t}={'ok' if s else ('ERR' if s is None else 'MISS')}"
                         for t, s in outcome.safe.items())  # fmt: skip
        print(f"  {pair.pair_id:<60} must {sorted(truth)} {marks}", flush=True)
        with lock, partial.open("a") as fh:
            fh.write(json.dumps(asdict(outcome)) + "\n")
        return outcome

    with ThreadPoolExecutor(args.workers) as pool:
        fresh_outcomes = dict(
            zip([p.pair_id for p in need_truth], pool.map(one, need_truth), strict=True)
        )
    outcomes = [fresh_outcomes.get(p.pair_id) or done[p.pair_id] for p in pairs]

    names = [n for n in [*tools, TRACK_WITH_INFO]
             if n in tools or any(n in o.flagged for o in outcomes)]  # fmt: skip
    print()
    print(table(outcomes, names))
    for t in names:
        missed = [o for o in outcomes if o.safe.get(t) is False]
        broken = [o for o in outcomes if o.safe.get(t) is None]
        print(
            f"\n{t}: misses {len(missed)} pair(s)"
            + (f", failed on {len(broken)}" if broken else "")
        )
        for o in missed:
            print(f"  {o.pair_id}  must {o.must_rerun}  flagged {o.flagged[t]}")
        for o in broken[:5]:
            print(f"  {o.pair_id}  ERROR {o.errors.get(t) or next(iter(o.errors.values()), '')}")
    elapsed = time.monotonic() - started
    print(f"\n{len(pairs)} pairs in {elapsed:.0f} s")
    out = RESULTS / f"track_accuracy-{stamp}.json"
    out.write_text(json.dumps({
        "versions": versions,
        "corpus": [{"repo": r, "commit": c, "notebooks": p} for r, c, p in CORPUS],
        "seconds": round(elapsed, 1),
        "outcomes": [asdict(o) for o in outcomes],
    }, indent=1))  # fmt: skip
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
