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
