"""The environment coordinate: python, platform and every installed distribution.

:func:`environment_fingerprint` is logged as ``environment.json``; :func:`requirements_lock`
turns it into ``requirements.lock.txt``, a pinned requirements file that ``uv pip sync``
and ``pip install -r`` accept (``jupyter-repro reproduce --fresh-env`` rebuilds from it).

Where each distribution came from follows PEP 610 (``direct_url.json`` in its
``.dist-info``, written by pip >= 20.1 and uv): no file means an index (or a tool that does
not write one: conda, a distro); ``dir_info`` a local folder (``editable`` when installed
with ``-e``); ``vcs_info`` a VCS URL at a commit; ``archive_info`` a wheel or sdist URL,
with its hashes when the installer recorded them.

Hashes of index packages: the sha256 of the wheel an installer downloaded is not kept
after install (``RECORD`` holds the hashes of the installed files, not of the wheel), so
index packages are pinned by exact version only, and the lock says so.

Never records environment variable values (they hold tokens and passwords). Paths appear
only where they are the origin of a package (a local or editable install) and for the
interpreter itself.

This module uses the standard library only: it also runs as a script inside another
interpreter (a kernel's, see :func:`interpreter_fingerprint`), which may not have
jupyter_repro installed.
"""

from __future__ import annotations

import functools
import json
import platform
import re
import sys
from importlib import metadata
from typing import Any

#: Version of the ``environment.json`` layout: 2 added ``distributions`` and the lock.
LOCK_FORMAT = 2
#: The origins a distribution can have (see the module docstring).
ORIGINS = ("index", "editable", "local", "vcs", "archive")


def canonical_name(name: str) -> str:
    """PEP 503 normalised name: lower case, runs of ``-_.`` become one ``-``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _origin(dist: Any) -> dict[str, Any]:
    """``origin``/``url``/``vcs``/``hashes`` of one distribution from PEP 610's file."""
    try:
        text = dist.read_text("direct_url.json")
    except Exception:
        text = None
    if not text:
        return {"origin": "index"}
    try:
        info = json.loads(text)
    except ValueError:
        return {"origin": "index", "note": "unreadable direct_url.json"}
    url = info.get("url")
    out: dict[str, Any] = {"url": url}
    if info.get("subdirectory"):
        out["subdirectory"] = info["subdirectory"]
    if "vcs_info" in info:
        vcs = info["vcs_info"]
        out.update(
            origin="vcs",
            vcs=vcs.get("vcs", "git"),
            commit_id=vcs.get("commit_id"),
            requested_revision=vcs.get("requested_revision"),
        )
    elif "dir_info" in info:
        out["origin"] = "editable" if (info["dir_info"] or {}).get("editable") else "local"
    else:
        archive = info.get("archive_info") or {}
        hashes = dict(archive.get("hashes") or {})
        if not hashes and archive.get("hash") and "=" in archive["hash"]:
            algo, _, value = archive["hash"].partition("=")  # PEP 610's legacy field
            hashes[algo] = value
        out.update(origin="archive", hashes=hashes)
    return out


def distributions() -> list[dict[str, Any]]:
    """Every distribution importable in this interpreter, sorted by canonical name.

    Each item: ``name`` (canonical), ``version``, ``origin`` (one of :data:`ORIGINS`),
    ``installer`` (``pip``, ``uv``, ``conda``... from the ``INSTALLER`` file, "" if none),
    and by origin ``url``, ``subdirectory``, ``vcs``/``commit_id``/``requested_revision``,
    ``hashes`` (``{algorithm: hex}``). A name seen twice on ``sys.path`` keeps the first,
    the one ``import`` finds.
    """
    seen: dict[str, dict[str, Any]] = {}
    for dist in metadata.distributions():
        raw = dist.metadata.get("Name")
        if not raw:
            continue
        name = canonical_name(raw)
        if name in seen:
            continue
        try:
            installer = (dist.read_text("INSTALLER") or "").strip()
        except Exception:
            installer = ""
        seen[name] = {
            "name": name,
            "version": dist.version,
            **_origin(dist),
            "installer": installer,
        }
    return [seen[k] for k in sorted(seen)]


def _fingerprint() -> dict[str, Any]:
    packages: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata.get("Name")
        if name and name.lower() not in packages:
            packages[name.lower()] = dist.version
    return {
        "lock_format": LOCK_FORMAT,
        "python_version": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "python_executable": sys.executable,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "sys_platform": sys.platform,
        "packages": dict(sorted(packages.items())),
        "distributions": distributions(),
    }


_FINGERPRINT: dict[str, Any] = {}


def environment_fingerprint() -> dict[str, Any]:
    """This interpreter's environment: python, platform, packages and their origins.

    Keys: ``lock_format``, ``python_version`` (``"3.11.7"``), ``python_implementation``,
    ``python_executable``, ``platform``, ``machine``, ``sys_platform``, ``packages``
    (``{lower-case name: version}``, the layout of ``lock_format`` 1, kept for older
    readers) and ``distributions`` (see :func:`distributions`).

    Cached per process: a batch worker computes it once for all of its runs, or not at
    all when the batch process gave it its own (:func:`adopt_fingerprint`).
    """
    if "self" not in _FINGERPRINT:
        _FINGERPRINT["self"] = _fingerprint()
    return _FINGERPRINT["self"]


def adopt_fingerprint(fingerprint: dict[str, Any]) -> bool:
    """Use ``fingerprint`` as this process's :func:`environment_fingerprint` when it was
    taken of this very interpreter (same ``python_executable``, same ``lock_format``)
    and none is cached yet. Returns whether it was adopted (False: one is cached
    already, or ``fingerprint`` is of another interpreter or layout).

    For a batch worker on the batch process's own machine (the caller checks the host):
    the batch process computed it moments before, from the same interpreter and
    ``sys.path``, so computing it again (0.3-1 s of reading every distribution's
    metadata) could only give the same answer.
    """
    if (
        "self" in _FINGERPRINT
        or fingerprint.get("python_executable") != sys.executable
        or fingerprint.get("lock_format") != LOCK_FORMAT
        or not isinstance(fingerprint.get("distributions"), list)
    ):
        return False
    _FINGERPRINT["self"] = fingerprint
    return True


@functools.lru_cache(maxsize=16)
def interpreter_fingerprint(python: str, timeout: float = 60.0) -> dict[str, Any]:
    """:func:`environment_fingerprint` of another interpreter (a kernel's), run as a
    subprocess with this module's own source; cached per path.

    Raises:
        RuntimeError: the interpreter cannot be run or does not answer with the
            fingerprint (too old, not a Python) within ``timeout`` seconds.
    """
    import os
    import subprocess
    import tempfile

    python = os.path.abspath(python)  # it runs from a temporary folder
    if python == os.path.abspath(sys.executable):
        return environment_fingerprint()
    with open(__file__, encoding="utf-8") as fh:
        source = fh.read()
    code = source  # its ``__main__`` block prints the fingerprint as one JSON line
    with tempfile.TemporaryDirectory(prefix="jrepro-env-") as cwd:  # nothing to shadow
        try:
            proc = subprocess.run(
                [python, "-c", code],
                cwd=cwd,
                capture_output=True,
                text=True,
                timeout=timeout,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise RuntimeError(f"{python}: cannot inspect its environment: {exc}") from None
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or [""])[-1]
        raise RuntimeError(f"{python}: cannot inspect its environment: {last}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def kernel_python(kernel_name: str) -> str | None:
    """The interpreter kernelspec ``kernel_name`` starts (``argv[0]``), or None when it is
    not a Python interpreter this process can name (a wrapper script, a missing spec).

    ``python``/``python3``/``python3.X`` in ``argv[0]`` mean this interpreter, as in
    jupyter_client (``KernelManager.format_kernel_cmd``).
    """
    import os

    try:
        from jupyter_client.kernelspec import KernelSpecManager

        argv = KernelSpecManager().get_kernel_spec(kernel_name).argv
    except Exception:
        return None
    if not argv:
        return None
    exe = argv[0]
    v = sys.version_info
    if exe in ("python", f"python{v[0]}", f"python{v[0]}.{v[1]}"):
        return sys.executable
    if not os.path.isabs(exe) or "python" not in os.path.basename(exe).lower():
        return None
    return exe


def kernel_environment(kernel_name: str) -> dict[str, Any]:
    """The environment a kernel runs in: its interpreter's fingerprint, or this
    process's (marked ``"source": "process"``) when the kernel's cannot be inspected."""
    python = kernel_python(kernel_name)
    if python:
        try:
            return {**interpreter_fingerprint(python), "source": "kernel"}
        except RuntimeError as exc:
            return {**environment_fingerprint(), "source": "process", "source_note": str(exc)}
    return {**environment_fingerprint(), "source": "process"}


def requirement_line(dist: dict[str, Any]) -> str:
    """One distribution as a requirements line (``pip install -r`` and ``uv pip sync``).

    ``name==version`` for an index package; ``name @ URL`` for an archive or local
    folder; ``name @ git+URL@commit`` for VCS; ``-e URL`` for an editable install.
    """
    name, origin, url = dist["name"], dist.get("origin", "index"), dist.get("url")
    sub = f"#subdirectory={dist['subdirectory']}" if dist.get("subdirectory") else ""
    if origin == "index" or not url:
        return f"{name}=={dist['version']}"
    if origin == "editable":
        return f"-e {url}{sub}"
    if origin == "vcs":
        vcs = dist.get("vcs") or "git"
        rev = dist.get("commit_id") or dist.get("requested_revision")
        return f"{name} @ {vcs}+{url}{'@' + rev if rev else ''}{sub}"
    return f"{name} @ {url}{sub}"


def requirements_lock(env: dict[str, Any]) -> str:
    """The pinned requirements file of an environment fingerprint.

    Comments say the interpreter and platform it needs and why index packages have no
    hashes; archive hashes that were recorded are given as comments (pip's
    ``--hash`` mode would require a hash for every line, which index packages lack).
    A fingerprint of ``lock_format`` 1 (versions only) gives ``name==version`` lines.
    """
    lines = [
        "# jupyter-repro lock: every distribution installed where the run executed.",
        f"# python {env.get('python_version')} ({env.get('python_implementation')}) "
        f"on {env.get('platform')} ({env.get('machine')})",
        "# install: uv venv --python "
        + ".".join(str(env.get("python_version", "")).split(".")[:2])
        + " ENV && uv pip sync -p ENV requirements.lock.txt",
        "# index packages are pinned by version only: the wheel's sha256 is not kept after",
        "# install (RECORD hashes the installed files), so it cannot be recorded honestly.",
    ]
    dists = env.get("distributions")
    if dists is None:  # lock_format 1
        lines.append("# (logged before origins were recorded: every package assumed from an index)")
        dists = sorted(
            (
                {"name": canonical_name(n), "version": v, "origin": "index"}
                for n, v in (env.get("packages") or {}).items()
            ),
            key=lambda d: d["name"],
        )
    for dist in dists:
        line = requirement_line(dist)
        hashes = dist.get("hashes") or {}
        if hashes:
            line += "  # " + " ".join(f"{k}:{v}" for k, v in sorted(hashes.items()))
        lines.append(line)
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # `python -m jupyter_repro.provenance.env`, and another interpreter
    print(json.dumps(_fingerprint()))
