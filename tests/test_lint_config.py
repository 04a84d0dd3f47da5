"""nb-smoke as a linter people keep on: rule selection, [tool.nb-smoke] in pyproject.toml,
``# nb-smoke: ignore`` comments, GitHub annotations and SARIF; run as a user runs them
(the installed CLI in a subprocess, a real pyproject.toml)."""

from __future__ import annotations

import json
import re

import nbformat
import pytest
from helpers import make_notebook, run_cli, smoke_json

from jupyter_repro.smoke.lint import (
    DEFAULT_RULES,
    RULES,
    RuleError,
    cell_suppressions,
    lint_cells,
    resolve_rules,
)

# x rebound in two cells and read in a third (multiple_definitions, opt-in); a random draw
# with no seed (unseeded_random); a name read that nothing defines, in a cell that ran
# (hidden_state).
CELLS = (
    ("x = 1", [], 1),
    ("x = 2", [], 2),
    ("import random\nprint(x, random.random())", [], 3),
    ("print(threshold)", [], 4),
)


def verdicts(report: dict) -> set[tuple[str, int]]:
    return {(f["verdict"], f["cell_index"]) for f in report["notebooks"][0]["findings"]}


def write_config(folder, body: str):
    (folder / "pyproject.toml").write_text(f'[project]\nname = "p"\n\n[tool.nb-smoke]\n{body}\n')


# -- rule selection ------------------------------------------------------------------


def test_default_rules_leave_multiple_definitions_opt_in():
    assert "multiple_definitions" not in DEFAULT_RULES
    assert set(RULES) - {"multiple_definitions"} == DEFAULT_RULES
    assert resolve_rules(extend_select=["multiple_definitions"]) == set(RULES)
    assert resolve_rules(select=["ALL"], ignore=["home_path"]) == set(RULES) - {"home_path"}
    assert resolve_rules(select=["hidden_state"]) == {"hidden_state"}
    with pytest.raises(RuleError, match="unknown rule 'hiden_state'"):
        resolve_rules(select=["hiden_state"])


def test_cli_select_ignore_and_extend_select(tmp_path):
    path = make_notebook(tmp_path / "n.ipynb", *CELLS)
    _, default = smoke_json(tmp_path, "--lint-only", path)
    assert verdicts(default) == {("unseeded_random", 2), ("hidden_state", 3)}
    _, extended = smoke_json(
        tmp_path, "--lint-only", "--extend-select", "multiple_definitions", path
    )
    assert ("multiple_definitions", 0) in verdicts(extended)
    _, chosen = smoke_json(
        tmp_path, "--lint-only", "--select", "ALL", "--ignore", "unseeded_random,hidden_state",
        path,
    )  # fmt: skip
    assert verdicts(chosen) == {("multiple_definitions", 0), ("multiple_definitions", 1)}
    bad = run_cli("nb-smoke", "--lint-only", "--select", "hidden", path)
    assert bad.returncode == 2
    assert "unknown rule 'hidden'" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


# -- [tool.nb-smoke] -------------------------------------------------------------------


def test_config_in_the_nearest_pyproject_applies_and_the_command_line_wins(tmp_path):
    project = tmp_path / "project"
    nbs = project / "notebooks" / "deep"
    path = make_notebook(nbs / "n.ipynb", *CELLS)
    write_config(
        project,
        'lint-only = true\nselect = ["ALL"]\nignore = ["unseeded_random"]\nstrict = true',
    )
    # A pyproject.toml without the table, nearer the notebook, is passed over (as ruff does).
    (project / "notebooks" / "pyproject.toml").write_text('[project]\nname = "inner"\n')
    proc, report = smoke_json(tmp_path, path, cwd=tmp_path)
    assert report["notebooks"][0]["mode"] == "lint", "lint-only came from the file"
    assert verdicts(report) == {
        ("multiple_definitions", 0), ("multiple_definitions", 1), ("hidden_state", 3)
    }  # fmt: skip
    assert proc.returncode == 1, "strict = true from the file"
    # The command line overrides the file: --select replaces the file's select.
    proc, report = smoke_json(tmp_path, "--select", "hidden_state", path, cwd=tmp_path)
    assert verdicts(report) == {("hidden_state", 3)}
    # --isolated ignores the file: the notebook is run, not only linted.
    proc, report = smoke_json(tmp_path, "--isolated", "--lint-only", path, cwd=tmp_path)
    assert verdicts(report) == {("unseeded_random", 2), ("hidden_state", 3)}


def test_config_options_reach_the_run(tmp_path):
    project = tmp_path / "p"
    path = make_notebook(project / "slow.ipynb", "import time\ntime.sleep(60)")
    write_config(project, "timeout = 3\nno-lint = true")
    _proc, report = smoke_json(tmp_path, path, timeout=120)
    nb = report["notebooks"][0]
    assert nb["status"] == "timed_out" and "exceeded 3 s" in nb["failure"]["evalue"]
    assert nb["findings"] == []


def test_each_notebook_gets_its_own_projects_config(tmp_path):
    a = make_notebook(tmp_path / "a" / "n.ipynb", *CELLS)
    b = make_notebook(tmp_path / "b" / "n.ipynb", *CELLS)
    write_config(tmp_path / "a", 'lint-only = true\nselect = ["hidden_state"]')
    write_config(tmp_path / "b", 'lint-only = true\nselect = ["unseeded_random"]')
    _, report = smoke_json(tmp_path, a, b, cwd=tmp_path)
    found = {
        n["path"].split("/")[-2]: {f["verdict"] for f in n["findings"]} for n in report["notebooks"]
    }
    assert found == {"a": {"hidden_state"}, "b": {"unseeded_random"}}


@pytest.mark.parametrize(
    ("body", "key", "cause"),
    [
        ("timeout = 'soon'", "timeout", "must be a number"),
        ("jobs = 1.5", "jobs", "must be an integer"),
        ("mode = 'cluster'", "mode", "must be one of script, kernel"),
        ("fast = 'yes'", "fast", "must be true or false"),
        ("select = ['hidden_state', 'typo_rule']", "select", "unknown rule 'typo_rule'"),
        ("colour = true", "colour", "unknown key"),
        ("timeout = ", None, "invalid TOML"),
        # right type, wrong value: checked where the command line's are, still named
        ("timeout = -1", "timeout", "must be positive"),
        ("jobs = 0", "jobs", "must be at least 1"),
        ("repeat = 0", "repeat", "must be at least 1"),
    ],
)
def test_config_errors_are_one_line_naming_file_and_key_exit_2(tmp_path, body, key, cause):
    path = make_notebook(tmp_path / "p" / "n.ipynb", "x = 1")
    write_config(tmp_path / "p", body)
    proc = run_cli("nb-smoke", "--lint-only", path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert str(tmp_path / "p" / "pyproject.toml") in lines[0] and cause in lines[0]
    if key:
        assert f"[tool.nb-smoke] {key}:" in lines[0]


# -- inline suppression ------------------------------------------------------------------


def test_suppression_comments_are_read_from_comments_only():
    assert cell_suppressions("x = 1") == (None, [])
    assert cell_suppressions("print(t)  # nb-smoke: ignore")[0] == set(RULES)
    rules, unknown = cell_suppressions("# NB-SMOKE: ignore[hidden_state, bogus , home_path]\n")
    assert rules == {"hidden_state", "home_path"} and unknown == ["bogus"]
    assert cell_suppressions("s = '# nb-smoke: ignore'")[0] is None, "a string is not a comment"
    assert cell_suppressions("%time f()  # nb-smoke: ignore[hidden_state]")[0] == {"hidden_state"}


def test_inline_suppression_silences_the_cell_or_the_named_rules(tmp_path):
    nb = nbformat.read(
        make_notebook(
            tmp_path / "n.ipynb",
            ("import random\nprint(random.random())  # nb-smoke: ignore", [], 1),
            ("print(threshold, '/home/ana/x')  # nb-smoke: ignore[home_path]", [], 2),
            ("print(other)\n# nb-smoke: ignore[hidden_state, unseeded_randm]", [], 3),
        ),
        4,
    )
    outcome = lint_cells(nb)
    assert [(f.verdict.value, f.cell_index) for f in outcome.findings] == [("hidden_state", 1)]
    assert outcome.suppressed == 3
    assert (
        outcome.notes == [(2, outcome.notes[0][1])]
        and "ignore[unseeded_randm]` names no rule" in outcome.notes[0][1]
    )


def test_unknown_rule_in_a_comment_is_a_warning_on_the_command_line(tmp_path):
    path = make_notebook(tmp_path / "n.ipynb", ("y = 1  # nb-smoke: ignore[hiden_state]", [], 1))
    proc = run_cli("nb-smoke", "--lint-only", path)
    assert proc.returncode == 0
    assert "warning: cell 0: `# nb-smoke: ignore[hiden_state]` names no rule" in proc.stdout
    assert run_cli("nb-smoke", "--lint-only", "--strict", path).returncode == 1


# -- GitHub annotations and SARIF -------------------------------------------------------


def test_github_output_annotates_failures_and_findings_at_their_cell(tmp_path):
    path = make_notebook(
        tmp_path / "n.ipynb",
        ("import random\nprint(random.random())", [], 1),
        "raise ValueError('bad value, really: 100%')",
    )
    proc = run_cli("nb-smoke", "--output-format", "github", "n.ipynb", cwd=tmp_path)
    assert proc.returncode == 1
    lines = proc.stdout.splitlines()
    errors = [ln for ln in lines if ln.startswith("::error ")]
    warns = [ln for ln in lines if ln.startswith("::warning ")]
    text = path.read_text()
    cell1_line = text.count("\n", 0, [m.start() for m in re.finditer('"cell_type"', text)][1]) + 1
    assert errors == [
        f"::error file=n.ipynb,line={cell1_line},title=nb-smoke%3A cell 1%2C line 1 failed::"
        "cell 1, line 1: ValueError: bad value, really: 100%25"
    ]
    assert len(warns) == 1 and warns[0].startswith("::warning file=n.ipynb,line=")
    assert "title=nb-smoke unseeded_random%3A cell 0::cell 0: unseeded_random: line 2:" in warns[0]
    assert lines[-1].startswith("nb-smoke: 0 passed, 1 failed"), "the summary stays"
    assert not any(ln.startswith(("PASS", "FAIL")) for ln in lines)


def test_sarif_report_has_the_required_structure(tmp_path):
    make_notebook(
        tmp_path / "n.ipynb",
        ("try:\n    print(threshold)\nexcept NameError:\n    pass", [], 1),
        "1/0",
    )
    sarif = tmp_path / "out" / "r.sarif"
    (tmp_path / "out").mkdir()
    proc = run_cli("nb-smoke", "--sarif", sarif, "n.ipynb", cwd=tmp_path)
    assert proc.returncode == 1
    log = json.loads(sarif.read_text())
    assert log["version"] == "2.1.0" and log["$schema"].endswith("sarif-2.1.0.json")
    (run,) = log["runs"]
    driver = run["tool"]["driver"]
    assert driver["name"] == "nb-smoke" and driver["version"]
    rule_ids = [r["id"] for r in driver["rules"]]
    assert len(rule_ids) == len(set(rule_ids))
    by_rule = {r["ruleId"]: r for r in run["results"]}
    assert set(by_rule) == {"cell_failed", "hidden_state"}
    for result in run["results"]:
        assert rule_ids[result["ruleIndex"]] == result["ruleId"]
        assert result["level"] in ("none", "note", "warning", "error")
        assert result["message"]["text"]
        loc = result["locations"][0]["physicalLocation"]
        assert loc["artifactLocation"]["uri"] == "n.ipynb"
        assert loc["region"]["startLine"] >= 1
    assert by_rule["cell_failed"]["level"] == "error"
    assert "ZeroDivisionError" in by_rule["cell_failed"]["message"]["text"]
    assert by_rule["hidden_state"]["level"] == "warning"
    assert by_rule["hidden_state"]["properties"]["cell_index"] == 0
    rules = {r["id"]: r for r in driver["rules"]}
    assert rules["hidden_state"]["helpUri"].endswith("docs/lint.md#hidden_state")


def test_sarif_validates_against_the_json_schema_subset_github_requires(tmp_path):
    """The parts of SARIF 2.1.0 GitHub code scanning reads, as a JSON schema (jsonschema)."""
    jsonschema = pytest.importorskip("jsonschema")
    make_notebook(tmp_path / "n.ipynb", ("print(threshold)", [], 1))
    sarif = tmp_path / "r.sarif"
    run_cli("nb-smoke", "--lint-only", "--sarif", sarif, "n.ipynb", cwd=tmp_path)
    message = {"type": "object", "required": ["text"], "properties": {"text": {"type": "string"}}}
    schema = {
        "type": "object",
        "required": ["version", "runs"],
        "properties": {
            "version": {"const": "2.1.0"},
            "runs": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["tool", "results"],
                    "properties": {
                        "tool": {
                            "type": "object",
                            "required": ["driver"],
                            "properties": {
                                "driver": {
                                    "type": "object",
                                    "required": ["name"],
                                    "properties": {
                                        "rules": {
                                            "type": "array",
                                            "items": {
                                                "type": "object",
                                                "required": ["id"],
                                                "properties": {"shortDescription": message},
                                            },
                                        }
                                    },
                                }
                            },
                        },
                        "results": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["message", "ruleId", "locations"],
                                "properties": {
                                    "message": message,
                                    "level": {"enum": ["none", "note", "warning", "error"]},
                                    "ruleIndex": {"type": "integer", "minimum": 0},
                                    "locations": {
                                        "type": "array",
                                        "minItems": 1,
                                        "maxItems": 10,
                                    },
                                },
                            },
                        },
                    },
                },
            },
        },
    }
    jsonschema.validate(json.loads(sarif.read_text()), schema)
