"""The JSONL execution record survives crashes, and the analysis additions it relies on."""

from __future__ import annotations

import stat
import subprocess
import sys
import textwrap

from jupyter_repro.analysis import analyze_cell
from jupyter_repro.tracking.record import (
    ExecutionEvent,
    RecordWriter,
    read_executions,
    read_record,
    record_path,
)


def _event(seq: int) -> ExecutionEvent:
    return ExecutionEvent(seq, f"c{seq}", "frontend", seq, 1.0, f"x = {seq}", "h")


def test_record_lives_beside_the_notebook(tmp_path):
    nb = tmp_path / "work" / "analysis.ipynb"
    assert (
        record_path(nb, "/elsewhere", 0)
        == tmp_path / "work" / ".jupyter_repro" / "analysis.ipynb.track.jsonl"
    )
    fallback = record_path(None, tmp_path, 0)
    assert fallback.parent == tmp_path / ".jupyter_repro" and fallback.name.startswith("kernel-")


def test_a_torn_last_line_is_skipped_and_the_next_writer_starts_clean(tmp_path):
    path = tmp_path / ".jupyter_repro" / "nb.track.jsonl"
    writer = RecordWriter(path)
    writer.append(_event(1).to_json())
    writer.close()
    with open(path, "ab") as fh:  # a kernel killed in the middle of a write
        fh.write(b'{"type":"execution","seq":2,"cell_')
    assert [e.seq for e in read_executions(path)] == [1]
    writer = RecordWriter(path)
    writer.append(_event(3).to_json())
    writer.close()
    assert [e.seq for e in read_executions(path)] == [1, 3]
    assert path.read_bytes().count(b"\n") == 3  # the torn line was terminated, not glued


def test_a_killed_process_leaves_only_whole_lines(tmp_path):
    path = tmp_path / "r.jsonl"
    script = textwrap.dedent(
        f"""
        import os, signal
        from jupyter_repro.tracking.record import RecordWriter
        w = RecordWriter(__import__("pathlib").Path({str(path)!r}))
        for i in range(2000):
            w.append({{"type": "execution", "seq": i, "pad": "x" * 5000}})
            if i == 1500:
                os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], check=False)
    assert proc.returncode == -9
    seqs = [o["seq"] for o in read_record(path)]
    assert seqs == list(range(1501))


def test_an_unwritable_folder_does_not_break_tracking(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    writer = RecordWriter(blocker / ".jupyter_repro" / "x.jsonl")
    writer.append({"type": "session"})
    assert writer.error is not None
    writer.append({"type": "session"})  # still no exception


def test_events_round_trip_and_ignore_unknown_fields():
    data = _event(4).to_json()
    data["added_in_a_later_version"] = True
    assert ExecutionEvent.from_json(data) == _event(4)


# -- analysis additions used by %track ---------------------------------------------------
def test_plain_alias_assignments_are_listed():
    assert analyze_cell("b = a\nc = d = a\ne = a.copy()").aliases == (
        ("b", "a"),
        ("c", "a"),
        ("d", "a"),
    )


def test_literal_file_paths_read_and_written_are_found():
    a = analyze_cell(
        textwrap.dedent(
            """
            import numpy as np, pandas as pd, joblib
            from pathlib import Path
            df = pd.read_csv("data/in.csv")
            df.to_csv("./out/clean.csv", index=False)
            np.save("arr.npy", df.values)
            arr = np.load("arr.npy")
            with open("log.txt", "a") as fh:
                fh.write("x")
            cfg = open("cfg.json").read()
            text = Path("notes.md").read_text()
            Path("report.md").write_text(text)
            joblib.dump(arr, "model.pkl")
            plt_name = f"{df}.png"
            open(plt_name, "w")
            """
        )
    )
    assert a.file_reads == {"data/in.csv", "arr.npy", "cfg.json", "notes.md"}
    assert a.file_writes == {"out/clean.csv", "arr.npy", "log.txt", "report.md", "model.pkl"}


def test_open_modes_decide_read_or_write():
    assert analyze_cell("open('a', 'r+')").file_reads == {"a"}
    assert analyze_cell("open('a', 'r+')").file_writes == {"a"}
    assert analyze_cell("open('a', mode='wb')").file_reads == frozenset()
    assert analyze_cell("open('a', mode=m)").file_writes == {"a"}


def test_functions_that_mutate_a_parameter_and_the_names_passed_to_them():
    a = analyze_cell(
        "def fill(xs, n, d):\n    xs.append(n)\n    d['k'] = n\n    n += 1\nfill(items, 3, table)"
    )
    assert a.function_mutates == {"fill": frozenset({0, 2})}
    assert a.call_args == (("fill", 0, "items"), ("fill", 2, "table"))
    assert analyze_cell("def pure(xs):\n    return len(xs)").function_mutates == {}


def test_deleting_a_name_the_cell_did_not_bind_needs_it_to_exist():
    assert analyze_cell("del x").deletes_existing == {"x"}
    assert analyze_cell("x = 1\ndel x").deletes_existing == frozenset()
    assert analyze_cell("open('a/../b.txt')").file_reads == {"b.txt"}  # normalised


def test_method_calls_keep_the_method_name():
    a = analyze_cell("model.fit(X, y)\ndf.head()\nxs.append(1)")
    assert a.method_call_names == {("model", "fit"), ("df", "head")}
    assert a.mutates == {"xs"}  # unchanged: fit is a hint, not an analysis mutation


def test_names_passed_to_calls_through_attributes_are_listed():
    a = analyze_cell("random.shuffle(xs)\nheapq.heappush(h, item)\nf(z)")
    assert a.method_call_args == (
        ("shuffle", 0, "xs"),
        ("heappush", 0, "h"),
        ("heappush", 1, "item"),
    )
    assert a.call_args == (("f", 0, "z"),)


def test_the_record_is_private_and_ignored_by_git(tmp_path):
    """The record keeps every cell's source: folder 0700 with a ``.gitignore`` of ``*``,
    file 0600; an older world-readable record and folder are narrowed (issue 15)."""
    path = record_path(tmp_path / "nb.ipynb", tmp_path, 0.0)
    writer = RecordWriter(path)
    writer.append({"type": "session", "secret": "typed by the user"})
    writer.close()
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert (path.parent / ".gitignore").read_text().splitlines()[-1] == "*"
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    listed = subprocess.run(
        ["git", "-C", str(tmp_path), "status", "--porcelain", "--untracked-files=all"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert ".jupyter_repro" not in listed
    # an older record, created readable by everyone
    old = tmp_path / "old"
    (old / ".jupyter_repro").mkdir(parents=True, mode=0o755)
    (old / ".jupyter_repro").chmod(0o755)
    older = record_path(old / "nb.ipynb", old, 0.0)
    older.write_text('{"type": "session"}\n')
    older.chmod(0o644)
    again = RecordWriter(older)
    again.append({"type": "execution"})
    again.close()
    assert stat.S_IMODE(older.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(older.stat().st_mode) == 0o600
    assert len(older.read_text().splitlines()) == 2


def test_tracking_imports_nothing_from_the_package_root_and_its_errors_are_repro_errors():
    """``__version__`` comes from the ``_version.py`` leaf (which hatch reads too), and
    ``%track``'s errors belong to the one ``ReproError`` hierarchy (issue 16)."""
    import ast
    import re
    from pathlib import Path

    import jupyter_repro
    from jupyter_repro.errors import ExportError, ProtocolError, ReproError
    from jupyter_repro.tracking import comm, export

    root = Path(jupyter_repro.__file__).parent
    for path in sorted((root / "tracking").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 2:
                assert node.module, f"{path.name} imports from the package root"
    pyproject = (root.parent / "pyproject.toml").read_text(encoding="utf-8")
    hatch = re.search(r'\[tool\.hatch\.version\]\npath = "([^"]+)"', pyproject)
    version_file = root.parent / hatch.group(1)
    assert version_file == root / "_version.py"
    assert f'__version__ = "{jupyter_repro.__version__}"' in version_file.read_text()
    assert comm.kernel_info()["version"] == jupyter_repro.__version__
    assert comm.ProtocolError is ProtocolError and export.ExportError is ExportError
    assert issubclass(ProtocolError, ReproError) and issubclass(ExportError, ReproError)
    assert str(ProtocolError("'cells' must be a list", "notebook")) == "'cells' must be a list"
