"""``%track`` in a real kernel without the comm: notebook order from the saved file
(``JPY_SESSION_NAME``, as Jupyter Server sets it), deletions from ``deletedCells``,
notices under cells, what is not tracked, export, and the record read after the kernel
is gone."""

from __future__ import annotations

import json
import os
import re

import nbformat
import pytest
from track_frontend import Frontend

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
    assert "this run made cell(s) #1, a new cell stale" in out


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
