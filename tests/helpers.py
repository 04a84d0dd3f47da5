"""Test helpers: build notebooks in the test, run the installed CLIs for real."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat

BIN = Path(sys.executable).parent
KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cli(name: str) -> str:
    """Path of an installed console script (``nb-smoke``, ``jupyter-repro``)."""
    path = BIN / name
    found = str(path) if path.exists() else shutil.which(name)
    assert found, f"{name} is not installed in this environment"
    return found


def run_cli(
    name: str, *args: str, cwd: str | Path | None = None, timeout: float = 300, **kwargs
) -> subprocess.CompletedProcess:
    """Run an installed console script; returns the completed process (text mode)."""
    env = {**os.environ, **kwargs.pop("env", {})}
    env.pop("CI", None) if kwargs.pop("tty_ok", False) else None
    return subprocess.run(
        [cli(name), *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        stdin=kwargs.pop("stdin", subprocess.DEVNULL),
        **kwargs,
    )


def make_notebook(path: Path, *cells, kernelspec: dict | None = None, **metadata) -> Path:
    """Write a notebook whose cells are given as source strings or nbformat cells.

    A string starting with ``#md`` becomes a markdown cell; a ``(source, tags)`` tuple a
    tagged code cell; a ``(source, tags, count)`` tuple also sets the execution count.
    """
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = kernelspec or dict(KERNELSPEC)
    nb.metadata["language_info"] = {"name": "python"}
    nb.metadata.update(metadata)
    for cell in cells:
        if isinstance(cell, dict):
            nb.cells.append(cell)
        elif isinstance(cell, tuple):
            c = nbformat.v4.new_code_cell(cell[0])
            c.metadata["tags"] = list(cell[1])
            if len(cell) > 2:
                c.execution_count = cell[2]
            nb.cells.append(c)
        elif cell.startswith("#md"):
            nb.cells.append(nbformat.v4.new_markdown_cell(cell[3:].strip()))
        else:
            nb.cells.append(nbformat.v4.new_code_cell(cell))
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def smoke_json(tmp_path: Path, *args: str, cwd: str | Path | None = None, **kwargs):
    """Run ``nb-smoke ARGS --json report`` and return (process, report dict)."""
    report = tmp_path / f"report-{len(list(tmp_path.glob('report-*.json')))}.json"
    proc = run_cli("nb-smoke", *args, "--json", str(report), cwd=cwd, **kwargs)
    assert report.exists(), proc.stdout + proc.stderr
    return proc, json.loads(report.read_text())


def by_name(report: dict) -> dict[str, dict]:
    """Report entries keyed by notebook file name."""
    return {Path(n["path"]).name: n for n in report["notebooks"]}
