"""Writing files the way every command must: atomically, with normal permissions, and
checked before any work starts (a report path that cannot be written is bad input)."""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path

from .errors import ReproError


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder and a rename,
    so a reader never sees half a file; the file gets the permissions a plain ``open()``
    would give it (``0666`` minus the umask), not ``mkstemp``'s ``0600``."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def check_writable(path: str | Path | None, option: str) -> None:
    """Raise :class:`ReproError` (exit 2) now if ``option PATH`` could not be written later.

    Rule: not an existing folder, and the nearest existing parent is a writable folder.
    """
    if not path:
        return
    target = Path(path)
    if target.is_dir():
        raise ReproError(f"{option} {path}: is a folder")
    parent = target.parent
    existing = next((p for p in (parent, *parent.parents) if p.exists()), Path("."))
    if not existing.is_dir() or not os.access(existing, os.W_OK):
        raise ReproError(
            f"{option} {path}: cannot write there ({existing} is not a writable folder)"
        )


def check_report_path(
    path: str | Path | None, option: str, inputs: Iterable[str | Path] = ()
) -> None:
    """Raise :class:`ReproError` (exit 2) unless ``option PATH`` is a safe place for a
    report: writable (:func:`check_writable`), not a folder, not one of ``inputs`` (a
    report must never overwrite the notebook or data it reports on, even through a
    symlink or another spelling of the same path), and not inside a ``.git`` folder.
    """
    if not path:
        return
    check_writable(path, option)
    target = Path(path).expanduser().resolve()
    if ".git" in target.parts:
        raise ReproError(f"{option} {path}: is inside a .git folder; write the report elsewhere")
    for item in inputs:
        source = Path(item).expanduser().resolve()
        if target == source or (
            source.is_dir()
            and source in target.parents
            and target.suffix.lower() in (".ipynb", ".py", ".md")
        ):
            raise ReproError(
                f"{option} {path}: is an input ({item}); the report would overwrite it"
            )


def confined(base: str | Path, relative: str | Path, what: str) -> Path:
    """``base / relative`` resolved, refused when it leaves ``base``.

    For every path built from data that someone else may have written (MLflow run tags,
    artifact names, cell ids used in file names): an absolute ``relative``, a ``..`` or a
    symlink that leads out of ``base`` raises :class:`ReproError` (exit 2) naming
    ``what`` (e.g. ``"run tag mlflow.source.name"``) and the value.
    """
    root = Path(base).resolve()
    candidate = Path(relative)
    target = (root / candidate).resolve()
    if candidate.is_absolute() or (target != root and root not in target.parents):
        raise ReproError(f"{what} {str(relative)!r} leads outside {root}: refused")
    return target


_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9_-]+")


def safe_name(text: str, default: str = "x") -> str:
    """``text`` as one file-name component: every run of characters other than letters,
    digits, ``_`` and ``-`` becomes one ``_`` (no ``/``, no ``.``: no ``..``, no hidden
    file, no second extension), at most 100 characters; ``default`` when nothing is left.
    nbformat cell ids (``^[a-zA-Z0-9-_]+$``, nbformat 4.5) come through unchanged."""
    name = _UNSAFE_NAME.sub("_", text)[:100]
    return name or default
