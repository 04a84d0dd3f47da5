"""Regressions found in review of ``%track``, each through a real kernel: reset and the
order caches, export failures and atomic writes, runs without ``cellId`` matched to the
saved notebook, the run counter, comm handler failures and dead comms, and an export
from memory that cannot be complete."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import nbformat
import pytest
from track_frontend import Frontend

from jupyter_repro.tracking.order import FrontendCell, OrderBook
from jupyter_repro.tracking.record import read_executions

# Untracked (store_history=False) access to the kernel's tracking session.
SESSION = "from jupyter_repro.tracking.magic import _SESSIONS as _S; _s = next(iter(_S.values()))"


def _peek(fe: Frontend, expr: str) -> str:
    """Evaluate ``expr`` in the kernel without it being tracked; its printed value."""
    reply = fe.execute(f"{SESSION}\nprint({expr})", store_history=False)
    assert reply.status == "ok", reply.stderr
    return reply.stdout.strip()


def _report(fe: Frontend) -> dict:
    return json.loads(fe.execute("%track report --json").stdout)


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "JPY_SESSION_NAME"}
    env.update(extra)
    return env


def _write_notebook(path, cells):
    nb = nbformat.v4.new_notebook()
    for cid, source in cells:
        cell = nbformat.v4.new_code_cell(source)
        cell.id = cid
        nb.cells.append(cell)
    nbformat.write(nb, str(path))


# -- a kernel that knows its saved notebook (JPY_SESSION_NAME) --------------------------
@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    folder = tmp_path_factory.mktemp("review_saved")
    nb = folder / "work.ipynb"
    _write_notebook(
        nb, [("a1", "x = 1"), ("b2", "y = x + 1"), ("c3", "print(y)"), ("d4", "print(y, x)")]
    )
    fe = Frontend(env=_env(JPY_SESSION_NAME=str(nb)), cwd=str(folder))
    assert fe.execute("%load_ext jupyter_repro").status == "ok"
    assert "the saved notebook work.ipynb" in fe.execute("%track on").stdout
    yield fe, folder
    fe.close()


def test_the_cell_after_a_reset_is_tracked_without_an_internal_error(saved):
    fe, _ = saved
    fe.execute("%track reset")
    assert fe.execute("q = 1", "n1").stderr == ""  # a cell the saved file does not have
    fe.execute("%track reset")
    run = fe.execute("r = 2", "n2")
    assert "internal error" not in run.stderr, run.stderr
    assert fe.execute("%track status").stdout.startswith("%track on: 1 runs tracked")
    ids = [c["cell_id"] for c in _report(fe)["cells"]]
    assert "n2" in ids and "n1" not in ids


def test_runs_without_a_cell_id_are_matched_to_the_saved_cells_with_that_source(saved):
    fe, folder = saved
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


def test_an_export_to_an_unwritable_path_is_one_usage_error(saved, tmp_path):
    fe, _ = saved
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


def test_exports_replace_the_file_atomically(saved, tmp_path):
    fe, _ = saved
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


def test_after_a_reset_runs_are_newer_than_the_frontends_cells(plain):
    fe = plain
    fe.open_comm({"type": "hello", "protocol": "1.0"})
    fe.execute("%track reset")
    fe.execute("a = 1", "A")
    fe.execute("b = a", "B")
    fe.send_notebook([("A", "a = 1"), ("B", "b = a")])  # the frontend's seq is now 3
    [fresh] = fe.execute("%track reset").comm  # frontends drop the old verdicts
    assert fresh["type"] == "report" and fresh["trigger"] is None
    assert [c["last_run_seq"] for c in fresh["cells"]] == [None, None]
    assert _peek(fe, "_s.order.frontend_seq") == "1"
    run = fe.execute("n = 5", "N")  # a new cell the frontend has not sent yet
    assert "internal error" not in run.stderr
    [pushed] = [m for m in run.comm if m["type"] == "report"]
    cells = {c["cell_id"]: c for c in pushed["cells"]}
    assert cells["N"]["placed"] is False and cells["N"]["last_run_seq"] == 1  # not "deleted"
    assert cells["A"]["last_run_seq"] is None


def test_a_failing_comm_handler_replies_error_and_tracking_goes_on(plain):
    fe = plain
    fe.open_comm({"type": "hello", "protocol": "1.0"})
    fe.execute(f"{SESSION}\n_s._saved_judge = _s.judge\n_s.judge = lambda *a: 1 / 0",
               store_history=False)  # fmt: skip
    reply = fe.send({"type": "request_report", "protocol": "1.0"})
    [error] = reply.comm
    assert error["type"] == "error" and error["in_reply_to"] == "request_report"
    assert error["message"].startswith("internal error in the kernel's %track")
    assert "ZeroDivisionError" in error["message"]
    fe.execute(f"{SESSION}\n_s.judge = _s._saved_judge", store_history=False)
    assert _peek(fe, "_s.enabled") == "True"
    assert fe.send({"type": "request_report"}).comm[0]["type"] == "report"
    assert [m["type"] for m in fe.execute("k = 1", "K").comm] == ["report"]


def test_closed_and_broken_comms_are_dropped(plain):
    fe = plain
    fe.open_comm({"type": "hello"})
    assert int(_peek(fe, "len(_s.channel.comms)")) >= 1
    fe.open_comm({"type": "hello"})
    closed_by_frontend = fe.comm_id
    fe.close_comm()  # ipykernel calls the comm's close callback: forgotten at once
    assert closed_by_frontend not in _peek(fe, "[c.comm_id for c in _s.channel.comms]")
    # closed on the kernel side (no callback then): dropped at the next send
    fe.execute(f"{SESSION}\n[c.close() for c in list(_s.channel.comms)]", store_history=False)
    assert fe.execute("m = 0", "M").stderr == ""
    assert _peek(fe, "len(_s.channel.comms)") == "0"
    fe.open_comm({"type": "hello"})
    fe.execute(
        f"{SESSION}\nclass _Dead:\n    def send(self, m):\n        raise OSError('gone')\n"
        "_s.channel.comms.insert(0, _Dead())",
        store_history=False,
    )
    run = fe.execute("m = 1", "M")
    assert run.stderr == "" and [m["type"] for m in run.comm] == ["report"]
    assert _peek(fe, "[type(c).__name__ for c in _s.channel.comms]") != "[]"
    assert "_Dead" not in _peek(fe, "[type(c).__name__ for c in _s.channel.comms]")
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
        source = dict(NOTEBOOK)
        printed = []
        for cell in "ABCDBFE":  # In [3] ... In [9]
            out = fe.execute(source[cell], cell).stdout
            printed += [line for line in out.splitlines() if line.startswith("%track:")]
    finally:
        fe.close()
    assert printed == block.group(1).splitlines()
