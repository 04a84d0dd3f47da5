"""The pure parts of locate/reproduce: output-hash tags, tolerances, the notebook as run."""

from __future__ import annotations

import hashlib
import math

import nbformat

from jupyter_repro.provenance.mlflow_log import (
    OUTPUT_HASH_PREFIX,
    OUTPUT_TAG_CHARS,
    output_hash_tags,
)
from jupyter_repro.reproduce.rerun import (
    Tolerances,
    compare_metrics,
    compare_outputs,
    package_differences,
    source_notebook,
)


def test_output_hash_tags_split_under_the_tag_limit_and_dedupe():
    digests = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(300)]
    manifest = [{"sha256": d} for d in [*digests, digests[0]]]
    tags = output_hash_tags(manifest)
    assert list(tags) == [
        "jupyter_repro.outputs",
        "jupyter_repro.outputs.1",
        "jupyter_repro.outputs.2",
    ]
    prefixes = " ".join(tags.values()).split()
    assert len(prefixes) == 300 == len(set(prefixes))
    assert all(len(p) == OUTPUT_HASH_PREFIX for p in prefixes)
    assert all(len(v) <= OUTPUT_TAG_CHARS for v in tags.values())
    assert output_hash_tags([]) == {"jupyter_repro.outputs": ""}


def test_tolerances_and_per_metric_override():
    tol = Tolerances(rtol=1e-3, atol=0.0, per_metric={"loss": 0.5})
    assert tol.close("acc", 1.0, 1.0005) and not tol.close("acc", 1.0, 1.01)
    assert tol.close("loss", 1.0, 1.4)
    assert tol.close("x", math.nan, math.nan)
    diffs = compare_metrics({"acc": 1.0, "gone": 2.0}, {"acc": 1.01, "new": 3.0}, tol)
    assert [d["metric"] for d in diffs] == ["acc", "gone", "new"]


def test_package_differences_lists_changed_added_and_removed():
    a = {"python_version": "3.11.7", "packages": {"numpy": "2.0", "pandas": "2.2", "old": "1"}}
    b = {"python_version": "3.11.7", "packages": {"numpy": "2.1", "pandas": "2.2", "new": "1"}}
    assert package_differences(a, b) == [
        {"package": "new", "logged": None, "now": "1"},
        {"package": "numpy", "logged": "2.0", "now": "2.1"},
        {"package": "old", "logged": "1", "now": None},
    ]


def _executed():
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("a = 1", metadata={"tags": ["parameters"]})
    injected = nbformat.v4.new_code_cell("a = 2", metadata={"tags": ["injected-parameters"]})
    body = nbformat.v4.new_code_cell("print(a)", execution_count=3)
    body.outputs = [nbformat.v4.new_output("stream", name="stdout", text="2\n")]
    nb.cells = [params, injected, nbformat.v4.new_markdown_cell("# t"), body]
    nb.metadata["papermill"] = {"parameters": {"a": 2}}
    return nb


def test_source_notebook_drops_papermill_cells_and_outputs():
    src = source_notebook(_executed())
    assert [c.source for c in src.cells] == ["a = 1", "# t", "print(a)"]
    assert src.cells[2].outputs == [] and src.cells[2].execution_count is None
    assert "papermill" not in src.metadata


def test_compare_outputs_reports_source_cell_index():
    old, new = _executed(), _executed()
    assert compare_outputs(old, new, []) == []
    new.cells[3].outputs[0]["text"] = "3\n"
    (diff,) = compare_outputs(old, new, [])
    assert diff["cell_index"] == 2 and "-2" in diff["text_diff"] and "+3" in diff["text_diff"]
