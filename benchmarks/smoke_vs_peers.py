#!/usr/bin/env python
"""nb-smoke against its peers, on one folder of notebooks, in one run.

Times, with the same parallelism ``-j N`` for every tool:

* ``nb-smoke --fast``        (script mode, ``%timeit`` runs once)
* ``nb-smoke``               (script mode)
* ``nb-smoke --mode kernel`` (a fresh Jupyter kernel per notebook)
* ``pytest --nbmake -n N``   (a fresh kernel per notebook, pytest-xdist workers)
* ``jupyter nbconvert --to notebook --execute`` (one process per notebook, N at a time)

Each tool runs in its own temporary copy of the folder, so no tool modifies the inputs or
sees another tool's outputs. The verdict of a fresh kernel (nbconvert, else nbmake) is the
truth; every notebook where nb-smoke's verdict differs from it is listed, with what each
tool reported, so that it can be traced to a bug or a documented limit (docs/benchmarks.md).

Usage::

    python benchmarks/smoke_vs_peers.py FOLDER [-j 2] [--timeout 300]
    python benchmarks/smoke_vs_peers.py --corpus installed   # notebooks installed packages ship
    python benchmarks/smoke_vs_peers.py --corpus lectures    # jrjohansson/scientific-python-lectures
    python benchmarks/smoke_vs_peers.py --corpus async       # two asyncio notebook repositories
    python benchmarks/smoke_vs_peers.py --corpus timeit      # PythonDataScienceHandbook, %timeit

Results go to ``benchmarks/results/<corpus>-<UTC time>.json`` (git-ignored).
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
BIN = Path(sys.executable).parent
LECTURES_REPO = "jrjohansson/scientific-python-lectures"
LECTURES_MIRROR = Path("/work/.mirror/jrjohansson+scientific-python-lectures/repo")

PASS, FAIL, MISSING = "pass", "fail", "missing"
#: Set for every tool unless --no-sandbox: tutorial notebooks run ``!pip install ...`` and
#: ``!git clone https://...``; a benchmark must not change the environment it measures, nor
#: depend on the network. Every tool sees the same variables.
SANDBOX_ENV = {
    "PIP_NO_INDEX": "1",
    "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    "GIT_ALLOW_PROTOCOL": "file",
    "GIT_TERMINAL_PROMPT": "0",
}
ENV: dict[str, str] = dict(os.environ)
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]|#x1B\[[0-9;]*[A-Za-z]")


@dataclass
class Verdict:
    verdict: str  # pass / fail / missing
    status: str  # the tool's own word: passed, failed, timed_out, error, ...
    detail: str = ""  # where and why, one line
    cell: int | None = None  # index of the failing cell in the notebook, when known


@dataclass
class ToolRun:
    name: str
    command: list[str]
    seconds: float = 0.0
    exit_code: int | None = None
    verdicts: dict[str, Verdict] = field(default_factory=dict)
    note: str = ""


# -- corpus -----------------------------------------------------------------------------


def find_notebooks(root: Path) -> list[str]:
    """Notebooks under ``root`` as sorted relative POSIX paths (nb-smoke's discovery rules)."""
    found = []
    for path in root.rglob("*.ipynb"):
        rel = path.relative_to(root)
        if any(part.startswith(".") for part in rel.parts[:-1]):
            continue  # .ipynb_checkpoints and hidden folders
        if path.is_file():
            found.append(rel.as_posix())
    return sorted(found)


def gather_installed(into: Path) -> dict[str, Any]:
    """Copy every ``.ipynb`` shipped inside installed packages into ``into``."""
    roots = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    packages: dict[str, str] = {}
    count = 0
    for root in sorted(roots):
        for path in sorted(Path(root).rglob("*.ipynb")):
            rel = path.relative_to(root)
            if any(part.startswith(".") for part in rel.parts[:-1]):
                continue
            target = into / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
            count += 1
            packages.setdefault(rel.parts[0], _package_version(rel.parts[0]))
    return {
        "corpus": "installed",
        "source": "site-packages of " + sys.executable,
        "folders": sorted({str(Path(p).parent) for p in find_notebooks(into)}),
        "packages": packages,
        "notebooks": count,
    }


def _package_version(name: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "?"


def gather_lectures(into: Path, mirror: Path) -> dict[str, Any] | None:
    """Export the lectures repository's HEAD from a bare git mirror; None if it is absent."""
    if not (mirror / "HEAD").exists():
        print(
            f"smoke_vs_peers: no git mirror of {LECTURES_REPO} at {mirror}; get it with\n"
            f"  git clone --bare https://github.com/{LECTURES_REPO} {mirror}\n"
            "or pass a folder of notebooks instead; skipping the lectures corpus.",
            file=sys.stderr,
        )
        return None
    git = ["git", f"--git-dir={mirror}"]
    commit = subprocess.run(
        [*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True
    ).stdout.strip()
    archive = subprocess.Popen([*git, "archive", "HEAD"], stdout=subprocess.PIPE)
    subprocess.run(["tar", "-x", "-C", str(into)], stdin=archive.stdout, check=True)
    archive.stdout.close()  # type: ignore[union-attr]
    if archive.wait() != 0:
        raise SystemExit("smoke_vs_peers: git archive failed")
    date = subprocess.run(
        [*git, "log", "-1", "--format=%cI", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    return {
        "corpus": "lectures",
        "source": f"https://github.com/{LECTURES_REPO}",
        "commit": commit,
        "commit_date": date,
    }


#: Notebooks about asyncio nobody here wrote (issue 13): code that behaves differently in
#: a kernel's running event loop (``loop.run_until_complete``, top-level ``await``).
ASYNC_REPOS = (
    "yeraydiazdiaz/notebooks",  # asyncio talk + 3 asyncio notebooks, 2017
    "jmoldow/jmoldow-python3-async-tutorial",  # generators, coroutines, event loops, 2024
)


def gather_async(into: Path, mirrors: Path = Path("/work/.mirror")) -> dict[str, Any] | None:
    """Export the asyncio repositories' HEADs (bare mirrors ``owner+name/repo``) into
    ``into/<name>``; None if one is missing. Cached under ``benchmarks/.corpus/async``."""
    sources = []
    for repo in ASYNC_REPOS:
        mirror = mirrors / repo.replace("/", "+") / "repo"
        if not mirror.exists():
            print(
                f"smoke_vs_peers: no git mirror of {repo} at {mirror}; get it with\n"
                f"  git clone --bare https://github.com/{repo} {mirror}",
                file=sys.stderr,
            )
            return None
        git = ["git", f"--git-dir={mirror}"]
        commit = subprocess.run(
            [*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True
        ).stdout.strip()
        cache = HERE / ".corpus" / "async" / f"{repo.split('/')[1]}-{commit[:12]}"
        if not cache.exists():
            part = cache.with_name(cache.name + ".partial")
            shutil.rmtree(part, ignore_errors=True)
            part.mkdir(parents=True)
            archive = subprocess.Popen([*git, "archive", "HEAD"], stdout=subprocess.PIPE)
            subprocess.run(["tar", "-x", "-C", str(part)], stdin=archive.stdout, check=True)
            archive.stdout.close()  # type: ignore[union-attr]
            if archive.wait() != 0:
                raise SystemExit("smoke_vs_peers: git archive failed")
            part.rename(cache)
        shutil.copytree(cache, into / repo.split("/")[1])
        sources.append({"source": f"https://github.com/{repo}", "commit": commit})
    return {
        "corpus": "async",
        "source": ", ".join(f"{s['source']} @ {s['commit'][:12]}" for s in sources),
        "repositories": sources,
    }


#: Notebooks with ``%timeit`` cells (issue 13: script mode vs nbmake where timing loops
#: are part of the run): every notebook of the Python Data Science Handbook with a code
#: cell that starts a line with ``%timeit``/``%%timeit``, with the ``data/`` folder they
#: read.
TIMEIT_REPO = "jakevdp/PythonDataScienceHandbook"
_TIMEIT_LINE = re.compile(r"^\s*%%?timeit\b", re.M)


def has_timeit_cell(path: Path) -> bool:
    """Whether a code cell of the notebook at ``path`` has a ``%timeit``/``%%timeit`` line."""
    try:
        cells = json.loads(path.read_text(encoding="utf-8")).get("cells", [])
    except (OSError, ValueError):
        return False
    for cell in cells:
        source = cell.get("source", "")
        source = "".join(source) if isinstance(source, list) else source
        if cell.get("cell_type") == "code" and _TIMEIT_LINE.search(source):
            return True
    return False


def gather_timeit(into: Path, mirrors: Path = Path("/work/.mirror")) -> dict[str, Any] | None:
    """Export the notebooks of :data:`TIMEIT_REPO` that have ``%timeit`` cells (and its
    ``notebooks/data``) into ``into``; None without the bare mirror ``owner+name/repo``.
    Cached under ``benchmarks/.corpus/timeit``."""
    mirror = mirrors / TIMEIT_REPO.replace("/", "+") / "repo"
    if not mirror.exists():
        print(
            f"smoke_vs_peers: no git mirror of {TIMEIT_REPO} at {mirror}; get it with\n"
            f"  git clone --bare https://github.com/{TIMEIT_REPO} {mirror}",
            file=sys.stderr,
        )
        return None
    git = ["git", f"--git-dir={mirror}"]
    commit = subprocess.run(
        [*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True
    ).stdout.strip()
    cache = HERE / ".corpus" / "timeit" / f"{TIMEIT_REPO.split('/')[1]}-{commit[:12]}"
    if not cache.exists():
        part = cache.with_name(cache.name + ".partial")
        shutil.rmtree(part, ignore_errors=True)
        part.mkdir(parents=True)
        archive = subprocess.Popen([*git, "archive", "HEAD", "notebooks"], stdout=subprocess.PIPE)
        subprocess.run(["tar", "-x", "-C", str(part)], stdin=archive.stdout, check=True)
        archive.stdout.close()  # type: ignore[union-attr]
        if archive.wait() != 0:
            raise SystemExit("smoke_vs_peers: git archive failed")
        for nb in (part / "notebooks").glob("*.ipynb"):
            if not has_timeit_cell(nb):
                nb.unlink()
        shutil.rmtree(part / "notebooks" / "figures", ignore_errors=True)
        part.rename(cache)
    shutil.copytree(cache / "notebooks", into, dirs_exist_ok=True)
    return {
        "corpus": "timeit",
        "source": f"https://github.com/{TIMEIT_REPO}",
        "commit": commit,
        "selection": "notebooks/*.ipynb with a %timeit or %%timeit line in a code cell",
    }


def tree_digest(root: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(path.relative_to(root).as_posix().encode() + b"\0")
        h.update(path.read_bytes())
    return h.hexdigest()


# -- running the tools ------------------------------------------------------------------


def _exe(name: str) -> str:
    path = BIN / name
    return str(path) if path.exists() else (shutil.which(name) or name)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def _run(cmd: list[str], cwd: Path, log: Path, limit: float | None) -> tuple[int | None, str]:
    """Run ``cmd`` in its own session; output to ``log``; kill the group after ``limit``."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=ENV,
            start_new_session=True,
        )
        try:
            code: int | None = proc.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            code = None
        except BaseException:
            _kill_group(proc)
            raise
    return code, log.read_text(encoding="utf-8", errors="replace")


def _copy(src: Path, work: Path, name: str) -> Path:
    dest = work / name
    shutil.copytree(src, dest, symlinks=True)
    return dest


def run_nb_smoke(
    name: str, extra: list[str], src: Path, work: Path, notebooks: list[str], args
) -> ToolRun:
    copy = _copy(src, work, name)
    report = work / f"{name}.json"
    cmd = [_exe("nb-smoke"), *extra, "-j", str(args.jobs), "--timeout", str(args.timeout)]
    cmd += ["-q", "--json", str(report), str(copy)]
    run = ToolRun(name, cmd)
    started = time.monotonic()
    run.exit_code, output = _run(cmd, work, work / f"{name}.log", None)
    run.seconds = time.monotonic() - started
    if not report.exists():
        run.note = "no JSON report: " + output.strip()[-300:]
        return run
    data = json.loads(report.read_text(encoding="utf-8"))
    for item in data.get("notebooks", data.get("results", [])):
        rel = Path(item["path"]).resolve().relative_to(copy.resolve()).as_posix()
        status = item["status"]
        failure = item.get("failure") or {}
        if failure:
            detail = (
                f"cell {failure.get('cell_index')}: {failure.get('ename')}: "
                f"{_one_line(failure.get('evalue', ''))}"
            )
        else:
            detail = _one_line(item.get("error") or "")
        notices = [n.get("kind", "") for n in item.get("notices", [])]
        if notices:
            detail = (detail + " " if detail else "") + "[" + ", ".join(notices) + "]"
        detail = detail.replace(str(copy) + os.sep, "")
        run.verdicts[rel] = Verdict(
            PASS if status == "passed" else FAIL, status, detail, failure.get("cell_index")
        )
    return run


def run_nbmake(src: Path, work: Path, notebooks: list[str], args) -> ToolRun:
    copy = _copy(src, work, "nbmake")
    junit = work / "nbmake.xml"
    cmd = [_exe("pytest"), "--nbmake", "-n", str(args.jobs)]
    cmd += [f"--nbmake-timeout={int(args.timeout)}", "-q", "-p", "no:cacheprovider"]
    cmd += [f"--rootdir={copy}", "-o", "addopts=", "-c", os.devnull]
    cmd += ["-o", "junit_family=xunit1", f"--junitxml={junit}"]
    if args.kernel:
        cmd.append(f"--nbmake-kernel={args.kernel}")
    cmd += notebooks
    run = ToolRun("nbmake", cmd)
    started = time.monotonic()
    run.exit_code, output = _run(cmd, copy, work / "nbmake.log", None)
    run.seconds = time.monotonic() - started
    if not junit.exists():
        run.note = "no JUnit report: " + output.strip()[-300:]
        return run
    import xml.etree.ElementTree as ET

    for case in ET.parse(junit).getroot().iter("testcase"):
        rel = case.get("file", "")
        if rel not in notebooks:
            continue
        bad = case.find("failure")
        if bad is None:
            bad = case.find("error")
        if bad is None:
            skipped = case.find("skipped") is not None
            run.verdicts[rel] = Verdict(PASS, "skipped" if skipped else "passed")
            continue
        text = (bad.get("message") or "") + "\n" + (bad.text or "")
        status = "timed_out" if "timed out" in text.lower() and "Timeout" in text else bad.tag
        detail = _last_exception(text) or _tail(text)
        cell = _failing_cell(copy / rel, text, _NBMAKE_SOURCE)
        run.verdicts[rel] = Verdict(FAIL, status, detail, cell)
    return run


_EXC_LINE = re.compile(
    r"^([A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt|Kernel\w*|Warning))(?:: .*)?$"
)
_WRAPPERS = ("CellExecutionError", "CellTimeoutError")


def _last_exception(text: str) -> str:
    """The last ``Name: message`` line of a traceback (not nbclient's own wrapper)."""
    lines = [ln.strip() for ln in _ANSI.sub("", text).splitlines()]
    hits = [ln for ln in lines if _EXC_LINE.match(ln) and not ln.split(":")[0].endswith(_WRAPPERS)]
    if not hits:
        hits = [ln for ln in lines if _EXC_LINE.match(ln)]
    return _one_line(hits[-1]) if hits else ""


def run_nbconvert(src: Path, work: Path, notebooks: list[str], args) -> ToolRun:
    copy = _copy(src, work, "nbconvert")
    out_root = work / "nbconvert-out"
    logs = work / "nbconvert-logs"
    logs.mkdir()
    base = [_exe("jupyter"), "nbconvert", "--to", "notebook", "--execute"]
    base.append(f"--ExecutePreprocessor.timeout={int(args.timeout)}")
    if args.kernel:
        base.append(f"--ExecutePreprocessor.kernel_name={args.kernel}")
    run = ToolRun("nbconvert", [*base, "--output-dir", "<tmp>/<folder>", "NOTEBOOK"])

    def one(rel: str) -> tuple[str, Verdict]:
        nb = copy / rel
        out_dir = out_root / Path(rel).parent
        cmd = [*base, "--output-dir", str(out_dir), nb.name]
        log = logs / (rel.replace("/", "__") + ".log")
        code, output = _run(cmd, nb.parent, log, args.timeout + 60)
        if code == 0:
            return rel, Verdict(PASS, "passed")
        if code is None:
            return rel, Verdict(FAIL, "timed_out", f"killed after {args.timeout + 60:g} s")
        status = "timed_out" if "CellTimeoutError" in output else "failed"
        detail = _last_exception(output) or _tail(output)
        return rel, Verdict(FAIL, status, detail, _failing_cell(nb, output))

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        for rel, verdict in pool.map(one, notebooks):
            run.verdicts[rel] = verdict
    run.seconds = time.monotonic() - started
    run.exit_code = 0 if all(v.verdict == PASS for v in run.verdicts.values()) else 1
    return run


_FAILED_SOURCE = re.compile(
    r"An error occurred while executing the following cell:\n-{18}\n(.*?)\n-{18}\n", re.S
)


#: nbmake's failure text: a line of 75 dashes, the failing cell's source, the traceback
#: (which starts with a line of dashes too).
_NBMAKE_SOURCE = re.compile(r"^-{75}\n(.*?)\n-{75}", re.S)


def _failing_cell(
    notebook: Path, output: str, quote: re.Pattern[str] = _FAILED_SOURCE
) -> int | None:
    """The index of the cell a tool's error quotes (nbconvert's CellExecutionError)."""
    m = quote.search(_ANSI.sub("", output))
    if not m:
        return None
    try:
        cells = json.loads(notebook.read_text(encoding="utf-8")).get("cells", [])
    except (OSError, ValueError):
        return None
    quoted = m.group(1).strip()
    sources = {
        i: "".join(c.get("source", ""))
        if isinstance(c.get("source"), list)
        else c.get("source", "")
        for i, c in enumerate(cells)
        if c.get("cell_type") == "code"
    }
    matches = [i for i, src in sources.items() if src.strip() == quoted]
    if len(matches) == 1:
        return matches[0]
    # The same source in several cells: a fresh kernel numbers the non-empty code cells
    # it runs 1, 2, ...; the traceback's "Cell In[N]" then names the cell. Else unknown.
    n = re.search(r"Cell In\[(\d+)\]", _ANSI.sub("", output))
    run = [i for i, src in sources.items() if src.strip()]
    if n and 0 < int(n.group(1)) <= len(run) and run[int(n.group(1)) - 1] in matches:
        return run[int(n.group(1)) - 1]
    return None


def _one_line(text: str, width: int = 150) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= width else line[: width - 1] + "…"


def _tail(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return _one_line(lines[-1]) if lines else ""


# -- comparing --------------------------------------------------------------------------

SMOKE_TOOLS = ("nb-smoke --fast", "nb-smoke", "nb-smoke --mode kernel")
PEERS = ("nbmake", "nbconvert")


def verdict_of(run: ToolRun | None, rel: str) -> Verdict:
    if run is None:
        return Verdict(MISSING, "not run")
    return run.verdicts.get(rel, Verdict(MISSING, "not reported"))


def truth_of(runs: dict[str, ToolRun], rel: str) -> Verdict:
    """A fresh kernel's verdict: nbconvert's, else nbmake's."""
    for peer in ("nbconvert", "nbmake"):
        v = verdict_of(runs.get(peer), rel)
        if v.verdict != MISSING:
            return v
    return Verdict(MISSING, "no fresh-kernel run")


def compare(runs: dict[str, ToolRun], notebooks: list[str]) -> dict[str, Any]:
    rows = []
    for rel in notebooks:
        truth = truth_of(runs, rel)
        cells = {name: verdict_of(run, rel) for name, run in runs.items()}
        differs = sorted(
            name
            for name, v in cells.items()
            if truth.verdict != MISSING and v.verdict != MISSING and v.verdict != truth.verdict
        )
        # Both fail, but not at the same cell: the verdict agrees for the wrong reason.
        cell_differs = sorted(
            name
            for name, v in cells.items()
            if truth.verdict == FAIL == v.verdict
            and None not in (truth.cell, v.cell)
            and truth.cell != v.cell
        )
        rows.append(
            {
                "notebook": rel,
                "truth": truth.verdict,
                "truth_cell": truth.cell,
                "tools": {n: v.__dict__ for n, v in cells.items()},
                "differs": differs,
                "cell_differs": cell_differs,
            }
        )
    agreement = {}
    for name in runs:
        judged = [
            r for r in rows if r["truth"] != MISSING and r["tools"][name]["verdict"] != MISSING
        ]
        agreement[name] = {
            "agree": sum(1 for r in judged if name not in r["differs"]),
            "other_cell": sum(1 for r in judged if name in r["cell_differs"]),
            "judged": len(judged),
            "passed": sum(1 for r in rows if r["tools"][name]["verdict"] == PASS),
        }
    return {"rows": rows, "agreement": agreement}


def print_report(
    meta: dict[str, Any], runs: dict[str, ToolRun], comparison: dict[str, Any]
) -> None:
    out = sys.stdout
    n = meta["notebooks"]
    print(
        f"\n== {meta['corpus']['corpus']}: {n} notebooks, -j {meta['jobs']}, "
        f"timeout {meta['timeout']:g} s",
        file=out,
    )
    if meta["corpus"].get("commit"):
        print(f"   {meta['corpus']['source']} @ {meta['corpus']['commit']}", file=out)
    m = meta["machine"]
    print(
        f"   {meta['started_utc']} to {meta['finished_utc']}, nb-smoke {meta['jupyter_repro_git']},"
        f" load average (1, 5, 15 min) {' '.join(f'{x:.1f}' for x in m['load_avg_start'])}"
        f" at the start, {' '.join(f'{x:.1f}' for x in m['load_avg'])} at the end,"
        f" {m['cpus']} CPUs",
        file=out,
    )
    header = f"{'tool':<24} {'wall s':>8} {'passed':>7} {'agree':>9} {'other cell':>10}"
    peers = [p for p in PEERS if p in runs]
    for p in peers:
        header += f" {'/' + p:>11}"
    print("\n" + header, file=out)
    for name, run in runs.items():
        a = comparison["agreement"][name]
        line = (
            f"{name:<24} {run.seconds:>8.1f} {a['passed']:>7} {a['agree']:>4}/{a['judged']:<4}"
            f" {a['other_cell']:>10}"
        )
        for p in peers:
            line += f" {run.seconds / runs[p].seconds:>11.2f}" if runs[p].seconds else " " * 12
        print(line, file=out)
    for label in ("nb-smoke", "nb-smoke --fast"):
        mine = runs.get(label)
        if mine is None or not mine.seconds:
            continue
        for p in peers:
            print(f"{label} is {runs[p].seconds / mine.seconds:.1f}x faster than {p}", file=out)
    print(
        "(agree: same pass/fail verdict as a fresh kernel (nbconvert); other cell: both fail,"
        " at another cell;\n ratio columns: this tool's wall time / the peer's, below 1 is"
        " faster)",
        file=out,
    )

    short = {
        "nb-smoke --fast": "fast",
        "nb-smoke": "script",
        "nb-smoke --mode kernel": "kernel",
        "nbmake": "nbmake",
        "nbconvert": "nbconv",
    }
    names = list(runs)
    width = max([len("notebook"), *(len(r["notebook"]) for r in comparison["rows"])])
    width = min(width, 70)
    print(
        "\n" + f"{'notebook':<{width}} " + " ".join(f"{short.get(k, k):>9}" for k in names),
        file=out,
    )
    for row in comparison["rows"]:
        cells = []
        for name in names:
            v = row["tools"][name]
            mark = {"pass": "pass", "fail": "FAIL", "missing": "-"}[v["verdict"]]
            if v["status"] == "timed_out":
                mark = "TIME"
            if v["verdict"] == FAIL and v.get("cell") is not None:
                mark += f"@{v['cell']}"
            cells.append(f"{mark:>9}")
        flag = "   <<< differs: " + ", ".join(row["differs"]) if row["differs"] else ""
        if row["cell_differs"]:
            flag += "   <<< fails at another cell: " + ", ".join(row["cell_differs"])
        nb = (
            row["notebook"]
            if len(row["notebook"]) <= width
            else "…" + row["notebook"][-width + 1 :]
        )
        print(f"{nb:<{width}} " + " ".join(cells) + flag, file=out)

    diffs = [r for r in comparison["rows"] if r["differs"] or r["cell_differs"]]
    print(
        f"\n{len(diffs)} notebook(s) where a tool's verdict or failing cell differs from a"
        " fresh kernel's (FAIL@N: failed at cell N)",
        file=out,
    )
    for row in diffs:
        print(f"\n* {row['notebook']}", file=out)
        for name in names:
            v = row["tools"][name]
            where = f"cell {v['cell']}: " if v.get("cell") is not None else ""
            detail = v["detail"]
            if detail.startswith(where):
                where = ""
            print(f"    {name:<24} {v['status']:<10} {where}{detail}", file=out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", nargs="?", help="a folder of notebooks")
    parser.add_argument(
        "--corpus", choices=("installed", "lectures", "async", "timeit"), help="a ready-made corpus"
    )
    parser.add_argument("-j", "--jobs", type=int, default=2, help="parallelism for every tool")
    parser.add_argument("--timeout", type=float, default=300, help="seconds per notebook")
    parser.add_argument(
        "--kernel",
        help="force this kernelspec on every tool (default: each notebook's)",
    )
    parser.add_argument(
        "--tools", help="comma-separated subset: fast,script,kernel,nbmake,nbconvert"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="run every tool this many times (alternating order); report the median wall time",
    )
    parser.add_argument("--mirror", type=Path, default=LECTURES_MIRROR, help="lectures git mirror")
    parser.add_argument("--output", type=Path, help="results JSON (default: benchmarks/results/)")
    parser.add_argument(
        "--no-sandbox",
        dest="sandbox",
        action="store_false",
        help="let notebooks reach pip indexes and git remotes (off by default: "
        + " ".join(f"{k}={v}" for k, v in SANDBOX_ENV.items())
        + ")",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary copies and logs")
    args = parser.parse_args(argv)
    if bool(args.folder) == bool(args.corpus):
        parser.error("give a folder or --corpus, not both")

    if args.sandbox:
        ENV.update(SANDBOX_ENV)
    tmp = Path(tempfile.mkdtemp(prefix="smoke-vs-peers-"))
    try:
        return _bench(args, tmp, argv)
    finally:
        if args.keep:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def _git_state() -> str:
    """The checkout nb-smoke ran from: commit, and "+dirty" with uncommitted changes."""
    try:
        out = subprocess.run(
            ["git", "-C", str(HERE.parent), "describe", "--always", "--dirty=+dirty"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        return out.stdout.strip() or "?"
    except (OSError, subprocess.SubprocessError):
        return "?"


def _bench(args, tmp: Path, argv: list[str] | None = None) -> int:
    started_utc = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    load_start = os.getloadavg()
    src = tmp / "corpus"
    src.mkdir()
    if args.corpus == "installed":
        corpus = gather_installed(src)
    elif args.corpus == "async":
        found = gather_async(src)
        if found is None:
            return 0
        corpus = found
    elif args.corpus == "timeit":
        found = gather_timeit(src)
        if found is None:
            return 0
        corpus = found
    elif args.corpus == "lectures":
        found = gather_lectures(src, args.mirror)
        if found is None:
            return 0
        corpus = found
    else:
        folder = Path(args.folder).resolve()
        if not folder.is_dir():
            raise SystemExit(f"smoke_vs_peers: {folder} is not a folder")
        shutil.rmtree(src)
        shutil.copytree(
            folder, src, symlinks=True, ignore=shutil.ignore_patterns(".ipynb_checkpoints")
        )
        corpus = {"corpus": folder.name, "source": str(folder)}
        before = tree_digest(folder)
    checkout = _git_state()  # before the run: others may commit while it runs
    notebooks = find_notebooks(src)
    if not notebooks:
        raise SystemExit("smoke_vs_peers: no notebooks found")
    print(f"{len(notebooks)} notebooks from {corpus['source']}", flush=True)

    work = {"round": 0}

    def w(key: str) -> Path:
        return tmp / f"w-{key}-{work['round']}"

    # --kernel is given to every tool alike: in script mode its language decides how the
    # code runs (an R-declared notebook under --kernel python3 is Python code everywhere).
    forced = ["--kernel", args.kernel] if args.kernel else []
    tools: dict[str, Callable[[], ToolRun]] = {
        "fast": lambda: run_nb_smoke(
            "nb-smoke --fast", ["--fast", *forced], src, w("fast"), notebooks, args
        ),
        "script": lambda: run_nb_smoke("nb-smoke", forced, src, w("script"), notebooks, args),
        "kernel": lambda: run_nb_smoke(
            "nb-smoke --mode kernel",
            ["--mode", "kernel", *forced],
            src,
            w("kernel"),
            notebooks,
            args,
        ),
        "nbmake": lambda: run_nbmake(src, w("nbmake"), notebooks, args),
        "nbconvert": lambda: run_nbconvert(src, w("nbconvert"), notebooks, args),
    }
    wanted = args.tools.split(",") if args.tools else list(tools)
    unknown = set(wanted) - set(tools)
    if unknown:
        raise SystemExit(
            f"smoke_vs_peers: unknown tools {sorted(unknown)}; choose from {list(tools)}"
        )
    runs: dict[str, ToolRun] = {}
    times: dict[str, list[float]] = {}
    unstable: dict[str, list[str]] = {}
    for r in range(args.rounds):
        work["round"] = r
        # Later rounds run the tools in reverse order, so drift in the machine's load
        # does not always favour the same tool.
        for key in wanted if r % 2 == 0 else wanted[::-1]:
            w(key).mkdir()
            print(f"round {r + 1}/{args.rounds}: running {key} ...", flush=True)
            run = tools[key]()
            print(
                f"  {run.name}: {run.seconds:.1f} s, exit {run.exit_code}"
                + (f" ({run.note})" if run.note else ""),
                flush=True,
            )
            times.setdefault(run.name, []).append(run.seconds)
            if run.name not in runs:
                runs[run.name] = run  # verdicts come from the first round
                continue
            first = runs[run.name].verdicts
            for rel, v in run.verdicts.items():
                if rel in first and first[rel].verdict != v.verdict:
                    unstable.setdefault(run.name, []).append(rel)
    for name, run in runs.items():
        run.seconds = statistics.median(times[name])
        if unstable.get(name):
            run.note = "verdict changed between rounds: " + ", ".join(sorted(set(unstable[name])))
            print(f"WARNING: {name}: {run.note}", file=sys.stderr)
    digest_ok = True
    if not args.corpus:
        digest_ok = tree_digest(Path(args.folder).resolve()) == before
        if not digest_ok:
            print("WARNING: the input folder changed during the run", file=sys.stderr)

    comparison = compare(runs, notebooks)
    meta = {
        "corpus": corpus,
        "notebooks": len(notebooks),
        "jobs": args.jobs,
        "timeout": args.timeout,
        "rounds": args.rounds,
        "kernel": args.kernel,
        "sandbox_env": SANDBOX_ENV if args.sandbox else {},
        "inputs_unchanged": digest_ok,
        "started_utc": started_utc,
        "finished_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "load_avg_start": load_start,  # 1, 5, 15 min, before the first tool
            "load_avg": os.getloadavg(),  # at the end
        },
        "versions": {
            p: _package_version(p)
            for p in (
                "jupyter-repro",
                "nbmake",
                "nbconvert",
                "nbclient",
                "ipykernel",
                "ipython",
                "pytest-xdist",
            )
        },
        "jupyter_repro_git": checkout,
        "command": ["python", "benchmarks/smoke_vs_peers.py", *(argv or sys.argv[1:])],
    }
    print_report(meta, runs, comparison)
    results = {
        **meta,
        "tools": {
            name: {
                "command": run.command,
                "seconds": round(run.seconds, 2),
                "seconds_per_round": [round(t, 2) for t in times[name]],
                "exit_code": run.exit_code,
                "note": run.note,
                "agreement": comparison["agreement"][name],
            }
            for name, run in runs.items()
        },
        "ratios": {
            name: {p: round(run.seconds / runs[p].seconds, 3) for p in PEERS if p in runs}
            for name, run in runs.items()
            if name in SMOKE_TOOLS
        },
        "rows": comparison["rows"],
    }
    if args.output:
        out = args.output
    else:
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        out = RESULTS / f"{corpus['corpus']}-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str) + "\n", encoding="utf-8")
    print(f"\nresults: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
