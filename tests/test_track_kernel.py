"""``%track`` in a real kernel without the comm: notebook order from the saved file
(``JPY_SESSION_NAME``, as Jupyter Server sets it), deletions from ``deletedCells``,
notices under cells, what is not tracked, export, and the record read after the kernel
is gone."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import nbformat
import pytest
from track_frontend import Frontend

from jupyter_repro.tracking.order import FrontendCell, OrderBook
from jupyter_repro.tracking.record import read_executions, read_record


def _write_notebook(path, cells):
    nb = nbformat.v4.new_notebook()
    for cid, kind, source in cells:
        cell = (nbformat.v4.new_markdown_cell if kind == "md" else nbformat.v4.new_code_cell)(
            source
        )
        cell.id = cid
        nb.cells.append(cell)
    nbformat.write(nb, str(path))


def _report(fe: Frontend) -> dict:
    reply = fe.execute("%track report --json")
    return json.loads(reply.stdout)


def _runs(fe: Frontend) -> int:
    return int(re.search(r"(\d+) runs tracked", fe.execute("%track status").stdout).group(1))


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A kernel serving ``analysis.ipynb``, loaded with ``%load_ext`` then ``%track on``."""
    folder = tmp_path_factory.mktemp("saved")
    nb = folder / "analysis.ipynb"
    _write_notebook(
        nb,
        [("a1", "code", "y = x + 1"), ("m", "md", "# notes"), ("b2", "code", "x = 1"),
         ("c3", "code", "print(y)")],
    )  # fmt: skip
    env = {**os.environ, "JPY_SESSION_NAME": str(nb)}
    fe = Frontend(env=env, cwd=str(folder))
    assert fe.execute("%load_ext jupyter_repro").status == "ok"
    on = fe.execute("%track on").stdout
    yield fe, nb, on
    fe.close()


def test_track_on_says_the_order_comes_from_the_saved_notebook(saved):
    fe, nb, on = saved
    assert on.startswith("%track on")
    assert "the saved notebook analysis.ipynb" in on
    assert str(nb.parent / ".jupyter_repro" / "analysis.ipynb.track.jsonl") in on
    assert "deleted cells from the execute requests" in fe.execute("%track status").stdout


def test_reading_a_name_set_below_prints_a_notice_under_the_cell(saved):
    fe, _, _ = saved
    fe.execute("%track reset")
    assert fe.execute("x = 1", "b2").stdout == ""
    out = fe.execute("y = x + 1", "a1").stdout
    assert "reads `x` from cell #3" in out
    assert "below — a top-to-bottom run would fail here [out_of_order]" in out
    report = _report(fe)
    assert report["summary"]["order_source"] == "file"
    assert [c["cell_id"] for c in report["cells"]] == ["a1", "b2", "c3"]
    assert [c["index"] for c in report["cells"]] == [0, 2, 3]  # the markdown cell counts


def test_a_run_that_changes_an_input_says_which_cells_it_made_stale(saved):
    fe, _, _ = saved
    fe.execute("%track reset")
    fe.execute("x = 1", "b2")
    fe.execute("y = x + 1", "a1")  # out of order in the saved notebook: a1 is above b2
    fe.execute("z = x * 2", "n1")  # a new cell, not saved yet
    out = fe.execute("x = 2", "b2").stdout
    # a1 sits above b2: a top-to-bottom run also runs it before b2, so this run does not
    # change what a1 shows (its stale is information); the new cell's place is unknown
    assert "this run made cell(s) a new cell stale" in out
    fe.execute("w = x + 3", "c3")  # below b2
    out = fe.execute("x = 5", "b2").stdout
    assert "this run made cell(s) a new cell, #4 stale" in out or (
        "this run made cell(s) #4, a new cell stale" in out
    ), out


def test_notices_can_be_silenced_per_cell_and_per_notebook(saved):
    fe, _, _ = saved
    fe.execute("%track reset")
    fe.execute("x = 1", "b2")
    assert "[out_of_order]" in fe.execute("y = x + 1", "a1").stdout
    assert fe.execute("# track: quiet\ny = x + 1", "a1").stdout == ""
    fe.execute("%track notices off")
    assert fe.execute("y = x + 1", "a1").stdout == ""
    fe.execute("%track notices on")
    assert "[out_of_order]" in fe.execute("y = x + 1", "a1").stdout


def test_deleted_cells_in_the_execute_metadata_reveal_hidden_state(saved):
    fe, _, _ = saved
    fe.execute("%reset -f", silent=True, store_history=False)
    fe.execute("%track reset")
    fe.execute("h = 10", "h1")
    fe.execute("z = h * 2", "h2")
    assert "hidden_state" not in json.dumps(_report(fe)["findings"])
    fe.delete_cells("h1")  # deleted in the UI; the kernel hears it with the next request
    fe.execute("w = 0", "h3")
    report = _report(fe)
    h2 = [f for f in report["findings"] if f["cell_id"] == "h2"]
    assert [f["verdict"] for f in h2] == ["hidden_state"]
    assert h2[0]["names"] == ["h"]
    assert "h1" not in [c["cell_id"] for c in report["cells"]]
    assert any("`h` was set by a deleted cell" in r for r in report["summary"]["reasons"])


def test_saving_an_edit_marks_the_cell_edited(saved):
    fe, nb, _ = saved
    fe.execute("%track reset")
    fe.execute("x = 1", "b2")
    fe.execute("y = x + 1", "a1")
    assert "edited" not in json.dumps(_report(fe)["findings"])
    _write_notebook(
        nb,
        [("a1", "code", "y = x + 1"), ("m", "md", "# notes"), ("b2", "code", "x = 2"),
         ("c3", "code", "print(y)")],
    )  # fmt: skip
    edited = [f["cell_id"] for f in _report(fe)["findings"] if f["verdict"] == "edited"]
    assert edited == ["b2"]


def test_silent_and_history_free_requests_are_not_tracked(saved):
    fe, _, _ = saved
    fe.execute("%track reset")
    fe.execute("s = 1", "s1")
    assert _runs(fe) == 1
    fe.execute("s = 2", "s1", silent=True)
    fe.execute("s = 3", "s1", store_history=False)
    assert _runs(fe) == 1
    fe.execute("s = 4", "s1")
    assert _runs(fe) == 2


@pytest.mark.slow  # starts its own kernel, to read the record after it is gone
def test_the_record_answers_what_ran_after_the_kernel_is_gone(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "JPY_SESSION_NAME"}
    fe = Frontend(env=env, cwd=str(tmp_path))
    try:
        fe.execute("%load_ext jupyter_repro")
        on = fe.execute("%track on").stdout
        assert "execution order only" in on
        fe.execute("data = [1, 2]", "c1")
        fe.execute("data.append(3)", "c2")
        fe.execute("total = sum(data) + missing", "c3")
        fe.execute("total = sum(data)")  # no cellId: a console, or an old frontend
        export = tmp_path / "ran.py"
        fe.execute(f"%track export --script {export} --notebook {tmp_path / 'ran.ipynb'}")
        fe.execute("%unload_ext jupyter_repro")
        fe.execute("after_unload = 1", "c9")  # hooks are gone: not recorded
    finally:
        fe.close()
    [record] = (tmp_path / ".jupyter_repro").glob("kernel-*.track.jsonl")
    lines = list(read_record(record))
    assert lines[0]["type"] == "session" and lines[0]["notebook"] is None
    events = read_executions(record)
    assert [e.source for e in events] == [
        "data = [1, 2]", "data.append(3)", "total = sum(data) + missing", "total = sum(data)",
    ]  # fmt: skip
    assert [e.cell_id for e in events[:3]] == ["c1", "c2", "c3"]
    assert events[3].cell_id.startswith("sha1:") and events[3].cell_id_source == "content_hash"
    assert [e.execution_count for e in events] == [3, 4, 5, 6]  # after %load_ext, %track on
    assert events[1].mutates == ["data"] and "data" in events[1].writes
    assert events[2].error.startswith("NameError") and events[2].missing_name == "missing"
    assert events[0].seen == {} and events[1].seen == {"data": 1}
    assert all(e.duration >= 0 and e.started > 0 for e in events)
    script = export.read_text()
    assert (
        script.index("data = [1, 2]")
        < script.index("data.append(3)")
        < script.index("total = sum(data)\n")
    )
    assert "# %% [3] cell c3 In [5]" in script and "raised NameError" in script
    nb = nbformat.read(str(tmp_path / "ran.ipynb"), as_version=4)
    assert [c.source for c in nb.cells] == [e.source for e in events]
    assert [c.metadata["jupyter_repro"]["cell_id"] for c in nb.cells[:3]] == ["c1", "c2", "c3"]


@pytest.mark.slow  # starts its own kernel with a fresh IPython profile
def test_the_documented_profile_configuration_loads_and_starts_tracking(tmp_path):
    profile = tmp_path / "ipython" / "profile_default"
    profile.mkdir(parents=True)
    (profile / "ipython_config.py").write_text(
        'c.InteractiveShellApp.extensions = ["jupyter_repro"]\n'
        'c.InteractiveShellApp.exec_lines = ["%track on"]\n'
    )
    env = {k: v for k, v in os.environ.items() if k != "JPY_SESSION_NAME"}
    env["IPYTHONDIR"] = str(tmp_path / "ipython")
    fe = Frontend(env=env, cwd=str(tmp_path))
    try:
        fe.execute("x = 1", "a")
        assert fe.execute("%track status").stdout.startswith("%track on: 1 runs tracked")
    finally:
        fe.close()


# -- found in review (were tests/test_track_review_fixes.py) ---------------------------
# Untracked (store_history=False) access to the kernel's tracking session.
SESSION = "from jupyter_repro.tracking.magic import _SESSIONS as _S; _s = next(iter(_S.values()))"


def _peek(fe: Frontend, expr: str) -> str:
    """Evaluate ``expr`` in the kernel without it being tracked; its printed value."""
    reply = fe.execute(f"{SESSION}\nprint({expr})", store_history=False)
    assert reply.status == "ok", reply.stderr
    return reply.stdout.strip()


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "JPY_SESSION_NAME"}
    env.update(extra)
    return env


# -- a kernel that knows its saved notebook (JPY_SESSION_NAME) --------------------------
@pytest.fixture(scope="module")
def work_nb(tmp_path_factory):
    folder = tmp_path_factory.mktemp("review_saved")
    nb = folder / "work.ipynb"
    _write_notebook(
        nb,
        [("a1", "code", "x = 1"), ("b2", "code", "y = x + 1"), ("c3", "code", "print(y)"),
         ("d4", "code", "print(y, x)")],
    )  # fmt: skip
    fe = Frontend(env=_env(JPY_SESSION_NAME=str(nb)), cwd=str(folder))
    assert fe.execute("%load_ext jupyter_repro").status == "ok"
    assert "the saved notebook work.ipynb" in fe.execute("%track on").stdout
    yield fe, folder
    fe.close()


def test_the_cell_after_a_reset_is_tracked_without_an_internal_error(work_nb):
    fe, _ = work_nb
    fe.execute("%track reset")
    assert fe.execute("q = 1", "n1").stderr == ""  # a cell the saved file does not have
    fe.execute("%track reset")
    run = fe.execute("r = 2", "n2")
    assert "internal error" not in run.stderr, run.stderr
    assert fe.execute("%track status").stdout.startswith("%track on: 1 runs tracked")
    ids = [c["cell_id"] for c in _report(fe)["cells"]]
    assert "n2" in ids and "n1" not in ids


def test_runs_without_a_cell_id_are_matched_to_the_saved_cells_with_that_source(work_nb):
    fe, folder = work_nb
    fe.execute("%track reset")
    for code in ("x = 1", "y = x + 1", "print(y)", "print(y, x)"):  # a console: no cellId
        assert fe.execute(code).stderr == ""
    report = _report(fe)
    assert [c["cell_id"] for c in report["cells"]] == ["a1", "b2", "c3", "d4"]
    assert [c["last_run_seq"] for c in report["cells"]] == [1, 2, 3, 4]
    assert report["findings"] == []
    assert report["summary"]["consistent"] is True, report["summary"]["reasons"]
    fe.execute("z = 3")  # no saved cell has this source: a content-hash id, a new cell
    [record] = (folder / ".jupyter_repro").glob("work.ipynb.track.jsonl")
    last = read_executions(record)[-5:]
    assert [e.cell_id_source for e in last] == ["source_match"] * 4 + ["content_hash"]
    assert last[-1].cell_id.startswith("sha1:")
    assert report["cells"][-1]["placed"] is True
    assert _report(fe)["cells"][-1]["placed"] is False


def test_an_export_to_an_unwritable_path_is_one_usage_error(work_nb, tmp_path):
    fe, _ = work_nb
    fe.execute("%track reset")
    fe.execute("x = 1", "a1")
    bad = "/nonexistent/dir/x.py"
    reply = fe.execute(f"%track export --script {bad}")
    assert reply.status == "error"
    assert reply.errors == [] and "Traceback" not in reply.stderr
    [line] = reply.stderr.strip().splitlines()
    assert line.startswith("UsageError: %track export: cannot write /nonexistent/dir/x.py")
    assert "No such file or directory" in line
    # the script is written, then the notebook fails: the message says what was written
    good = tmp_path / "ran.py"
    reply = fe.execute(f"%track export --script {good} --notebook {tmp_path}")
    assert reply.status == "error" and f"{good} was written" in reply.stderr
    assert good.read_text().count("# %%") == 1


def test_exports_replace_the_file_atomically(work_nb, tmp_path):
    fe, _ = work_nb
    fe.execute("%track reset")
    fe.execute("x = 1", "a1")
    out = tmp_path / "ran.py"
    out.write_text("old content\n")
    os.chmod(out, 0o640)
    assert fe.execute(f"%track export --script {out}").status == "ok"
    assert "x = 1" in out.read_text() and "old content" not in out.read_text()
    assert out.stat().st_mode & 0o777 == 0o640  # the replaced file keeps its mode
    new = tmp_path / "new.ipynb"
    assert fe.execute(f"%track export --notebook {new}").status == "ok"
    assert nbformat.read(str(new), as_version=4).cells[0].source == "x = 1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new.ipynb", "ran.py"]  # no temp


def test_the_topmost_cell_with_the_same_source_takes_a_run_without_cell_id():
    book = OrderBook()
    assert book.cell_for_source("x = 1") is None  # no notebook known
    book.set_frontend_cells(
        [FrontendCell("m", "markdown", "x = 1"), FrontendCell("a", "code", "x = 1"),
         FrontendCell("b", "code", "x = 1"), FrontendCell("c", "code", "y = 2")]
    )  # fmt: skip
    assert book.cell_for_source("x = 1") == "a"
    assert book.cell_for_source("x = 1\n") is None  # exactly the same source only
    book.note_request_metadata({"deletedCells": ["a"]})
    assert book.cell_for_source("x = 1") == "b"


# -- a kernel with no notebook file, then a frontend comm ---------------------------------
@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    fe = Frontend(env=_env(), cwd=str(tmp_path_factory.mktemp("review_plain")))
    assert fe.execute("%load_ext jupyter_repro").status == "ok"
    fe.execute("%track on")
    yield fe
    fe.close()


def test_reset_in_a_kernel_without_notebook_keeps_tracking(plain):
    fe = plain
    fe.execute("x = 1", "c1")
    fe.execute("%track reset")
    run = fe.execute("y = 2", "c2")
    assert "internal error" not in run.stderr, run.stderr
    assert [c["cell_id"] for c in _report(fe)["cells"]] == ["c2"]
    assert _peek(fe, "_s.enabled") == "True"


# -- more than 1,000 runs, with a record folder that cannot be written --------------------
@pytest.fixture(scope="module")
def many_runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("review_many")
    (folder / ".jupyter_repro").write_text("a file where the record folder would go")
    fe = Frontend(env=_env(), cwd=str(folder))
    fe.execute("%load_ext jupyter_repro")
    fe.execute("%track on")
    for i in range(1103):
        fe.execute(f"x = {i}", "a")
    yield fe, folder
    fe.close()


@pytest.mark.slow  # 1,103 runs through a kernel
def test_status_counts_every_run_not_the_ones_still_in_memory(many_runs):
    fe, _ = many_runs
    status = fe.execute("%track status").stdout
    assert status.startswith("%track on: 1103 runs tracked"), status
    assert "not writable" in status
    assert int(_peek(fe, "len(_s.tracker.state.events)")) < 1103  # pruned


@pytest.mark.slow  # 1,103 runs through a kernel
def test_an_export_from_pruned_memory_says_it_is_incomplete(many_runs, tmp_path):
    fe, _ = many_runs
    kept = int(_peek(fe, "len(_s.tracker.state.events)"))
    script, notebook = tmp_path / "ran.py", tmp_path / "ran.ipynb"
    line = fe.execute(f"%track export --script {script} --notebook {notebook}").stdout.strip()
    assert re.search(rf"INCOMPLETE: the record file is unusable \(.+\).* {kept} of 1103 runs", line)
    header = script.read_text().splitlines()[1]
    assert header.startswith("# INCOMPLETE") and f"{kept} of 1103 runs" in header
    nb = nbformat.read(str(notebook), as_version=4)
    assert "1103 runs" in nb.metadata["jupyter_repro"]["note"]
    assert nb.cells[0].cell_type == "markdown" and len(nb.cells) == kept + 1


# -- docs/tracking.md shows the notices the kernel really prints ----------------------------
DOC = Path(__file__).resolve().parents[1] / "docs" / "tracking.md"
NOTEBOOK = [("A", "df = [1, 2, 3]"), ("B", "n = len(df)"), ("C", "top = df[:2]"),
            ("D", "df = [4, 5]"), ("E", "print(w)"), ("F", "w = n * 2")]  # fmt: skip


def test_the_documented_notices_are_what_the_kernel_prints(tmp_path):
    text = DOC.read_text(encoding="utf-8")
    block = re.search(r"<!-- notices -->\s*```\n(.*?)\n```", text, re.DOTALL)
    assert block, "no <!-- notices --> block in docs/tracking.md"
    fe = Frontend(env=_env(), cwd=str(tmp_path))
    try:
        fe.execute("%load_ext jupyter_repro")  # In [1]
        fe.execute("%track on")  # In [2]
        fe.open_comm({"type": "hello"})
        fe.send_notebook(NOTEBOOK)
        # with a frontend attached notices stay out of the outputs unless asked for
        fe.send({"type": "set_notices", "enabled": True})
        source = dict(NOTEBOOK)
        printed = []
        for cell in "ABCDBFE":  # In [3] ... In [9]
            out = fe.execute(source[cell], cell).stdout
            printed += [line for line in out.splitlines() if line.startswith("%track:")]
    finally:
        fe.close()
    assert printed == block.group(1).splitlines()
