"""Writing files the way every command must: atomically, with normal permissions, and
checked before any work starts (a report path that cannot be written is bad input)."""

from __future__ import annotations

import os
import tempfile
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
