"""The notebook diff against HEAD, as a summary, JSON, readable text and offline HTML.

nbdime aligns the cells (``diff_notebooks``); before that, both sides are normalised so
that cell ids, execution counts and all metadata never count as changes (nbdime issue
#351, cell-id churn in diffs). Only sources are diffed: outputs are compared by digest and
named (``output_changed_cells``) but their content is never copied into the diff, because
a working copy's saved outputs are stale and may hold what was printed once (a token, a
password) or be huge. A re-run notebook whose code equals HEAD has
``source_changed_cells == []`` even when every output moved.
A notebook that is not in HEAD is summarised as untracked, every cell added; it never
produces an empty diff (``nbdiff HEAD new.ipynb`` prints nothing today).
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import html
import json
from dataclasses import asdict, dataclass, field
from typing import Any

#: ``NotebookDiff.status`` values.
UNCHANGED = "unchanged"
MODIFIED = "modified"
UNTRACKED = "untracked"
OUTSIDE_REPO = "outside-repo"


@dataclass
class NotebookDiff:
    """What changed in the notebook relative to HEAD.

    Indices are cell positions in the working copy (``removed_cells``: positions at HEAD).

    Attributes:
        status: ``unchanged``, ``modified`` (some source changed, or cells added/removed),
            ``untracked`` (not in HEAD) or ``outside-repo``.
        note: one human line, e.g. "not in HEAD (untracked): every cell counts as added".
        source_changed_cells: working-copy cells whose source differs from HEAD, or that
            are new.
        output_changed_cells: cells whose source is unchanged but whose outputs differ.
        added_cells / removed_cells: cells with no counterpart on the other side.
        nbdime_diff: nbdime's diff of the normalised notebooks (JSON-serialisable).
    """

    status: str
    note: str
    source_changed_cells: list[int] = field(default_factory=list)
    output_changed_cells: list[int] = field(default_factory=list)
    added_cells: list[int] = field(default_factory=list)
    removed_cells: list[int] = field(default_factory=list)
    nbdime_diff: list[Any] = field(default_factory=list)
    text: str = ""

    @property
    def sources_match_head(self) -> bool:
        """True when every cell's source equals HEAD's (ids/counts/metadata ignored)."""
        return self.status == UNCHANGED

    def summary(self) -> dict[str, Any]:
        """The JSON summary artifact (everything but the rendered text)."""
        data = asdict(self)
        data.pop("text")
        data["sources_match_head"] = self.sources_match_head
        return data


def normalise(nb: dict) -> dict:
    """A copy with ids, execution counts, every metadata dict and every output removed
    (each code cell keeps ``outputs_sha256``, the digest of its outputs, instead)."""
    out = copy.deepcopy(dict(nb))
    out["metadata"] = {}
    cells = []
    for cell in out.get("cells", []):
        cell = dict(cell)
        cell.pop("id", None)
        cell.pop("attachments", None)
        cell["metadata"] = {}
        if isinstance(cell.get("source"), list):
            cell["source"] = "".join(cell["source"])
        if cell.get("cell_type") == "code":
            cell["execution_count"] = None
            outputs = []
            for output in cell.get("outputs", []):
                output = dict(output)
                output.pop("execution_count", None)
                output.pop("metadata", None)
                if isinstance(output.get("text"), list):
                    output["text"] = "".join(output["text"])
                outputs.append(output)
            digest = hashlib.sha256(json.dumps(outputs, sort_keys=True, default=str).encode())
            cell["outputs"] = []
            cell["outputs_sha256"] = digest.hexdigest()
        cells.append(cell)
    out["cells"] = cells
    return out


def _to_jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_jsonable(v) for v in obj]
    return obj


def diff_against_head(
    head_nb: dict | None, current_nb: dict, status_hint: str = ""
) -> NotebookDiff:
    """Compare the working copy with HEAD's version of the same notebook.

    Args:
        head_nb: the notebook as committed at HEAD, or None when it is not in HEAD.
        current_nb: the notebook as it is on disk now.
        status_hint: ``outside-repo`` when there is no repository at all.
    """
    cur = normalise(current_nb)
    n = len(cur["cells"])
    if head_nb is None:
        if status_hint == OUTSIDE_REPO:
            note = "not in a git repository: no commit to diff against; every cell counts as added"
            status = OUTSIDE_REPO
        else:
            note = "not in HEAD (untracked): every cell counts as added"
            status = UNTRACKED
        result = NotebookDiff(
            status=status,
            note=note,
            source_changed_cells=list(range(n)),
            added_cells=list(range(n)),
        )
        result.text = render_text(None, cur, result)
        return result

    from nbdime.diffing.notebooks import diff_notebooks
    from nbformat import from_dict

    old = normalise(head_nb)
    diff = _to_jsonable(diff_notebooks(from_dict(_bare(old)), from_dict(_bare(cur))))
    cell_ops = next((d["diff"] for d in diff if d.get("key") == "cells"), [])
    adds: dict[int, int] = {}
    removes: set[int] = set()
    patches: dict[int, list] = {}
    for op in cell_ops:
        if op["op"] == "addrange":
            adds[op["key"]] = adds.get(op["key"], 0) + len(op["valuelist"])
        elif op["op"] == "removerange":
            removes.update(range(op["key"], op["key"] + op["length"]))
        elif op["op"] == "patch":
            patches[op["key"]] = op["diff"]
        elif op["op"] == "replace":  # whole-cell replacement: removed + added
            removes.add(op["key"])
            adds[op["key"]] = adds.get(op["key"], 0) + 1
    result = NotebookDiff(status=UNCHANGED, note="", nbdime_diff=diff)
    pairs: list[tuple[int, int]] = []
    b = 0
    for a in range(len(old["cells"]) + 1):
        for _ in range(adds.get(a, 0)):
            result.added_cells.append(b)
            result.source_changed_cells.append(b)
            b += 1
        if a == len(old["cells"]):
            break
        if a in removes:
            result.removed_cells.append(a)
            continue
        pairs.append((a, b))
        keys = {d.get("key") for d in patches.get(a, [])}
        if keys & {"source", "cell_type"}:
            result.source_changed_cells.append(b)
        elif old["cells"][a].get("outputs_sha256") != cur["cells"][b].get("outputs_sha256"):
            result.output_changed_cells.append(b)
        b += 1
    result.source_changed_cells.sort()
    changed = result.source_changed_cells or result.removed_cells
    result.status = MODIFIED if changed else UNCHANGED
    if result.status == UNCHANGED:
        outputs = len(result.output_changed_cells)
        result.note = "sources equal HEAD" + (
            f"; outputs differ in {outputs} cell{'s' if outputs != 1 else ''}" if outputs else ""
        )
    else:
        result.note = (
            f"sources differ from HEAD: {len(result.source_changed_cells)} changed or added, "
            f"{len(result.removed_cells)} removed"
        )
    result.text = render_text(old, cur, result, pairs)
    return result


def _bare(nb: dict) -> dict:
    """``nb`` as nbdime may see it: no output digests (nbformat has no such key)."""
    out = dict(nb)
    out["cells"] = [{k: v for k, v in c.items() if k != "outputs_sha256"} for c in nb["cells"]]
    return out


def _src(cell: dict) -> list[str]:
    return cell.get("source", "").splitlines()


def render_text(
    old: dict | None, cur: dict, result: NotebookDiff, pairs: list[tuple[int, int]] | None = None
) -> str:
    """A readable diff: a status line, then source changes, then output changes."""
    out = [f"notebook diff against HEAD: {result.note}", "", "== sources =="]
    pairs = pairs or []
    for b in result.added_cells:
        out.append(f"-- cell {b}: added")
        out.extend(f"+{line}" for line in _src(cur["cells"][b]))
    for a in result.removed_cells:
        out.append(f"-- HEAD cell {a}: removed")
        out.extend(f"-{line}" for line in _src(old["cells"][a]))
    for a, b in pairs:
        if b in result.source_changed_cells:
            out.append(f"-- cell {b}: source changed")
            out.extend(
                difflib.unified_diff(
                    _src(old["cells"][a]),
                    _src(cur["cells"][b]),
                    "HEAD",
                    "working copy",
                    lineterm="",
                    n=2,
                )
            )
    if len(out) == 3:
        out.append("(no source changes)")
    out += ["", "== outputs (named, never copied: saved outputs may hold secrets) =="]
    for b in result.output_changed_cells:
        out.append(f"-- cell {b}: outputs changed")
    if not result.output_changed_cells:
        out.append("(no output changes in matched cells)")
    return "\n".join(out) + "\n"


def render_html(result: NotebookDiff, title: str) -> str:
    """A self-contained HTML page (no scripts, no network) showing ``result.text``.

    nbdime's web diff needs its server or a CDN (nbdime issue #468); this page opens
    from an artifact store or a file system with nothing else.
    """
    rows = []
    for line in result.text.splitlines():
        cls = ""
        if line.startswith("==") or line.startswith("-- "):
            cls = "h"
        elif line.startswith("+") and not line.startswith("+++"):
            cls = "add"
        elif line.startswith("-") and not line.startswith("---"):
            cls = "del"
        rows.append(f'<div class="{cls}">{html.escape(line) or "&nbsp;"}</div>')
    return (
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>"
        "body{font-family:monospace;white-space:pre-wrap;margin:1em}"
        ".add{background:#e6ffed}.del{background:#ffeef0}.h{font-weight:bold;margin-top:.5em}"
        "</style></head><body>\n"
        f"<h3>{html.escape(title)}</h3>\n" + "\n".join(rows) + "\n</body></html>\n"
    )
