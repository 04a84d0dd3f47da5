"""The build step that puts the JupyterLab extension into the wheel
(``jupyter_repro/_labextension_build.py``): it builds when it can, and otherwise lets
nb-smoke and %track install without the extension, saying why."""

from __future__ import annotations

import json

import pytest

from jupyter_repro._labextension_build import build


def test_a_source_tree_without_labextension_builds_without_it(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.warns(UserWarning, match=r"labextension/package.json is not in this source tree"):
        build("wheel", "standard", path="labextension")
    assert "building without the JupyterLab extension" in capsys.readouterr().err
    assert not (tmp_path / "jupyter_repro" / "labextension").exists()


def test_a_machine_without_node_builds_without_it(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "labextension").mkdir()
    (tmp_path / "labextension" / "package.json").write_text(json.dumps({"name": "x"}))
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))  # no `node` anywhere on it
    with pytest.warns(UserWarning, match=r"Node.js \(`node`\) is not on PATH"):
        build("wheel", "standard", path="labextension")
    assert "nb-smoke and %track work" in capsys.readouterr().err


def test_the_labextension_verdict_table_is_generated_from_verdicts_py():
    """labextension/src/verdictTable.ts is ``python -m jupyter_repro.verdicts`` output: the
    badges, labels, descriptions and information flags are written once, in Python."""
    from pathlib import Path

    from jupyter_repro.verdicts import BADGES, INFORMATION, Verdict, typescript_table

    ts = Path(__file__).resolve().parents[1] / "labextension" / "src" / "verdictTable.ts"
    assert ts.read_text(encoding="utf-8") == typescript_table(), (
        "regenerate: python -m jupyter_repro.verdicts > labextension/src/verdictTable.ts"
    )
    tracked = {Verdict.OUT_OF_ORDER, Verdict.STALE, Verdict.HIDDEN_STATE, Verdict.EDITED,
               Verdict.NEVER_RUN, Verdict.UNDEFINED_NAME, Verdict.MULTIPLE_DEFINITIONS}  # fmt: skip
    assert set(BADGES) == tracked
    assert {Verdict.MULTIPLE_DEFINITIONS} == INFORMATION
    for verdict in tracked:
        assert f"    description: '{verdict.description}'," in ts.read_text(encoding="utf-8")
