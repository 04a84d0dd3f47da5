"""Parameter sets from -p / -f / --grid: types survive (F09), shapes, precedence, errors."""

from __future__ import annotations

import pytest

from jupyter_repro.batch.grid import grid_from_data, load_grid, parameter_sets
from jupyter_repro.errors import ReproError


def test_grid_floats_in_scientific_notation_stay_floats(tmp_path):
    grid = tmp_path / "g.yaml"
    grid.write_text("lr: [1e-3, 1.0e-2]\n")
    sets = load_grid(grid)
    assert sets == [{"lr": 0.001}, {"lr": 0.01}]
    assert all(type(s["lr"]) is float for s in sets)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "lr: [1e-3]\nlayers: [[8, 8], [16, 16]]\n",
            [{"lr": 0.001, "layers": [8, 8]}, {"lr": 0.001, "layers": [16, 16]}],
        ),
        (
            "a: [1, 2]\nb: [x, y]\nfixed: no\n",
            [
                {"a": 1, "b": "x", "fixed": "no"},
                {"a": 1, "b": "y", "fixed": "no"},
                {"a": 2, "b": "x", "fixed": "no"},
                {"a": 2, "b": "y", "fixed": "no"},
            ],
        ),
        (
            "- {lr: 1e-3, tag: null}\n- {lr: 2e-3, day: 2026-11-30}\n",
            [{"lr": 0.001, "tag": None}, {"lr": 0.002, "day": "2026-11-30"}],
        ),
        (
            "grid: {a: [1, 2]}\nruns: [{a: 10, b: true}]\n",
            [{"a": 1}, {"a": 2}, {"a": 10, "b": True}],
        ),
    ],
    ids=["list-values", "product", "explicit", "both"],
)
def test_grid_shapes(tmp_path, text, expected):
    grid = tmp_path / "g.yaml"
    grid.write_text(text)
    assert load_grid(grid) == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty grid file"),
        ("a: []\n", "empty list for a"),
        ("- 1\n- 2\n", "run 0 is not a mapping"),
        ("42\n", "a grid must be a mapping or a list"),
        ("runs: {a: 1}\n", "'runs' must be a list"),
        ("a: [1, 2\n", "invalid YAML"),
    ],
)
def test_bad_grid_is_one_line_naming_the_file(tmp_path, text, fragment):
    grid = tmp_path / "bad.yaml"
    grid.write_text(text)
    with pytest.raises(ReproError) as info:
        load_grid(grid)
    message = str(info.value)
    assert message.startswith(str(grid)) and fragment in message
    assert "\n" not in message


def test_missing_grid_file_is_named(tmp_path):
    with pytest.raises(ReproError, match=r"nope\.yaml: no such file"):
        load_grid(tmp_path / "nope.yaml")


def test_cli_values_are_typed_like_nb_smoke():
    sets = parameter_sets(
        [
            ["lr", "1e-3"],
            ["layers", "[16, 16]"],
            ["opts", '{"seed": 1}'],
            ["offset", "-1"],
            ["tag", "null"],
        ]
    )
    assert sets == [
        {"lr": 0.001, "layers": [16, 16], "opts": {"seed": 1}, "offset": -1, "tag": None}
    ]
    assert type(sets[0]["lr"]) is float


def test_precedence_file_then_grid_then_cli(tmp_path):
    (tmp_path / "p.yaml").write_text("a: 1\nb: 1\nc: 1\n")
    (tmp_path / "g.yaml").write_text("b: [2, 3]\nc: 2\n")
    sets = parameter_sets([["c", "9"]], tmp_path / "p.yaml", tmp_path / "g.yaml")
    assert sets == [{"a": 1, "b": 2, "c": 9}, {"a": 1, "b": 3, "c": 9}]


def test_no_grid_means_one_run():
    assert parameter_sets(None) == [{}]


def test_grid_data_rejects_non_string_names():
    with pytest.raises(ReproError, match="names must be strings"):
        grid_from_data({1: [1, 2]}, "g.yaml")


def test_example_grid_parses_to_six_float_runs():
    from pathlib import Path

    grid = Path(__file__).parent.parent / "example_notebooks" / "train_grid.yaml"
    sets = load_grid(grid)
    assert len(sets) == 6
    assert {s["C"] for s in sets} == {0.01, 0.1, 1.0}
    assert all(type(s["C"]) is float for s in sets)
