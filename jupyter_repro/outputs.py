"""Cell outputs: render them as text, and compare them the way nbval does.

The comparison *is* nbval's: :func:`compare_cell_outputs` calls nbval's own
``IPyNbCell.compare_outputs`` (streams coalesced, MIME bundles flattened, the same keys
skipped) through a small adapter, with nbval's sanitizer-file format
(``regex: ...`` / ``replace: ...`` line pairs) and its cell markers: the tags
``nbval-ignore-output`` and ``nbval-skip`` and the comments ``# NBVAL_IGNORE_OUTPUT`` and
``# NBVAL_SKIP``. On top of nbval:

- execution counts never count (nbval skips them too), and memory addresses
  (``0x7f3a...``) are always sanitized, so ``<Foo at 0x7f..>`` never differs;
- a metric recorded with :func:`jupyter_repro.record` is compared without its timestamp;
- images are compared by content hash (nbval skips them unless run with nbdime), and a
  difference is reported with both hashes;
- every differing output gets a readable diff: text line by line (unified diff), images
  by hash.
"""

from __future__ import annotations

import base64
import difflib
import hashlib
import re
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .metrics import METRIC_MIMETYPE

#: Sanitizers applied before every comparison (nbval's file format, built in).
BUILTIN_SANITIZERS: tuple[tuple[str, str], ...] = (
    (r"0x[0-9a-fA-F]{6,16}", "0xADDRESS"),
    # IPython's own timing output (%time, %timeit) measures the machine, not the result.
    (r"CPU times: [^\n]*", "CPU times: TIME"),
    (r"Wall time: [^\n]*", "Wall time: TIME"),
    (r"[\d.]+ [nµμmu]?s ± [\d.]+ [nµμmu]?s per loop \(mean ± std\. dev\. of [^\n]*\)", "TIMEIT"),
    # Where a warning came from: a kernel's cell file or IPython's, different per run.
    (r"/tmp/ipykernel_\d+/\d+\.py|<ipython-input-\d+-[0-9a-f]+>", "<cell>"),
)
IMAGE_MIMETYPES = ("image/png", "image/jpeg", "image/gif", "image/svg+xml")
_SKIP_TAGS = {"nbval-skip"}
_IGNORE_TAGS = {"nbval-ignore-output"}


def outputs_text(outputs: Iterable[Mapping[str, Any]]) -> str:
    """What a person sees of a cell's outputs, as plain text (streams, text/plain, errors)."""
    parts: list[str] = []
    for out in outputs:
        kind = out.get("output_type")
        if kind == "stream":
            text = out.get("text", "")
            parts.append("".join(text) if isinstance(text, list) else text)
        elif kind in ("execute_result", "display_data"):
            text = out.get("data", {}).get("text/plain")
            if text:
                parts.append(("".join(text) if isinstance(text, list) else text) + "\n")
        elif kind == "error":
            parts.append(f"{out.get('ename', '')}: {out.get('evalue', '')}\n")
    return "".join(parts)


def load_sanitizers(path: str | Path | None) -> list[tuple[str, str]]:
    """Built-in sanitizers plus those of an nbval sanitizer file (``--sanitize-with``).

    Raises:
        OSError: the file cannot be read.
        re.error: a pattern in it is not a valid regular expression.
    """
    from nbval.plugin import get_sanitize_patterns

    patterns = list(BUILTIN_SANITIZERS)
    if path is not None:
        patterns += get_sanitize_patterns(Path(path).read_text(encoding="utf-8"))
    for regex, _ in patterns:
        re.compile(regex)
    return patterns


def cell_comparison_mode(cell: Mapping[str, Any]) -> str:
    """``compare``, ``ignore`` (nbval-ignore-output) or ``skip`` (nbval-skip), from tags
    and nbval's comment markers."""
    from nbval.plugin import find_comment_markers

    tags = set(cell.get("metadata", {}).get("tags", []) or [])
    markers = dict(find_comment_markers(cell.get("source", "")))
    if tags & _SKIP_TAGS or markers.get("skip"):
        return "skip"
    if tags & _IGNORE_TAGS or markers.get("check") is False:
        return "ignore"
    return "compare"


@dataclass
class OutputDifference:
    """How one cell's outputs differ between a reference and a fresh run.

    Attributes:
        cell_index: 0-based index of the cell in the notebook.
        summary: nbval's one-line reason ("mismatch 'stdout'", "Missing output fields").
        text_diff: unified diff of the text outputs (sanitized), may be empty.
        images: ``(position, mimetype, reference sha256 or None, fresh sha256 or None)``
            for every image that differs; position counts the cell's images from 0.
    """

    cell_index: int
    summary: str
    text_diff: str = ""
    images: list[tuple[int, str, str | None, str | None]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "cell_index": self.cell_index,
            "summary": self.summary,
            "text_diff": self.text_diff,
            "images": [
                {"position": k, "mimetype": m, "reference_sha256": a, "fresh_sha256": b}
                for k, m, a, b in self.images
            ],
        }


class _NbvalCell:
    """Just enough of nbval's ``IPyNbCell`` for its ``compare_outputs`` to run."""

    def __init__(self, sanitizers: Sequence[tuple[str, str]]) -> None:
        from nbval.plugin import nocolors

        self.colors = nocolors
        self.comparison_traceback: list[str] = []
        self.parent = type("Parent", (), {})()
        self.parent.sanitize_patterns = OrderedDict(sanitizers)
        self.parent.skip_compare = (
            "metadata", "traceback", "prompt_number", "output_type", "name",
            "execution_count", "application/vnd.jupyter.widget-view+json",
            *IMAGE_MIMETYPES,
        )  # fmt: skip

    def sanitize(self, s: Any) -> Any:
        from nbval.plugin import IPyNbCell

        return IPyNbCell.sanitize(self, s)

    def format_output_compare(self, key: str, left: Any, right: Any) -> None:
        self.comparison_traceback.append(f"mismatch '{key}'")


def _sanitize(text: str, sanitizers: Sequence[tuple[str, str]]) -> str:
    for regex, replace in sanitizers:
        text = re.sub(regex, replace, text)
    return text


def _nodes(outputs: Iterable[Mapping[str, Any]]) -> list:
    import nbformat  # on first use: command parsers stay fast
    from nbval.plugin import coalesce_streams

    nodes = [nbformat.from_dict(dict(o)) for o in outputs]
    for node in nodes:
        metric = node.get("data", {}).get(METRIC_MIMETYPE)
        if isinstance(metric, dict):  # when a metric was recorded is not part of the result
            metric.pop("timestamp", None)
        if node.get("output_type") == "stream" and isinstance(node.get("text"), list):
            node["text"] = "".join(node["text"])
    return coalesce_streams(nodes)


def images_of(outputs: Iterable[Mapping[str, Any]]) -> list[tuple[str, Any]]:
    """``(mimetype, value)`` of every image in a cell's outputs, in order."""
    return [
        (mime, out["data"][mime])
        for out in outputs
        for mime in IMAGE_MIMETYPES
        if mime in (out.get("data") or {})
    ]


def image_hashes(outputs: Iterable[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """``(mimetype, sha256 of the decoded bytes)`` of every image output, in order."""
    return [
        (mime, hashlib.sha256(decode_image(value, mime)).hexdigest())
        for mime, value in images_of(outputs)
    ]


def compare_cell_outputs(
    cell_index: int,
    reference: Sequence[Mapping[str, Any]],
    fresh: Sequence[Mapping[str, Any]],
    sanitizers: Sequence[tuple[str, str]] = BUILTIN_SANITIZERS,
    labels: tuple[str, str] = ("saved", "fresh"),
) -> OutputDifference | None:
    """None when the outputs agree by nbval's rules (plus image hashes), else the difference.

    ``labels`` name the two sides in the unified diff (``saved``/``fresh``, ``run 1``/``run 2``).
    """
    from nbval.plugin import IPyNbCell

    ref_nodes, fresh_nodes = _nodes(reference), _nodes(fresh)
    adapter = _NbvalCell(sanitizers)
    same_text = IPyNbCell.compare_outputs(adapter, fresh_nodes, ref_nodes)
    ref_images, fresh_images = image_hashes(reference), image_hashes(fresh)
    images: list[tuple[int, str, str | None, str | None]] = []
    for k in range(max(len(ref_images), len(fresh_images))):
        a = ref_images[k] if k < len(ref_images) else None
        b = fresh_images[k] if k < len(fresh_images) else None
        if a is None or b is None or a[1] != b[1]:
            images.append((k, (a or b)[0], a[1] if a else None, b[1] if b else None))
    if same_text and not images:
        return None
    summary = "; ".join(adapter.comparison_traceback) or "images differ"
    ref_text = _sanitize(outputs_text(ref_nodes), sanitizers).splitlines(keepends=True)
    new_text = _sanitize(outputs_text(fresh_nodes), sanitizers).splitlines(keepends=True)
    diff = "".join(difflib.unified_diff(ref_text, new_text, labels[0], labels[1], n=2))
    return OutputDifference(cell_index, summary, diff, images)


def decode_image(output_value: str | list[str], mimetype: str) -> bytes:
    """The bytes of an image output value (base64 for raster images, text for SVG)."""
    raw = "".join(output_value) if isinstance(output_value, list) else output_value
    return raw.encode() if mimetype == "image/svg+xml" else base64.b64decode(raw)
