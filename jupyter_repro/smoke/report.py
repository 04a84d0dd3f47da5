"""nb-smoke's reports: terminal text, JSON (docs/report-schema.md) and JUnit XML.

All three render the same :class:`~jupyter_repro.smoke.results.SmokeReport`; writes are
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
    tail = f" ({result.seconds:.1f} s, {result.mode})"
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
