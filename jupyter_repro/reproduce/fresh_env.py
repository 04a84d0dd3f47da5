"""``reproduce --fresh-env``: rebuild a run's logged environment in an isolated venv.

The run's lock (``environment.json``, :mod:`jupyter_repro.provenance.env`) becomes a
requirements file that ``uv pip sync`` installs, exactly, into a new virtual environment
made by ``uv venv`` with an interpreter of the logged Python minor version. A kernelspec
pointing at that venv's python is written inside it (``<env>/share/jupyter/kernels``), so
only the kernel runs there: papermill and MLflow stay in the calling process, and the
venv needs nothing but the lock's packages (plus ``ipykernel`` if the lock lacks it).

Environments are cached by lock hash under :func:`env_cache_root`, so a second
reproduce of the same environment starts at once; ``rebuild=True`` makes a new one.

What cannot be rebuilt is said, not guessed (each a :class:`~jupyter_repro.errors.ReproError`,
exit 2): another Python minor version than the logged one, a package version the index no
longer has, a local package whose path is gone. A local or editable package (the user's
own) is installed from the run's commit when the run's repository holds it, otherwise from
the path it came from, with a note.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from ..errors import ReproError
from ..provenance.env import canonical_name, requirement_line

#: Overrides the cache folder of built environments (tests, CI, a shared disk).
CACHE_ENV_VAR = "JUPYTER_REPRO_ENV_CACHE"
#: Written last into a finished environment: an environment without it is incomplete.
MARKER = "jrepro-env.json"
KERNEL_PREFIX = "jrepro-env-"


@dataclass
class FreshEnv:
    """A built (or reused) environment.

    Attributes:
        path: the venv folder, ``<cache root>/<lock hash>``.
        python: its interpreter.
        kernel_name: the kernelspec inside it (found through ``jupyter_path``).
        jupyter_path: ``<path>/share/jupyter``, to put first on ``JUPYTER_PATH``.
        lock_hash: sha256 (hex) of the interpreter's minor version, platform and lock.
        reused: True when the cache already held it.
        seconds: wall time to build or find it.
        notes: what the verdict must say (packages installed from elsewhere, added).
    """

    path: Path
    python: Path
    kernel_name: str
    jupyter_path: Path
    lock_hash: str
    reused: bool
    seconds: float
    notes: list[str] = field(default_factory=list)


def env_cache_root() -> Path:
    """Where environments are cached: ``$JUPYTER_REPRO_ENV_CACHE``, else the platform's
    user cache dir (``$XDG_CACHE_HOME/jupyter-repro/envs``, by default
    ``~/.cache/jupyter-repro/envs`` on Linux; platformdirs' rule elsewhere)."""
    if os.environ.get(CACHE_ENV_VAR):
        return Path(os.environ[CACHE_ENV_VAR])
    import platformdirs

    return Path(platformdirs.user_cache_dir("jupyter-repro")) / "envs"


def uv_binary() -> str:
    """The ``uv`` executable shipped in the ``uv`` wheel (a dependency of the project).

    Raises:
        ReproError: the ``uv`` package is not installed.
    """
    try:
        from uv import find_uv_bin
    except ImportError:
        found = shutil.which("uv")
        if found:
            return found
        raise ReproError("--fresh-env needs uv: pip install uv") from None
    return find_uv_bin()


def _uv_env() -> dict[str, str]:
    # uv must not try to download an interpreter (only the package index is reachable on
    # many machines), nor pick up an activated venv instead of the one it is given.
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "CONDA_PREFIX")}
    env["UV_PYTHON_DOWNLOADS"] = "never"
    env.setdefault("UV_NO_PROGRESS", "1")
    return env


def minor(version: str) -> str:
    """``"3.11.7"`` -> ``"3.11"``."""
    return ".".join(str(version).split(".")[:2])


def python_version(python: str) -> str:
    """The full version (``"3.11.7"``) of interpreter ``python``.

    Raises:
        ReproError: it cannot be run.
    """
    try:
        proc = subprocess.run(
            [python, "-c", "import platform; print(platform.python_version())"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ReproError(f"--python {python}: cannot run it ({exc})") from None
    if proc.returncode != 0 or not proc.stdout.strip():
        raise ReproError(f"--python {python}: not a working Python interpreter")
    return proc.stdout.strip().splitlines()[-1]


def resolve_python(run_id: str, logged_version: str, python: str | None = None) -> tuple[str, str]:
    """The interpreter to rebuild with: ``python`` if given, else this one, else one
    ``uv python find`` sees, of the logged minor version; returns ``(path, version)``.

    Raises:
        ReproError: one line naming both versions, and ``--python PATH``.
    """
    want = minor(logged_version)
    if python:
        version = python_version(python)
        if minor(version) != want:
            raise ReproError(
                f"run {run_id} ran on Python {logged_version}; --python {python} is Python "
                f"{version}: give an interpreter of Python {want} with --python PATH"
            )
        return python, version
    mine = ".".join(map(str, sys.version_info[:3]))
    if minor(mine) == want:
        return sys.executable, mine
    try:
        proc = subprocess.run(
            [uv_binary(), "python", "find", "--no-project", want],
            capture_output=True,
            text=True,
            timeout=60,
            env=_uv_env(),
        )
        found = (
            proc.stdout.strip().splitlines()[-1]
            if proc.returncode == 0 and proc.stdout.strip()
            else ""
        )
    except (OSError, subprocess.TimeoutExpired):
        found = ""
    if found:
        return found, python_version(found)
    raise ReproError(
        f"run {run_id} ran on Python {logged_version}; this Python is {mine} and no Python "
        f"{want} is installed (uv does not download one here): give one with --python PATH"
    )


def _file_path(url: str | None) -> Path | None:
    if not url or not url.startswith("file:"):
        return None
    return Path(unquote(urlparse(url).path))


#: PEP 508 names, PEP 440-ish versions, and URL/commit text without whitespace: what a lock
#: line may hold. The lock comes from the tracking store (possibly a shared server), and a
#: newline or a leading ``-`` would add installer options (``--index-url``, ``-r FILE``).
_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?")
_VERSION = re.compile(r"[A-Za-z0-9!+._*-]+")
_TOKEN = re.compile(r"[^\s#-][^\s#]*")


def _checked(run_id: str, dist: Any) -> dict[str, Any]:
    """``dist`` when every field that goes into a lock line is safe to write there.

    Raises:
        ReproError: one line naming the run and the bad entry.
    """

    def bad(why: str) -> ReproError:
        return ReproError(
            f"run {run_id}: environment.json: {why}: the logged environment cannot be rebuilt"
        )

    if not isinstance(dist, dict):
        raise bad(f"a distribution entry is {type(dist).__name__}, not an object")
    name = dist.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise bad(f"distribution name {name!r} is not a package name")
    if not isinstance(dist.get("version"), str) or not _VERSION.fullmatch(dist["version"]):
        raise bad(f"{name}: version {dist.get('version')!r} is not a version")
    for key in ("url", "subdirectory", "vcs", "commit_id", "requested_revision"):
        value = dist.get(key)
        if value is not None and (not isinstance(value, str) or not _TOKEN.fullmatch(value)):
            raise bad(f"{name}: {key} {value!r} is not one token")
    return dist


def plan_requirements(
    run_id: str,
    env: dict[str, Any],
    repo_root: Path | None = None,
    tree: Path | None = None,
    commit: str | None = None,
) -> tuple[list[str], list[str], list[str]]:
    """The lock as it will be installed: ``(lines to install, lines to hash, notes)``.

    A local or editable package inside ``repo_root`` (the run's repository) is installed
    from ``tree`` (its commit checked out), not editable; its hashed line names the commit
    instead of the temporary path. One elsewhere is installed from its path as it is now.

    Raises:
        ReproError: a local package's path is gone; an entry that is not a package name,
            version and URL (text that would be an installer option in the file).
    """
    dists = env.get("distributions")
    if dists is None:  # logged before origins were recorded: versions only
        dists = [
            {"name": canonical_name(n), "version": v, "origin": "index"}
            for n, v in sorted(dict(env.get("packages") or {}).items())
        ]
    if not isinstance(dists, list):
        raise ReproError(
            f"run {run_id}: environment.json: distributions is not a list: "
            "the logged environment cannot be rebuilt"
        )
    install, key, notes = [], [], []
    for dist in dists:
        dist = _checked(run_id, dist)
        line = requirement_line(dist)
        path = _file_path(dist.get("url")) if dist.get("origin") != "vcs" else None
        if path is None:
            install.append(line)
            key.append(line)
            continue
        name, how = dist["name"], dist.get("origin", "local")
        inside = None
        if repo_root is not None and tree is not None:
            try:
                inside = path.resolve().relative_to(repo_root.resolve())
            except ValueError:
                inside = None
        if inside is not None and (tree / inside).exists():
            install.append(f"{name} @ {(tree / inside).as_uri()}")
            key.append(f"{name} @ repo:{commit}/{inside.as_posix()}")
            notes.append(
                f"{name} ({how} install of {path}) installed from the run's commit "
                f"{(commit or '')[:12]}"
            )
        elif path.exists():
            install.append(line)
            key.append(line)
            notes.append(
                f"{name} ({how} install) installed from {path} as it is now: it is outside "
                "the run's repository, so the version that ran cannot be checked out"
            )
        else:
            raise ReproError(
                f"run {run_id}: {name} was installed from {path}, which is gone: "
                "the logged environment cannot be rebuilt"
            )
    return install, key, notes


def lock_hash(python_version_: str, env: dict[str, Any], key_lines: list[str]) -> str:
    """sha256 of what makes two environments the same: Python minor version,
    implementation, platform and the lock's lines (local packages by commit)."""
    blob = json.dumps(
        {
            "python": minor(python_version_),
            "implementation": env.get("python_implementation"),
            "sys_platform": env.get("sys_platform") or sys.platform,
            "machine": env.get("machine"),
            "lock": key_lines,
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


_NO_VERSION = re.compile(r"there is no version of ([A-Za-z0-9_.\-\[\],]+)(==|===)([^\s,]+)")
_NOT_FOUND = re.compile(r"([A-Za-z0-9_.\-]+) was not found in the package registry")


def uv_failure(run_id: str, stderr: str) -> ReproError:
    """One line for a failed ``uv pip sync``: the package version the index lacks, or uv's
    own first error line."""
    m = _NO_VERSION.search(stderr)
    if m:
        return ReproError(
            f"run {run_id}: {m.group(1)}=={m.group(3)} is not on the package index any more: "
            "the logged environment cannot be rebuilt"
        )
    m = _NOT_FOUND.search(stderr)
    if m:
        return ReproError(
            f"run {run_id}: {m.group(1)} is not on the package index: "
            "the logged environment cannot be rebuilt"
        )
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith(("error:", "Caused by:", "cause:"))]
    text = " / ".join((errors or lines[-1:])[:3])[:500]
    return ReproError(f"run {run_id}: uv could not rebuild the logged environment: {text}")


def _run_uv(run_id: str, args: list[str]) -> None:
    proc = subprocess.run([uv_binary(), *args], capture_output=True, text=True, env=_uv_env())
    if proc.returncode != 0:
        raise uv_failure(run_id, proc.stderr)


def _remove_stale(root: Path) -> None:
    """Half-built environments of processes that are gone (killed mid-build)."""
    import psutil

    for tmp in root.glob(".*.tmp-*"):
        pid = tmp.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not psutil.pid_exists(int(pid)):
            shutil.rmtree(tmp, ignore_errors=True)


def write_kernelspec(env_path: Path, name: str, python: Path, version: str) -> Path:
    """``<env_path>/share/jupyter/kernels/<name>/kernel.json`` starting ``python``."""
    folder = env_path / "share" / "jupyter" / "kernels" / name
    folder.mkdir(parents=True, exist_ok=True)
    spec = {
        "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": f"Python {version} (jupyter-repro env {name[len(KERNEL_PREFIX) :]})",
        "language": "python",
        "metadata": {"debugger": True},
    }
    (folder / "kernel.json").write_text(json.dumps(spec, indent=1))
    return folder


def prepare_env(
    run_id: str,
    env: dict[str, Any],
    python: str | None = None,
    *,
    repo_root: Path | None = None,
    tree: Path | None = None,
    commit: str | None = None,
    rebuild: bool = False,
    echo: Any = None,
) -> FreshEnv:
    """Build (or reuse from the cache) the environment logged as ``env`` for run ``run_id``.

    Args:
        env: the run's ``environment.json``.
        python: interpreter to build with (default: :func:`resolve_python`'s choice).
        repo_root, tree, commit: the run's repository, its commit checked out at ``tree``:
            local packages inside the repository are installed from there.
        rebuild: build anew even if the cache holds this environment.
        echo: a callable taking one progress line.

    Raises:
        ReproError: another Python minor version, a package the index lacks, a local
            package whose path is gone, uv failing (one line each, exit 2).
    """
    from filelock import FileLock

    say = echo or (lambda line: None)
    started = time.perf_counter()
    logged_version = str(env.get("python_version") or "")
    py, version = resolve_python(run_id, logged_version, python)
    install, key_lines, notes = plan_requirements(run_id, env, repo_root, tree, commit)
    if version != logged_version:
        notes.append(f"python: logged {logged_version}, rebuilt with {version} (same minor)")
    digest = lock_hash(version, env, key_lines)
    key = digest[:16]
    name = KERNEL_PREFIX + key[:12]
    root = env_cache_root()
    root.mkdir(parents=True, exist_ok=True)
    final = root / key
    env_python = final / "bin" / "python"
    with FileLock(str(root / f".{key}.lock")):
        marker = final / MARKER
        if marker.exists() and env_python.exists() and not rebuild:
            info = json.loads(marker.read_text())
            say(f"fresh env: reusing {final} (lock {key})")
            return FreshEnv(
                final,
                env_python,
                name,
                final / "share" / "jupyter",
                digest,
                True,
                time.perf_counter() - started,
                [*notes, *info.get("notes_added", [])],
            )
        _remove_stale(root)
        if final.exists():
            shutil.rmtree(final)
        tmp = root / f".{key}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        say(f"fresh env: building {final} with Python {version} ({len(install)} packages, uv)")
        try:
            _run_uv(run_id, ["venv", "--quiet", "--relocatable", "--python", py, str(tmp)])
            requirements = tmp / "requirements.lock.txt"
            requirements.write_text("\n".join(install) + "\n")
            tmp_python = str(tmp / "bin" / "python")
            _run_uv(run_id, ["pip", "sync", "--quiet", "--python", tmp_python, str(requirements)])
            added = []
            names = {canonical_name(d.get("name", "")) for d in env.get("distributions") or []}
            names |= {canonical_name(n) for n in env.get("packages") or {}}
            if "ipykernel" not in names:
                _run_uv(run_id, ["pip", "install", "--quiet", "--python", tmp_python, "ipykernel"])
                added.append("ipykernel was not in the logged environment: added to run the kernel")
            write_kernelspec(tmp, name, env_python, version)
            (tmp / MARKER).write_text(
                json.dumps(
                    {
                        "run_id": run_id,
                        "lock_hash": digest,
                        "python_version": version,
                        "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                        "notes_added": added,
                    },
                    indent=1,
                )
            )
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    seconds = time.perf_counter() - started
    say(f"fresh env: built in {seconds:.1f}s")
    return FreshEnv(
        final,
        env_python,
        name,
        final / "share" / "jupyter",
        digest,
        False,
        seconds,
        [*notes, *added],
    )
