"""One value parser for every command; the parameters cell read with ast."""

from __future__ import annotations

import nbformat
import pytest
from helpers import make_notebook

from jupyter_repro.errors import ParameterError, ReproError
from jupyter_repro.parameters import (
    load_parameters_file,
    parameters_cell_names,
    parse_value,
    validate_parameters,
)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1e-3", 0.001),  # PyYAML (YAML 1.1) says "1e-3"
        ("1.0e-2", 0.01),
        ("-1", -1),
        ("0", 0),
        ("null", None),
        ("None", None),
        ("true", True),
        ("False", False),
        ("[16, 16]", [16, 16]),  # papermill -p says "[16, 16]" (issue #396)
        ('{"seed": 1}', {"seed": 1}),
        ("{seed: 1}", {"seed": 1}),
        ('"007"', "007"),
        ("no", "no"),  # YAML 1.1 says False
        ("2026-11-30", "2026-11-30"),  # no implicit dates
        ("adam", "adam"),
        ("two words", "two words"),
        ("", ""),
    ],
)
def test_parse_value_keeps_types(text, value):
    parsed = parse_value(text)
    assert parsed == value and type(parsed) is type(value)


def test_parameters_file_is_yaml_1_2(tmp_path):
    p = tmp_path / "p.yaml"
    p.write_text("lr: 1e-3\nflag: no\nwhen: 2026-11-30\nlayers: [8, 8]\n")
    assert load_parameters_file(p) == {
        "lr": 0.001,
        "flag": "no",
        "when": "2026-11-30",
        "layers": [8, 8],
    }
    bad = tmp_path / "bad.yaml"
    bad.write_text("lr: [1, 2\n")
    with pytest.raises(ReproError, match=r"bad\.yaml:2:1: invalid YAML: expected .,. or .\]., but got .<stream end>. \(while parsing a flow sequence started at 1:5\)"):
        load_parameters_file(bad)
    with pytest.raises(ReproError, match="no such file"):
        load_parameters_file(tmp_path / "missing.yaml")
    listing = tmp_path / "list.yaml"
    listing.write_text("- 1\n- 2\n")
    with pytest.raises(ReproError, match="must be a mapping"):
        load_parameters_file(listing)


def test_parameters_cell_names_are_parsed_not_grepped():
    names = parameters_cell_names(
        "# comment: x = 1\nlr: float = 0.1\na, b = 1, 2\nlayers = [\n    8,\n    8,\n]\n"
        "workers = os.cpu_count()\nif False:\n    hidden = 1\n"
    )
    assert list(names) == ["lr", "a", "b", "layers", "workers"]
    assert names["lr"].default == 0.1 and names["layers"].default == [8, 8]
    assert not names["workers"].has_literal_default
    assert names["workers"].default_source == "os.cpu_count()"


def test_validation_errors_and_warnings(tmp_path):
    import nbformat

    path = make_notebook(tmp_path / "n.ipynb", ("alpha = 0.5\nn = 3", ["parameters"]))
    nb = nbformat.read(path, as_version=4)
    with pytest.raises(ParameterError) as info:
        validate_parameters(path, nb, {"alpah": 0.1})
    assert info.value.unknown == ["alpah"] and info.value.known == ["alpha", "n"]
    warnings = validate_parameters(path, nb, {"alpha": "high", "n": 4})
    assert len(warnings) == 1 and "parameter 'alpha' gets a str" in warnings[0]
    assert validate_parameters(path, nb, {"n": 2.5})  # float for an int default warns
    assert not validate_parameters(path, nb, {"alpha": 1})  # int for a float is fine
    plain = make_notebook(tmp_path / "p.ipynb", "alpha = 0.5")
    with pytest.raises(ParameterError, match="no cell tagged 'parameters'"):
        validate_parameters(plain, nbformat.read(plain, as_version=4), {"alpha": 1.0})


def test_every_command_shares_the_parameter_options(tmp_path):
    """``-p``, ``-f`` and ``--allow-unknown`` are defined once
    (``parameters.add_override_arguments``): same flags, same help, same reading."""
    import argparse

    from jupyter_repro.cli import build_parser
    from jupyter_repro.parameters import overrides

    def options(parser: argparse.ArgumentParser) -> dict[str, tuple]:
        return {
            a.option_strings[-1]: (tuple(a.option_strings), a.help, a.dest)
            for a in parser._actions
            if {"-p", "-f", "--allow-unknown"} & set(a.option_strings)
        }

    root = build_parser()
    commands = root._subparsers._group_actions[0].choices
    smoke, batch = options(commands["smoke"]), options(commands["batch"])
    assert len(smoke) == 3 and smoke == batch
    (tmp_path / "p.yaml").write_text("lr: 0.1\nlayers: [1, 2]\n")
    args = root.parse_args(
        ["batch", "nb.ipynb", "-f", str(tmp_path / "p.yaml"), "-p", "lr", "1e-3"]
    )
    assert overrides(args) == {"lr": 0.001, "layers": [1, 2]}, "-p wins over -f"
    assert args.allow_unknown is False


# -- G05: injected values keep their types -------------------------------------------------
def _same(a, b) -> bool:
    """Equal with the same types all the way down (nan equals nan)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (a != a and b != b) or a == b
    if isinstance(a, complex):
        return _same(a.real, b.real) and _same(a.imag, b.imag)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    return a == b


def _random_values(count: int, seed: int = 13) -> list:
    """Nested values of every supported type, from a fixed seed (a hand-made strategy:
    hypothesis is not a dependency here)."""
    import random

    rng = random.Random(seed)
    scalars = [
        lambda: None, lambda: rng.choice([True, False]), lambda: rng.randint(-10**20, 10**20),
        lambda: rng.uniform(-1e6, 1e6), lambda: rng.choice([0.0, -0.0, 1e-300, float("nan"),
        float("inf"), -float("inf"), 1e-3, 0.1]),
        lambda: complex(rng.uniform(-5, 5), rng.uniform(-5, 5)),
        lambda: "".join(rng.choice("ab'\"\\\n\té€😀{}") for _ in range(rng.randint(0, 8))),
        lambda: bytes(rng.randrange(256) for _ in range(rng.randint(0, 4))),
    ]  # fmt: skip
    hashable = [scalars[0], scalars[1], scalars[2], scalars[6], lambda: (rng.randint(0, 9), "k")]

    def make(depth: int):
        kind = rng.randrange(7) if depth < 3 else 0
        if kind <= 1:
            return rng.choice(scalars)()
        n = rng.randint(0, 4)
        if kind == 2:
            return [make(depth + 1) for _ in range(n)]
        if kind == 3:
            return tuple(make(depth + 1) for _ in range(n))
        if kind == 4:
            return {rng.choice(hashable)() for _ in range(n)}
        if kind == 5:
            return frozenset(rng.choice(hashable)() for _ in range(n))
        return {rng.choice(hashable)(): make(depth + 1) for _ in range(n)}

    return [make(0) for _ in range(count)]


TABLE = [
    (3, 4), (-1, 1), (1,), (), {0: 1.0, 1: 5.0}, {(0, 1): "pair", None: 0, True: "t"},
    {1, 2, 3}, set(), frozenset({"a"}), frozenset(), None, [None, (None,)],
    {"nested": {"deeper": [(1, {2: {3}})]}}, float("nan"), float("inf"), -float("inf"),
    -0.0, 1e-3, 2**100, 1 + 2j, complex(float("nan"), 1), b"\x00\xff", "quote ' \" \\",
    "line\nbreak", "", [[], {}, ()],
]  # fmt: skip


@pytest.mark.parametrize(
    "value",
    # ids by position: a set's repr depends on string hashing, which differs between the
    # pytest-xdist workers (PYTHONHASHSEED), and every worker must collect the same ids
    [pytest.param(v, id=f"value{i}") for i, v in enumerate(TABLE + _random_values(400))],
)
def test_injected_source_evaluates_to_exactly_the_value(value):
    from jupyter_repro.parameters import injected_source, python_literal

    namespace: dict = {}
    exec(injected_source({"p": value}), namespace)
    assert _same(namespace["p"], value)
    assert _same(eval(python_literal(value)), value)


def test_injection_goes_through_the_notebook_and_refuses_what_has_no_literal(tmp_path):
    from jupyter_repro.parameters import inject_parameters, parse_value

    nb = nbformat.read(
        make_notebook(tmp_path / "g05.ipynb", ("shape = (2, 2)", ["parameters"]), "print(shape)"),
        as_version=4,
    )
    values = {"shape": parse_value("(3, 4)"), "class_weight": parse_value("{0: 1.0, 1: 5.0}")}
    out = inject_parameters(nb, values)
    injected = [c for c in out.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and out.cells.index(injected[0]) == 1
    namespace: dict = {}
    exec(injected[0].source, namespace)
    assert namespace["shape"] == (3, 4) and namespace["class_weight"] == {0: 1.0, 1: 5.0}
    with pytest.raises(ParameterError, match=r"parameter 'shape'.*cannot be injected") as err:
        validate_parameters(tmp_path / "g05.ipynb", nb, {"shape": object()})
    assert "g05.ipynb" in str(err.value)
