"""``jupyter_repro.record``: what a notebook records and how batch reads it back."""

from __future__ import annotations

import math

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook, new_output

import jupyter_repro
from jupyter_repro.metrics import METRIC_MIMETYPE, read_metrics, record


def test_record_is_public_api():
    assert "record" in jupyter_repro.__all__ and jupyter_repro.record is record


def test_record_outside_a_kernel_returns_the_record():
    out = record("loss", 0.5, step=3, timestamp=1700000000.5)
    assert out == {"name": "loss", "value": 0.5, "step": 3, "timestamp": 1700000000500}


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (("", 1.0), TypeError),
        (("m", "high"), TypeError),
        (("m", True), TypeError),
        (("m", 1.0, -1), ValueError),
    ],
)
def test_bad_records_are_refused(args, error):
    with pytest.raises(error, match=r"jupyter_repro\.record"):
        record(*args)


def test_read_metrics_finds_values_in_output_order_with_cells():
    def shown(name, value, step=0):
        return new_output(
            "display_data",
            data={METRIC_MIMETYPE: {"name": name, "value": value, "step": step, "timestamp": 5}},
        )

    nb = new_notebook(
        cells=[
            new_code_cell("a", outputs=[shown("m", 1.0), new_output("stream", text="x")]),
            new_code_cell("b", outputs=[shown("m", 2.0, 1), shown("n", "nan")]),
        ]
    )
    found = read_metrics(nbformat.from_dict(nb))
    assert [(m.name, m.step, m.cell_index) for m in found] == [
        ("m", 0, 0),
        ("m", 1, 1),
        ("n", 0, 1),
    ]
    assert found[1].value == 2.0 and math.isnan(found[2].value)


def test_numpy_scalars_are_accepted():
    np = pytest.importorskip("numpy")
    out = record("m", np.float32(0.25), step=np.int64(2))
    assert out["value"] == 0.25 and out["step"] == 2 and type(out["step"]) is int
