"""Temporary folders and git worktrees of ``reproduce``, and cleaning up after a killed one.

``reproduce`` checks the run's commit out into a git worktree inside a temporary folder
(``$TMPDIR/jrepro-reproduce-XXXX/tree``); git registers it in the user's repository
(``.git/worktrees/``). A ``reproduce`` killed with SIGKILL cannot remove either, so each
temporary folder holds ``owner.json`` (:func:`claim`: host identity, pid, start time) and
the next ``reproduce`` removes the folders and worktrees whose owner is gone
(:func:`clean_stale`). An owner on another host or pid namespace is never judged.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

#: Prefix of every temporary folder ``reproduce`` makes.
PREFIX = "jrepro-reproduce-"
OWNER_FILE = "owner.json"
#: A folder without an owner file is only judged once it is this old (seconds): it may be
#: one that another ``reproduce`` has just made and not yet claimed.
UNCLAIMED_GRACE = 120.0


def claim(folder: Path) -> None:
    """Write ``folder/owner.json`` naming this process (see :func:`owner_gone`)."""
    from ..processes import process_identity

    host, pid, started = process_identity()
    (folder / OWNER_FILE).write_text(json.dumps({"host": host, "pid": pid, "started": started}))


def owner_gone(folder: Path) -> bool:
    """Whether the ``reproduce`` that made ``folder`` has ended without cleaning up.

    True when ``owner.json`` names this host and pid namespace and that process (pid and
    start time) no longer runs, or when there is no readable owner file and the folder is
    older than :data:`UNCLAIMED_GRACE` seconds.
    """
    from ..processes import host_key, pid_alive

    try:
        owner: Any = json.loads((folder / OWNER_FILE).read_text())
        host, pid, started = str(owner["host"]), int(owner["pid"]), float(owner["started"])
    except (OSError, ValueError, KeyError, TypeError):
        try:
            return time.time() - folder.stat().st_mtime > UNCLAIMED_GRACE
        except OSError:
            return False
    return host == host_key() and not pid_alive(pid, started)


def _ours(path: Path) -> bool:
    """``path`` is a folder ``reproduce`` made (directly in the temp folder, our prefix)."""
    return path.parent == Path(tempfile.gettempdir()).resolve() and path.name.startswith(PREFIX)


def clean_stale(repository: Any | None = None) -> list[str]:
    """Remove worktrees of ``repository`` and temporary folders left by a killed
    ``reproduce``; returns what was removed (for a note). Never raises for a clean-up
    that fails (a folder owned by someone else stays).
    """
    removed: list[str] = []
    if repository is not None:
        with contextlib.suppress(Exception):
            listing = repository.git.worktree("list", "--porcelain")
            for line in listing.splitlines():
                if not line.startswith("worktree "):
                    continue
                tree = Path(line[len("worktree ") :])
                folder = tree.parent
                if tree.name != "tree" or not _ours(folder.resolve()):
                    continue
                if folder.exists() and not owner_gone(folder):
                    continue
                with contextlib.suppress(Exception):
                    repository.git.worktree("remove", "--force", str(tree))
                removed.append(f"worktree {tree}")
            repository.git.worktree("prune")
    root = Path(tempfile.gettempdir()).resolve()
    for folder in root.glob(PREFIX + "*"):
        if folder.is_dir() and not folder.is_symlink() and owner_gone(folder):
            shutil.rmtree(folder, ignore_errors=True)
            if not folder.exists():
                removed.append(f"folder {folder}")
    return removed
