#!/usr/bin/env python
"""How often nb-smoke's lint is right, on public notebooks nobody here wrote.

For each corpus (a public repository at a pinned commit) the script

1. lints every notebook with every rule (``nb-smoke --lint-only --select ALL`` as a
   function), and counts warnings per rule, for the default rule set and the opt-in ones;
2. runs every notebook top to bottom in a fresh Jupyter kernel (nbclient, kernel
   ``python3``, no network for pip/git, one process per notebook, killed with its kernel
   after ``--timeout`` seconds), and checks each warning that claims a clean run fails
   (``hidden_state``, ``undefined_name``, ``out_of_order`` "a top-to-bottom run fails
   here") against that run: the claim is **true** when the run stops at that cell with
   ``NameError`` for that name, **false** when the cell ran without error, **unverified**
   when the run stopped earlier (a missing module, a data file or a URL the sandbox cannot
   reach: the reason is printed);
3. for ``unseeded_random``, runs the notebook a second time and counts the warning as
   **true** when some output of the flagged cell or a cell below it differs between the
   two runs (text and images), **unverified** when either run failed before the cell.

A notebook is *well kept* when its fresh run finishes without error. The figure that
matters: warnings of the default rules per well-kept notebook, and false claims (must be 0).

Corpora are read from git mirrors (``--mirror``, default ``/work/.mirror``; one bare
repository per corpus at ``<mirror>/<owner>+<name>/repo``, e.g. made with
``git clone --bare https://github.com/<owner>/<name>``) and exported at the pinned commit
into ``benchmarks/.corpus/`` (git-ignored). Fresh-run results are cached there by the
notebook's sha256, so a second call only lints.

Usage::

    python benchmarks/lint_precision.py [-j 2] [--timeout 300] [--corpus NAME ...]

Results: a table on stdout (the one in the README) and
``benchmarks/results/lint_precision-<UTC time>.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CORPUS = HERE / ".corpus"
RESULTS = HERE / "results"

#: (repository, pinned commit, notebooks inside it).
CORPORA: dict[str, tuple[str, str, str]] = {
    "whirlwind": (
        "jakevdp/WhirlwindTourOfPython",
        "6f1daf714fe52a8dde6a288674ba46a7feed8816",
        "*.ipynb",
    ),
    "pdsh": (
        "jakevdp/PythonDataScienceHandbook",
        "d66231454ef753818dc9213c9b5942e067266966",
        "notebooks/0[1-4].*.ipynb",
    ),
    "pdsh-ml": (
        "jakevdp/PythonDataScienceHandbook",
        "d66231454ef753818dc9213c9b5942e067266966",
        "notebooks/0[5-6].*.ipynb",
    ),
    "lectures": (
        "jrjohansson/scientific-python-lectures",
        "a2a76136ac06ff5fa91343ae095f1223c914d944",
        "*.ipynb",
    ),
    "numpy100": (
        "rougier/numpy-100",
        "6447594ad639908dc979446a4ec7f0f2e62fb23b",
        "*.ipynb",
    ),
}
#: Rules whose message claims a top-to-bottom run fails at the cell.
FAILURE_CLAIMS = ("hidden_state", "undefined_name", "out_of_order")
SANDBOX_ENV = {
    "PIP_NO_INDEX": "1",
    "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    "GIT_ALLOW_PROTOCOL": "file",
    "GIT_TERMINAL_PROMPT": "0",
    "MPLBACKEND": "module://matplotlib_inline.backend_inline",
}
_RUNNER_VERSION = "1"  # bump to invalidate cached runs


def export_corpus(name: str, mirror_root: Path) -> Path:
    """The corpus's files at its pinned commit, under benchmarks/.corpus/<name>/."""
    repo, commit, _glob = CORPORA[name]
    into = CORPUS / repo.replace("/", "+")
    stamp = into / ".commit"
    if stamp.exists() and stamp.read_text().strip() == commit:
        return into
    git_dir = mirror_root / repo.replace("/", "+") / "repo"
    if not (git_dir / "HEAD").exists():
        raise SystemExit(
            f"lint_precision: no git mirror of {repo} at {git_dir}; make one with\n"
            f"  git clone --bare https://github.com/{repo} {git_dir}"
        )
    into.mkdir(parents=True, exist_ok=True)
    archive = subprocess.Popen(
        ["git", f"--git-dir={git_dir}", "archive", commit], stdout=subprocess.PIPE
    )
    subprocess.run(["tar", "-x", "-C", str(into)], stdin=archive.stdout, check=True)
    archive.stdout.close()  # type: ignore[union-attr]
    if archive.wait() != 0:
        raise SystemExit(f"lint_precision: git archive {commit} of {repo} failed")
    stamp.write_text(commit + "\n")
    return into


# -- fresh-kernel runs ------------------------------------------------------------------


def run_one(notebook: str, out: str, cell_timeout: float) -> None:
    """In a child process: execute one notebook with nbclient, write what happened."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    nb = nbformat.read(notebook, as_version=4)
    client = NotebookClient(
        nb,
        timeout=cell_timeout,
        kernel_name="python3",
        allow_errors=False,
        resources={"metadata": {"path": str(Path(notebook).parent)}},
    )
    failed: dict[str, Any] | None = None
    try:
        client.execute()
    except CellExecutionError as exc:
        failed = {"ename": exc.ename, "evalue": str(exc.evalue)[:500]}
    except (CellTimeoutError, DeadKernelError) as exc:
        failed = {"ename": type(exc).__name__, "evalue": str(exc)[:500]}
    failing_cell = None
    outputs: dict[int, list[str]] = {}
    for i, cell in enumerate(nb.cells):
        if cell.get("cell_type") != "code":
            continue
        for o in cell.get("outputs", []):
            if o.get("output_type") == "error" and failing_cell is None:
                failing_cell = i
        outputs[i] = [_comparable(o) for o in cell.get("outputs", [])]
    if failed is not None and failing_cell is None:
        failing_cell = _running_cell(nb)
    Path(out).write_text(
        json.dumps({"failed": failed, "failing_cell": failing_cell, "outputs": outputs})
    )


_ADDRESS = re.compile(r"0x[0-9a-fA-F]{6,}")
_TIMING = re.compile(r"per loop|loops? each|Wall time|CPU times|best of \d|took [\d.]+ ?m?s")


def _comparable(output: dict[str, Any]) -> str:
    """An output as compared between two runs: object addresses and timings left out,
    images by their sha256."""
    kind = output.get("output_type")
    if kind == "stream":
        text = str(output.get("text", ""))
    elif kind == "error":
        text = str(output.get("ename", ""))
    else:
        data = output.get("data", {})
        text = str(data.get("text/plain", ""))
        for mime in ("image/png", "image/jpeg", "image/svg+xml"):
            if mime in data:
                digest = hashlib.sha256(str(data[mime]).encode()).hexdigest()[:16]
                text += f"\n{mime}:{digest}"
    lines = [ln for ln in text.splitlines() if not _TIMING.search(ln)]
    return _ADDRESS.sub("0x?", "\n".join(lines))


def _running_cell(nb) -> int | None:
    """After a timeout or a dead kernel: the first code cell without an execution count."""
    for i, cell in enumerate(nb.cells):
        code = cell.get("cell_type") == "code" and cell.get("source", "").strip()
        if code and cell.get("execution_count") is None:
            return i
    return None


def fresh_run(path: Path, timeout: float, attempt: int) -> dict[str, Any]:
    """Run ``path`` in a fresh kernel in a child process (cached by content and attempt)."""
    import psutil

    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    cache = CORPUS / "runs" / f"{digest}-{attempt}-{_RUNNER_VERSION}.json"
    if cache.exists():
        return json.loads(cache.read_text())
    cache.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **SANDBOX_ENV}
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="lint-precision-") as tmp:
        out = Path(tmp) / "run.json"
        env["IPYTHONDIR"] = str(Path(tmp) / "ipython")
        proc = subprocess.Popen(
            [sys.executable, __file__, "--run-one", str(path), str(out), str(timeout)],
            cwd=path.parent,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        try:
            _out, err = proc.communicate(timeout=timeout + 60)
        except subprocess.TimeoutExpired:
            for child in psutil.Process(proc.pid).children(recursive=True):
                child.kill()
            proc.kill()
            proc.communicate()
            err = b"killed"
        if out.exists():
            result = json.loads(out.read_text())
        else:
            result = {
                "failed": {"ename": "RunnerError", "evalue": err.decode(errors="replace")[-300:]},
                "failing_cell": None,
                "outputs": {},
            }
    result["seconds"] = round(time.monotonic() - started, 1)
    cache.write_text(json.dumps(result))
    return result


# -- checks ----------------------------------------------------------------------------

_NAME_ERROR = re.compile(r"name '([^']+)' is not defined")


def judge_claim(finding: dict[str, Any], run: dict[str, Any]) -> tuple[str, str]:
    """``(true|false|unverified, why)`` for a finding that claims a clean run fails."""
    cell, failing, failed = finding["cell_index"], run["failing_cell"], run["failed"]
    if failed is None or (failing is not None and failing > cell):
        return "false", "the cell ran without error in a fresh kernel"
    if failing == cell:
        match = _NAME_ERROR.search(failed.get("evalue", ""))
        if failed.get("ename") == "NameError" and match and match.group(1) in finding["names"]:
            return "true", f"NameError: {match.group(1)}"
        return "unverified", f"the cell failed otherwise: {failed['ename']}"
    return "unverified", f"the run stopped earlier, at cell {failing}: {failed['ename']}"


def judge_random(
    finding: dict[str, Any], first: dict[str, Any], second: dict[str, Any]
) -> tuple[str, str]:
    """``true`` when an output at or below the flagged cell differs between two runs."""
    cell = finding["cell_index"]
    for run in (first, second):
        if run["failed"] is not None and (
            run["failing_cell"] is None or run["failing_cell"] <= cell
        ):
            return "unverified", f"a run failed at cell {run['failing_cell']}"
    limit = min(
        r["failing_cell"] if r["failing_cell"] is not None else 10**9 for r in (first, second)
    )
    for key, outs in first["outputs"].items():
        if cell <= int(key) < limit and second["outputs"].get(key) != outs:
            return "true", f"cell {key}'s output differs between two fresh runs"
    return "false", "every output at and below the cell is the same in two fresh runs"


def lint_one(path: Path) -> list[dict[str, Any]]:
    import nbformat

    from jupyter_repro.smoke.lint import RULES, lint_cells

    nb = nbformat.read(path, as_version=4)
    return [{**f.to_json(), "verdict": f.verdict.value} for f in lint_cells(nb, RULES).findings]


def claims_failure(finding: dict[str, Any]) -> bool:
    return finding["verdict"] in FAILURE_CLAIMS and (
        finding["verdict"] != "out_of_order" or "fails here" in finding["message"]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", nargs="*", choices=sorted(CORPORA), default=sorted(CORPORA))
    parser.add_argument("--mirror", type=Path, default=Path("/work/.mirror"))
    parser.add_argument("-j", "--jobs", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=300, help="seconds per cell")
    parser.add_argument("--output", type=Path)
    args = parser.parse_args(argv)

    from jupyter_repro.smoke.lint import DEFAULT_RULES, RULES

    notebooks: list[tuple[str, Path]] = []
    for name in args.corpus:
        root = export_corpus(name, args.mirror)
        notebooks += [(name, p) for p in sorted(root.glob(CORPORA[name][2]))]
    lints = {p: lint_one(p) for _c, p in notebooks}

    def runs_for(item: tuple[str, Path]) -> tuple[Path, list[dict[str, Any]]]:
        _c, path = item
        runs = [fresh_run(path, args.timeout, 1)]
        if any(f["verdict"] == "unseeded_random" for f in lints[path]):
            runs.append(fresh_run(path, args.timeout, 2))
        return path, runs

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        runs = dict(pool.map(runs_for, notebooks))

    per_corpus: dict[str, dict[str, Any]] = {}
    judged: list[dict[str, Any]] = []
    not_run: list[str] = []
    for corpus, path in notebooks:
        row = per_corpus.setdefault(
            corpus,
            {"notebooks": 0, "well_kept": 0, "by_rule": Counter(), "kept_by_rule": Counter()},
        )
        row["notebooks"] += 1
        first = runs[path][0]
        kept = first["failed"] is None
        row["well_kept"] += kept
        if not kept:
            not_run.append(
                f"{path.relative_to(CORPUS)}: cell {first['failing_cell']}: "
                f"{first['failed']['ename']}: {first['failed']['evalue'][:100]}"
            )
        for f in lints[path]:
            row["by_rule"][f["verdict"]] += 1
            if kept:
                row["kept_by_rule"][f["verdict"]] += 1
            verdict = why = None
            if claims_failure(f):
                verdict, why = judge_claim(f, first)
            elif f["verdict"] == "unseeded_random" and len(runs[path]) > 1:
                verdict, why = judge_random(f, first, runs[path][1])
            if verdict is not None:
                judged.append(
                    {
                        "notebook": str(path.relative_to(CORPUS)),
                        "cell": f["cell_index"],
                        "rule": f["verdict"],
                        "message": f["message"],
                        "verdict": verdict,
                        "why": why,
                    }
                )

    print(
        f"lint_precision: {len(notebooks)} notebooks, fresh runs in {time.monotonic() - started:.0f} s"
    )
    print()
    for name in args.corpus:
        repo, commit, glob = CORPORA[name]
        print(f"- {name}: {repo} @ {commit[:12]} ({glob})")
    print()
    default = sorted(DEFAULT_RULES, key=RULES.index)
    opt_in = [r for r in RULES if r not in DEFAULT_RULES]
    header = ["corpus", "notebooks", "well kept", *default, "default / well kept", *opt_in]
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    totals = {"notebooks": 0, "well_kept": 0, "by_rule": Counter(), "kept_by_rule": Counter()}
    for name in [*args.corpus, "total"]:
        row = totals if name == "total" else per_corpus.get(name)
        if row is None:
            continue
        if name != "total":
            for key in ("notebooks", "well_kept"):
                totals[key] += row[key]
            totals["by_rule"] += row["by_rule"]
            totals["kept_by_rule"] += row["kept_by_rule"]
        kept_default = sum(row["kept_by_rule"][r] for r in default)
        ratio = kept_default / row["well_kept"] if row["well_kept"] else 0.0
        cells = [
            name,
            str(row["notebooks"]),
            str(row["well_kept"]),
            *(str(row["by_rule"][r]) for r in default),
            f"{ratio:.2f}",
            *(str(row["by_rule"][r]) for r in opt_in),
        ]
        print("| " + " | ".join(cells) + " |")
    print()
    summary: dict[str, Counter] = defaultdict(Counter)
    for j in judged:
        summary[j["rule"]][j["verdict"]] += 1
    print("Checked against fresh-kernel runs (true / false / unverified):")
    for rule in RULES:
        if rule in summary:
            c = summary[rule]
            tag = "" if rule in DEFAULT_RULES else " (opt-in)"
            print(
                f"  {rule}{tag}: {c['true']} true, {c['false']} false, {c['unverified']} unverified"
            )
    false_default = [j for j in judged if j["verdict"] == "false" and j["rule"] in DEFAULT_RULES]
    for j in judged:
        if j["verdict"] != "true":
            print(f"    {j['verdict']}: {j['notebook']} cell {j['cell']} {j['rule']}: {j['why']}")
    print()
    print("Not well kept (their fresh run stopped; claims below that cell are unverified):")
    for line in not_run:
        print("  " + line)
    RESULTS.mkdir(exist_ok=True)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = args.output or RESULTS / f"lint_precision-{stamp}.json"
    out.write_text(
        json.dumps(
            {
                "corpora": {n: CORPORA[n] for n in args.corpus},
                "per_corpus": {
                    n: {**r, "by_rule": dict(r["by_rule"]), "kept_by_rule": dict(r["kept_by_rule"])}
                    for n, r in per_corpus.items()
                },
                "judged": judged,
                "not_well_kept": not_run,
            },
            indent=2,
        )
    )
    print(f"\nresults: {out}")
    if false_default:
        print(f"FALSE CLAIMS by default rules: {len(false_default)}")
        return 1
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--run-one":
        run_one(sys.argv[2], sys.argv[3], float(sys.argv[4]))
        sys.exit(0)
    sys.exit(main())
