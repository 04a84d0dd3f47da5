"""The data coordinate: content digests of declared inputs (files or folders)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from ..errors import ReproError


@dataclass(frozen=True)
class DataInput:
    """One ``--data PATH``: its absolute path, sha256 over its content, file count, bytes.

    A folder's digest covers every file's relative path and bytes, in sorted order, so
    renaming or editing any file changes it and nothing else does.
    """

    path: str
    sha256: str
    files: int
    size: int

    @property
    def name(self) -> str:
        """The file or folder name, used as the MLflow dataset name."""
        return Path(self.path).name or self.path


def digest_input(path: str | Path) -> DataInput:
    """Hash a declared input.

    Raises:
        ReproError: the path does not exist or cannot be read (message names it).
    """
    p = Path(path)
    if not p.exists():
        raise ReproError(f"{p}: --data path does not exist")
    h = hashlib.sha256()
    files = [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.is_file())
    size = 0
    for f in files:
        rel = f.name if f == p else f.relative_to(p).as_posix()
        h.update(rel.encode() + b"\0")
        try:
            with f.open("rb") as fh:
                for chunk in iter(lambda fh=fh: fh.read(1 << 20), b""):
                    h.update(chunk)
                    size += len(chunk)
        except OSError as exc:
            raise ReproError(f"{f}: cannot read --data input: {exc.strerror or exc}") from None
        h.update(b"\0")
    return DataInput(str(p.resolve()), h.hexdigest(), len(files), size)
