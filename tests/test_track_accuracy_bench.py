"""The accuracy benchmark's instrument, on tiny inline pairs (no corpus, no ipyflow).

``benchmarks/track_accuracy.py`` decides, for each one-cell edit, which cells must re-run
(fresh nbclient runs of both versions) and which cells ``%track`` flags (a real kernel
driven as JupyterLab drives it). These tests check both halves on pairs whose answer is
known by construction, so a figure in the README cannot come from a broken instrument.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


def _load():
    sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location("track_accuracy", BENCH / "track_accuracy.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["track_accuracy"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


ta = _load()


def _pair(cells, index, edited, kind="test"):
    return ta.Pair(f"inline:{kind}", kind, ta.Notebook("inline", cells), index, edited)


def _outcome(pair):
    original, edited = ta.run_fresh(pair.original), ta.run_fresh(pair.edited_notebook())
    truth = ta.must_rerun(pair, original, edited, set())
    tools = {"%track": ta.track_flags, "nothing": lambda p: set(),
             "rerun-below": ta.rerun_below}  # fmt: skip
    return truth, ta.judge(pair, truth, set(), tools)


def test_normalise_hides_addresses_and_the_folder():
    outs = [
        {"output_type": "stream", "name": "stdout", "text": "/tmp/x/a.txt <Obj at 0x7f3a9c>\n"},
        {"output_type": "execute_result", "data": {"text/plain": "3"}, "execution_count": 1},
        {"output_type": "error", "ename": "KeyError", "evalue": "'k'", "traceback": ["..."]},
    ]
    assert ta.normalise(outs, "/tmp/x") == (
        "stdout:<cwd>/a.txt <Obj at 0x?>\nexecute_result:3error:KeyError: 'k'"
    )


def test_one_print_split_over_several_stream_messages_is_one_output():
    # the kernel flushes stdout when it likes: `for v in L: print(v, end=' ')` may come as
    # one message or several; the truth must not call that a changed output
    one = [{"output_type": "stream", "name": "stdout", "text": "0 1 4 "}]
    split = [{"output_type": "stream", "name": "stdout", "text": t} for t in ("0 ", "1 4 ")]
    assert ta.normalise(one, "/x") == ta.normalise(split, "/x") == "stdout:0 1 4 "
    assert ta.same_output("stdout:0 stdout:1 4 ", "stdout:0 1 4 ")  # cached before the join
    assert not ta.same_output("stdout:0 1 4 ", "stdout:0 1 5 ")


def test_literal_edit_bumps_the_first_number_of_an_assignment():
    assert ta.literal_edits("print(1)\nx = [1, 2]  # one") == "print(1)\nx = [2, 2]  # one"
    assert ta.literal_edits("print(3)") is None


@pytest.mark.slow
def test_a_changed_value_must_rerun_its_reader_and_track_flags_it():
    pair = _pair(
        [("a", "x = 1"), ("b", "y = x + 1\nprint(y)"), ("c", "print('other')")], 0, "x = 2"
    )
    truth, outcome = _outcome(pair)
    assert truth == {1}  # the reader's output changed; the unrelated cell's did not
    assert outcome.safe == {"%track": True, ta.TRACK_WITH_INFO: True, "nothing": False,
                            "rerun-below": True}  # fmt: skip
    assert 1 in outcome.flagged["%track"]
    assert outcome.flagged["rerun-below"] == [1, 2]
    assert outcome.errors == {}


@pytest.mark.slow
def test_an_output_only_edit_needs_nothing_rerun():
    pair = _pair([("a", "x = 1"), ("b", "print(x)")], 0, "x = 1\nprint('hi')")
    truth, outcome = _outcome(pair)
    assert truth == set()
    assert all(outcome.safe.values())  # nothing to miss: every tool is safe
    assert outcome.flagged["nothing"] == [] and outcome.flagged["rerun-below"] == [1]


@pytest.mark.slow
def test_a_change_no_tool_can_see_is_a_miss_for_a_tool_that_flags_nothing():
    # the file is written by a child process: outside any kernel-side record
    write = "import subprocess, sys\nsubprocess.run([sys.executable, '-c', \"open('f.txt', 'w').write('{}')\"])"
    pair = _pair(
        [("a", write.format(1)), ("b", "print('between')"), ("c", "print(open('f.txt').read())")],
        0,
        write.format(2),
    )
    truth, outcome = _outcome(pair)
    assert truth == {2}
    assert outcome.safe["nothing"] is False and outcome.safe["rerun-below"] is True
    # %track's verdict is read, not assumed: safe exactly when it flagged the reader
    assert outcome.safe["%track"] == (2 in outcome.flagged["%track"])


@pytest.mark.slow
def test_a_stale_from_a_cell_below_is_counted_apart_as_information():
    # print(a) ran before `a = 3` below rebound `a`: a top-to-bottom run shows the same, so
    # %track's `flagged` leaves it out; the +info column (every verdict) still has it
    cells = [("c0", "n = 1"), ("c1", "a = 1"), ("c2", "print(a)"), ("c3", "a = 3")]
    truth, outcome = _outcome(_pair(cells, 0, "n = 2"))
    assert truth == set()
    assert outcome.flagged["%track"] == []
    assert outcome.flagged[ta.TRACK_WITH_INFO] == [2]
    assert outcome.safe["%track"] is True
