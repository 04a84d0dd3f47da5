"""The code coordinate from git: commit, branch, remote, dirty state, the notebook at HEAD.

Uses gitpython. A notebook outside any repository, or not tracked at HEAD, is said so
explicitly (``notebook_status``), never reported as "no changes".
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

#: ``GitInfo.notebook_status`` values.
OUTSIDE_REPO = "outside-repo"
UNTRACKED = "untracked"
CLEAN = "clean"
MODIFIED = "modified"


@dataclass(frozen=True)
class GitInfo:
    """Where the notebook stands in git.

    Attributes:
        repo_root: the working tree root, or None outside a repository.
        commit: HEAD's hex sha, or None (no repository, or no commit yet).
        branch: the current branch, or None when detached / no repository.
        repo_url: the ``origin`` remote's URL (credentials stripped), or None.
        dirty: whether the working tree has uncommitted changes (untracked files excluded).
        notebook_relpath: the notebook's path relative to ``repo_root`` (posix), or None.
        notebook_status: ``outside-repo``, ``untracked`` (not in HEAD), ``clean`` or
            ``modified`` (bytes differ from HEAD).
        head_text: the notebook's text at HEAD, or None when it is not in HEAD.
    """

    repo_root: str | None
    commit: str | None
    branch: str | None
    repo_url: str | None
    dirty: bool
    notebook_relpath: str | None
    notebook_status: str
    head_text: str | None


def _strip_credentials(url: str) -> str:
    """``https://user:p@ss@host/x?token=t`` -> ``https://host/x``: never log a secret.

    The user-info part ends at the *last* ``@`` of the authority; query and fragment are
    dropped (git remotes need neither; tokens hide there). ``git@host:x`` (scp-like, no
    password) is kept as it is.
    """
    from urllib.parse import urlsplit, urlunsplit

    if "://" not in url:
        return url
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def git_info(notebook: str | Path) -> GitInfo:
    """Collect the git coordinate for ``notebook`` (which need not be tracked)."""
    import git

    path = Path(notebook).resolve()
    try:
        repo = git.Repo(path.parent, search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        return GitInfo(None, None, None, None, False, None, OUTSIDE_REPO, None)
    with repo:
        root = Path(repo.working_tree_dir).resolve()
        rel = path.relative_to(root).as_posix()
        try:
            commit = repo.head.commit.hexsha
        except ValueError:  # no commit yet
            commit = None
        try:
            branch = None if repo.head.is_detached else repo.active_branch.name
        except TypeError:
            branch = None
        repo_url = None
        try:
            remote = repo.remote("origin")
            urls = list(remote.urls)
            repo_url = _strip_credentials(urls[0]) if urls else None
        except ValueError:
            repo_url = None
        dirty = repo.is_dirty(untracked_files=False) if commit else True
        head_text = None
        if commit:
            try:
                blob = repo.head.commit.tree / rel
                head_text = blob.data_stream.read().decode("utf-8", errors="replace")
            except KeyError:
                head_text = None
        if head_text is None:
            status = UNTRACKED
        else:
            current = path.read_bytes().decode("utf-8", errors="replace")
            status = CLEAN if current == head_text else MODIFIED
        return GitInfo(str(root), commit, branch, repo_url, dirty, rel, status, head_text)
