"""jupytext pairs: check a paired notebook once, from the inputs Jupyter would open.

With jupytext's contents manager, Jupyter opens a notebook paired as ``ipynb,py:percent``
with the *inputs of the text file* and the *outputs of the .ipynb*
(``jupytext.pairs.latest_inputs_and_outputs`` in contents-manager mode), and refuses to
open it when the .ipynb is newer than the text file by more than
``outdated_text_notebook_margin`` (1 s) and their inputs differ. nb-smoke does the same,
with jupytext's own functions: field case G13 (a stale .ipynb passing while the edited
.py fails), and one verdict per pair even when both files are given or found.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..errors import ReproError

#: jupytext's default ``outdated_text_notebook_margin`` (seconds).
MARGIN = 1.0


class PairOutOfSync(ReproError):
    """The .ipynb of a jupytext pair is newer than its text file, and their inputs differ."""


def _formats(path: Path, nb: Any) -> tuple[str | None, dict | None]:
    """(formats, this file's format) from the notebook's jupytext metadata, or Nones."""
    formats = (nb.get("metadata", {}).get("jupytext") or {}).get("formats")
    if not formats:
        return None, None
    from jupytext.formats import long_form_multiple_formats
    from jupytext.paired_paths import InconsistentPath, find_base_path_and_format

    try:
        _base, fmt = find_base_path_and_format(str(path), long_form_multiple_formats(formats))
    except (InconsistentPath, ValueError):
        return None, None
    return formats, fmt


def paired_files(path: Path, nb: Any) -> list[Path]:
    """The existing files of ``path``'s jupytext pair (``path`` included), or ``[path]``."""
    formats, fmt = _formats(path, nb)
    if formats is None:
        return [path]
    from jupytext.paired_paths import paired_paths

    try:
        found = [Path(p) for p, _f in paired_paths(str(path), fmt, formats)]
    except Exception:  # a malformed formats string: treat the file as unpaired
        return [path]
    return [p for p in found if p.exists()] or [path]


def _timestamp(path: str) -> _dt.datetime | None:
    p = Path(path)
    if not p.exists():
        return None
    return _dt.datetime.fromtimestamp(p.stat().st_mtime)


def inputs_as_jupyter_opens(path: Path, nb: Any) -> tuple[Any, str | None]:
    """The notebook with the inputs Jupyter+jupytext would show for ``path``.

    Returns ``(notebook, note)``: the note names the file the inputs came from when it is
    not ``path`` and they differ, else None. An unpaired notebook comes back unchanged.

    Raises:
        PairOutOfSync: the .ipynb is newer than the text file by more than 1 s and the
            inputs differ (Jupyter refuses to open it; ``jupytext --sync`` decides).
    """
    formats, fmt = _formats(path, nb)
    if formats is None or len(paired_files(path, nb)) < 2:
        return nb, None
    import jupytext
    from jupytext.pairs import latest_inputs_and_outputs
    from jupytext.sync_pairs import read_pair

    inputs, outputs = latest_inputs_and_outputs(
        str(path), fmt, formats, _timestamp, contents_manager_mode=True
    )
    if inputs.path is None or outputs.path is None or inputs.path == outputs.path:
        return nb, None

    def read_one(p: str, f: dict) -> Any:
        return jupytext.read(p, fmt=dict(f))

    combined = read_pair(inputs, outputs, read_one)
    stale = outputs.timestamp > inputs.timestamp + _dt.timedelta(seconds=MARGIN)
    same = _sources(combined) == _sources(read_one(outputs.path, outputs.fmt))
    if stale and not same:
        raise PairOutOfSync(
            f"{path}: jupytext pair out of sync: {Path(outputs.path).name} is newer than "
            f"{Path(inputs.path).name} and their inputs differ; run "
            f"`jupytext --sync {path}` (Jupyter refuses to open it as it is)"
        )
    if same or Path(inputs.path).resolve() == path.resolve():
        return combined, None
    return combined, (
        f"jupytext pair: inputs from {Path(inputs.path).name} (newer than "
        f"{Path(outputs.path).name}), as Jupyter opens it"
    )


def _sources(nb: Any) -> list[tuple[str, str]]:
    return [(c.get("cell_type", ""), c.get("source", "")) for c in nb.get("cells", [])]


def one_per_pair(paths: Iterable[Path], read: Any) -> list[Path]:
    """Paths with each jupytext pair kept once, under the first of its files given.

    ``read(path)`` reads a notebook (errors are left for the check to report). Only files
    that mention ``formats`` (jupytext's pairing metadata) are read.
    """
    out: list[Path] = []
    index: dict[frozenset, int] = {}
    for path in paths:
        try:
            if b"formats" not in path.read_bytes():
                out.append(path)
                continue
            files = paired_files(path, read(path))
        except Exception:
            out.append(path)
            continue
        key = frozenset(p.resolve() for p in files)
        if len(files) < 2:
            out.append(path)
        elif key not in index:
            index[key] = len(out)
            out.append(path)
    return out
