"""``%track`` in an in-process IPython shell: argument handling and failure behaviour."""

from __future__ import annotations

import pytest
from IPython.core.interactiveshell import InteractiveShell
from traitlets.config import Config

from jupyter_repro.tracking.magic import session_for


@pytest.fixture
def shell(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    config = Config()
    config.HistoryManager.hist_file = ":memory:"
    sh = InteractiveShell.instance(config=config)
    sh.run_cell("%load_ext jupyter_repro")
    yield sh
    sh.run_cell("%unload_ext jupyter_repro")
    InteractiveShell.clear_instance()


def test_report_before_tracking_says_so(shell, capsys):
    shell.run_cell("%track report")
    assert "nothing tracked yet; run %track on first" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("%track notices maybe", "takes 'on' or 'off'"),
        ("%track export", "needs --script FILE and/or --notebook FILE"),
        ("%track frobnicate", "invalid choice"),
    ],
)
def test_bad_arguments_are_refused_in_one_line(shell, capsys, line, says):
    shell.run_cell("%track on")
    result = shell.run_cell(line)
    captured = capsys.readouterr()
    assert not result.success
    assert says in captured.err + captured.out
    assert "Traceback" not in captured.err + captured.out


def test_an_internal_error_turns_tracking_off_with_one_line(shell, capsys):
    shell.run_cell("%track on")
    session = session_for(shell)
    session.order.frontend_cells = [object()]  # a corrupt order: judging it fails
    shell.run_cell("x = 1", store_history=True, cell_id="a")
    err = capsys.readouterr().err
    assert err.count("%track: internal error, tracking turned off") == 1
    assert "Traceback" not in err
    assert not session.enabled
    shell.run_cell("y = 2", store_history=True, cell_id="b")
    assert "internal error" not in capsys.readouterr().err


def test_off_removes_the_hooks_and_on_brings_them_back(shell):
    shell.run_cell("%track on")
    session = session_for(shell)
    shell.run_cell("x = 1", store_history=True, cell_id="a")
    shell.run_cell("%track off")
    shell.run_cell("x = 2", store_history=True, cell_id="a")
    assert len(session.tracker.state.events) == 1
    shell.run_cell("%track on")
    shell.run_cell("x = 3", store_history=True, cell_id="a")
    assert len(session.tracker.state.events) == 2


@pytest.mark.parametrize("stop", ["%track off", "%unload_ext jupyter_repro", "raise_in_hook"])
def test_tracking_stopped_inside_a_cell_stops_recording_file_accesses(shell, tmp_path, stop):
    """A cell that turns tracking off (or unloads it, or whose hook fails) never gets its
    post_run_cell: the audit hook must not go on recording every later cell's files."""
    from jupyter_repro.tracking import files

    shell.run_cell("%track on")
    session = session_for(shell)
    if stop == "raise_in_hook":
        session.order.frontend_cells = [object()]  # judging fails: tracking turns off
        shell.run_cell("open('a.txt', 'w').close()", store_history=True, cell_id="a")
    else:
        shell.run_cell(f"open('a.txt', 'w').close()\n{stop}", store_history=True, cell_id="a")
    assert not session.enabled
    shell.run_cell("open('b.txt', 'w').close()", store_history=True, cell_id="b")
    assert files._current is None


def test_the_tree_ipython_parsed_is_analysed_once_and_gives_the_same_analysis(shell):
    """%track takes the cell's syntax tree from IPython (``ast_transformers``) instead of
    parsing it again; the analysis must be the one a parse of the source gives, for plain
    cells, cells IPython rewrites (magics, a leading blank line) and cells that never
    parse; and tracking must leave the shell's own transformers working."""
    import ast

    from jupyter_repro import analysis

    class Double(ast.NodeTransformer):  # a user's transformer, after ours: 2 -> 4
        def visit_Constant(self, node):
            return ast.Constant(node.value * 2) if node.value == 2 else node

    shell.ast_transformers.append(Double())
    shell.run_cell("%track on")
    session = session_for(shell)
    assert shell.ast_transformers[0] is session._tree_hook
    cells = {
        "a": "base = 1\ndef f(k):\n    return [base + i for i in range(k)]\nout = f(2)",
        "b": "\n\nv = out[0] + base  # a leading blank line: IPython strips it",
        "c": "%time w = v * 2",
        "d": "z = (",  # never parses: no tree, the snapshot is taken in post_run_cell
        "e": "print(2)",
    }
    seen: dict[str, object] = {}
    real = analysis.analyze_cell

    def spy(source, transformed=False, tree=None):
        seen[source] = tree
        return real(source, transformed, tree)

    import jupyter_repro.tracking.tracker as tracker_module

    tracker_module.analyze_cell = spy
    try:
        for cid, src in cells.items():
            shell.run_cell(src, store_history=True, cell_id=cid)
    finally:
        tracker_module.analyze_cell = real
    assert isinstance(seen[cells["a"]], ast.Module)
    assert seen[cells["d"]] is None
    assert shell.user_ns["w"] == 4 * shell.user_ns["v"]  # Double ran inside %time too
    assert session.enabled and len(session.tracker.state.events) == 5
    assert not session.tracker.state.latest["a"].reads
    assert "base" in session.tracker.state.latest["b"].reads
    assert shell.user_ns["out"] == [1, 2, 3, 4]  # Double ran: range(2) became range(4)
    for src in cells.values():  # what the tree gave equals what a fresh parse gives
        given = real(src)
        analysis._ANALYSES.pop((src, False), None)
        fresh = real(src)
        assert real(src) is fresh  # cached
        if fresh.syntax_error is None:
            assert given == fresh, src
        else:
            assert given.syntax_error is not None
    shell.run_cell("%track off")
    assert session._tree_hook not in shell.ast_transformers
    assert isinstance(shell.ast_transformers[-1], Double)
