"""nb-smoke's reports: terminal text, JSON (docs/report-schema.md), JUnit XML, GitHub
Actions annotations and SARIF 2.1.0.

All of them render the same :class:`~jupyter_repro.smoke.results.SmokeReport`; writes are
atomic (temporary file in the target folder, then rename), so a killed run never leaves a
half-written report for CI to read.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

from .results import ERROR, FAILED, PASSED, TIMED_OUT, NotebookResult, SmokeReport

_MARK = {PASSED: "PASS", FAILED: "FAIL", TIMED_OUT: "TIME", ERROR: "ERR "}


def result_line(result: NotebookResult) -> str:
    """One line per notebook: ``PASS  path (1.2 s)`` / ``FAIL  path: cell 3 ...``."""
    status = result.final_status
    head = f"{_MARK[status]}  {result.path}"
    if result.status == ERROR:
        error = result.error or ""
        if error.startswith(result.path + ": "):
            error = error[len(result.path) + 2 :]
        return f"{head}: {error}"
    shortened = f", {result.timeit_shortened} %timeit run once" if result.timeit_shortened else ""
    tail = f" ({result.seconds:.1f} s, {result.mode}{shortened})"
    if result.failure is not None:
        f = result.failure
        where = f.label + (f", line {f.line}" if f.line else "")
        return f"{head}: {where}: {f.ename}: {_one_line(f.evalue)}{tail}"
    if result.error:
        return f"{head}: {result.error}{tail}"
    if result.strict_failed:
        return f"{head}: warnings are failures under --strict{tail}"
    return head + tail


def _one_line(text: str, width: int = 160) -> str:
    line = " ".join(text.split())
    return line if len(line) <= width else line[: width - 1] + "…"


def render_details(result: NotebookResult, show_output: bool = False) -> str:
    """The indented block under a notebook's line: failure context, findings, notices."""
    lines: list[str] = []
    f = result.failure
    if f is not None:
        cell_id = f" (id {f.cell_id})" if f.cell_id else ""
        lines.append(f"    {f.label}{cell_id}: {f.first_lines}")
        if f.source_line:
            lines.append(f"    line {f.line}: {f.source_line}")
        if f.output.strip():
            lines.append("    output before the error:")
            lines += ["      " + ln for ln in f.output.rstrip().splitlines()[-10:]]
    for d in result.output_differences:
        lines.append(f"    cell {d.cell_index}: output differs from the saved one: {d.summary}")
        lines += ["      " + ln for ln in d.text_diff.rstrip().splitlines()[:30]]
        for _k, mime, saved, fresh in d.images:
            lines.append(
                f"      {mime}: saved {(saved or 'none')[:12]} fresh {(fresh or 'none')[:12]} (sha256)"
            )
    for n in result.nondeterministic:
        lines.append(
            f"    cell {n['cell_index']}: output differs between runs (run 1 vs run "
            f"{n['first_differing_run']}); probable cause: {n['cause']}"
        )
        diff = n["difference"]["text_diff"].rstrip().splitlines()[:12]
        lines += ["      " + ln for ln in diff]
    for finding in result.findings:
        lines.append(
            f"    warning: cell {finding.cell_index}: {finding.verdict.value}: {finding.message}"
        )
    for notice in result.notices:
        where = f"cell {notice.cell_index}: " if notice.cell_index is not None else ""
        lines.append(f"    warning: {where}{notice.message}")
    if show_output:
        for key, text in result.output.items():
            if text.strip():
                lines.append(f"    output of cell {key}:")
                lines += ["      " + ln for ln in text.rstrip().splitlines()]
    return "\n".join(lines)


def summary_line(report: SmokeReport) -> str:
    """``3 passed, 1 failed, 0 timed out, 1 error in 4.2 s (5 notebooks)``."""
    c = report.counts()
    warnings = sum(len(r.findings) + len(r.notices) for r in report.results)
    parts = [f"{c[PASSED]} passed", f"{c[FAILED]} failed"]
    if c[TIMED_OUT]:
        parts.append(f"{c[TIMED_OUT]} timed out")
    if c[ERROR]:
        parts.append(f"{c[ERROR]} unreadable or not runnable")
    if warnings:
        parts.append(f"{warnings} warning{'s' if warnings != 1 else ''}")
    n = len(report.results)
    return f"nb-smoke: {', '.join(parts)} in {report.seconds:.1f} s ({n} notebook{'s' if n != 1 else ''})"


def to_json_text(report: SmokeReport) -> str:
    return json.dumps(report.to_json(), indent=2, ensure_ascii=False) + "\n"


_XML_INVALID = re.compile(r"\x1b\[[0-9;]*[A-Za-z]|[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _xml_text(text: str) -> str:
    """Text XML 1.0 can hold: ANSI colour codes and control characters removed."""
    return _XML_INVALID.sub("", text)


def to_junit_xml(report: SmokeReport) -> str:
    """JUnit XML: one ``testsuite`` "nb-smoke", one ``testcase`` per notebook.

    Failures carry the cell label and exception in ``message`` and the traceback in the
    body; unreadable notebooks are ``error`` elements; warnings go to ``system-out``.
    """
    c = report.counts()
    suite = ET.Element(
        "testsuite",
        name="nb-smoke",
        tests=str(len(report.results)),
        failures=str(c[FAILED] + c[TIMED_OUT]),
        errors=str(c[ERROR]),
        skipped="0",
        time=f"{report.seconds:.3f}",
    )
    for r in report.results:
        case = ET.SubElement(
            suite, "testcase", classname="nb-smoke", name=r.path, time=f"{r.seconds:.3f}"
        )
        if r.timeit_shortened or r.timeit_full:
            props = ET.SubElement(case, "properties")
            for name in ("timeit_shortened", "timeit_full"):
                ET.SubElement(props, "property", name=name, value=str(getattr(r, name)))
        status = r.final_status
        if status == ERROR:
            ET.SubElement(
                case, "error", message=_xml_text(r.error or "error"), type="NotebookError"
            )
        elif status in (FAILED, TIMED_OUT):
            if r.failure is not None:
                f = r.failure
                where = f.label + (f", line {f.line}" if f.line else "")
                el = ET.SubElement(
                    case,
                    "failure",
                    message=_xml_text(f"{where}: {f.ename}: {f.evalue}"),
                    type=f.ename,
                )
                el.text = _xml_text(f"{f.first_lines}\n\n{f.traceback}")
            else:
                ET.SubElement(
                    case,
                    "failure",
                    message=_xml_text(r.error or "warnings under --strict"),
                    type=status,
                )
        details = render_details(r)
        if details and (r.findings or r.notices):
            ET.SubElement(case, "system-out").text = _xml_text(details)
    ET.indent(suite)
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(suite, encoding="unicode") + "\n"
    )


def write_image_pairs(report: SmokeReport, json_path: str | Path) -> None:
    """Write each differing image, saved and fresh, into ``<report>-images/`` beside the
    JSON report: ``<notebook path>-cell<N>-<k>-saved.png`` and ``-fresh.png``, where the
    notebook path has its separators replaced, so two ``plot.ipynb`` never collide."""
    from ..outputs import decode_image

    folder = Path(json_path).with_name(Path(json_path).stem + "-images")
    suffix = {
        "image/png": ".png",
        "image/jpeg": ".jpg",
        "image/gif": ".gif",
        "image/svg+xml": ".svg",
    }
    for r in report.results:
        stem = "_".join(p for p in Path(r.path).with_suffix("").parts if p not in ("/", "..", "."))
        for name, mime, saved, fresh in r.image_pairs:
            folder.mkdir(parents=True, exist_ok=True)
            for which, value in (("saved", saved), ("fresh", fresh)):
                if value:
                    target = folder / f"{stem}-{name}-{which}{suffix[mime]}"
                    target.write_bytes(decode_image(value, mime))


# -- CI formats: GitHub Actions annotations and SARIF ------------------------------------

_CELL_START = re.compile(r'(?<!\\)"cell_type"\s*:')


def cell_lines(path: str | Path) -> dict[int, int]:
    """1-based line in a ``.ipynb`` file where each cell (0-based index) starts, so CI
    annotations point into the file; empty for jupytext notebooks or an unexpected
    layout (a count of cell starts that differs from the notebook's cells)."""
    p = Path(path)
    if p.suffix != ".ipynb":
        return {}
    try:
        text = p.read_text(encoding="utf-8")
        cells = json.loads(text).get("cells", [])
    except (OSError, ValueError, AttributeError):
        return {}
    starts = [text.count("\n", 0, m.start()) + 1 for m in _CELL_START.finditer(text)]
    return dict(enumerate(starts)) if len(starts) == len(cells) else {}


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def _annotation(level: str, path: str, line: int | None, title: str, message: str) -> str:
    props = f"file={_escape_property(path)}"
    if line:
        props += f",line={line}"
    props += f",title={_escape_property(title)}"
    return f"::{level} {props}::{_escape_data(message)}"


def _problems(r: NotebookResult) -> list[tuple[str, str, int | None, str, str]]:
    """``(level, rule, cell index, title, message)`` for everything wrong with a notebook,
    failures first. The rule is a lint rule or one of ``cell_failed``, ``timed_out``,
    ``not_checked``, ``run_failed`` (outputs differ, a crash) and the notices' kinds."""
    out: list[tuple[str, str, int | None, str, str]] = []
    status = r.final_status
    if r.status == ERROR:
        out.append(("error", "not_checked", None, "nb-smoke: not checked", r.error or "error"))
    elif r.failure is not None:
        f = r.failure
        rule = "timed_out" if r.status == TIMED_OUT else "cell_failed"
        where = f.label + (f", line {f.line}" if f.line else "")
        out.append(
            (
                "error",
                rule,
                f.cell_index,
                f"nb-smoke: {where} failed",
                f"{where}: {f.ename}: {_one_line(f.evalue, 500)}",
            )
        )
    elif r.status in (FAILED, TIMED_OUT):
        rule = "timed_out" if r.status == TIMED_OUT else "run_failed"
        out.append(("error", rule, None, f"nb-smoke: {rule}", r.error or r.status))
    finding_level = "error" if r.strict_failed and status == FAILED else "warning"
    for finding in r.findings:
        rule = finding.verdict.value
        out.append(
            (
                finding_level,
                rule,
                finding.cell_index,
                f"nb-smoke {rule}: cell {finding.cell_index}",
                f"cell {finding.cell_index}: {rule}: {finding.message}",
            )
        )
    for notice in r.notices:
        where = f"cell {notice.cell_index}: " if notice.cell_index is not None else ""
        level = "error" if r.strict_failed and notice.strict else "warning"
        out.append(
            (
                level,
                notice.kind,
                notice.cell_index,
                f"nb-smoke {notice.kind}",
                where + notice.message,
            )
        )
    return out


def github_annotations(report: SmokeReport) -> list[str]:
    """GitHub Actions workflow commands, one per problem: ``::error`` for a failing or
    unreadable notebook (naming the cell, its line in the file and the exception),
    ``::warning`` for lint findings and notices (``::error`` under ``--strict``)."""
    lines: list[str] = []
    for r in report.results:
        starts = cell_lines(r.path)
        for level, _rule, cell, title, message in _problems(r):
            line = starts.get(cell) if cell is not None else None
            lines.append(_annotation(level, r.path, line, title, message))
    return lines


SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
_RUN_RULES = {
    "cell_failed": "a cell raised: the notebook does not run top to bottom",
    "timed_out": "the notebook exceeded its time limit and was killed",
    "run_failed": "the run failed outside a cell (outputs differ, the process died)",
    "not_checked": "the notebook could not be checked (unreadable, no such kernel)",
}


def to_sarif(report: SmokeReport) -> dict:
    """The report as a SARIF 2.1.0 log (one run, tool ``nb-smoke``) for code scanning:
    one result per problem (see :func:`github_annotations`), located in the notebook file
    at its cell's line, with the cell index and id in ``properties``."""
    from .. import __version__
    from ..verdicts import Verdict

    rules: list[dict] = []
    index: dict[str, int] = {}

    def rule_index(rule: str) -> int:
        if rule not in index:
            index[rule] = len(rules)
            try:
                text = Verdict(rule).description
                help_uri = f"{_DOCS}/lint.md#{rule}"
            except ValueError:
                text = _RUN_RULES.get(rule, rule.replace("_", " "))
                help_uri = f"{_DOCS}/nb-smoke.md"
            rules.append(
                {
                    "id": rule,
                    "name": "".join(w.title() for w in rule.split("_")),
                    "shortDescription": {"text": text},
                    "helpUri": help_uri,
                }
            )
        return index[rule]

    results = []
    for r in report.results:
        starts = cell_lines(r.path)
        uri = Path(r.path).as_posix()
        if Path(r.path).is_absolute():
            try:
                uri = Path(r.path).relative_to(Path.cwd()).as_posix()
            except ValueError:
                uri = Path(r.path).as_uri()
        for level, rule, cell, _title, message in _problems(r):
            location: dict = {"physicalLocation": {"artifactLocation": {"uri": uri}}}
            line = starts.get(cell) if cell is not None else None
            if line:
                location["physicalLocation"]["region"] = {"startLine": line}
            result = {
                "ruleId": rule,
                "ruleIndex": rule_index(rule),
                "level": level,
                "message": {"text": message},
                "locations": [location],
            }
            if cell is not None:
                cell_id = next(
                    (f.cell_id for f in r.findings if f.cell_index == cell and f.cell_id), None
                ) or (r.failure.cell_id if r.failure and r.failure.cell_index == cell else None)
                result["properties"] = {"cell_index": cell, "cell_id": cell_id}
            results.append(result)
    return {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "nb-smoke",
                        "version": __version__,
                        "informationUri": "https://github.com/jupyter-repro/jupyter-repro",
                        "rules": rules,
                    }
                },
                "results": results,
                "invocations": [{"executionSuccessful": report.exit_code != 2}],
            }
        ],
    }


_DOCS = "https://github.com/jupyter-repro/jupyter-repro/blob/main/docs"


def to_sarif_text(report: SmokeReport) -> str:
    return json.dumps(to_sarif(report), indent=2, ensure_ascii=False) + "\n"
