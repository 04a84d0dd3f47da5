"""F14: parallel workers on a store that does not exist yet lose no run, metric or
artifact, and sqlite's "database is locked" is retried rather than fatal."""

from __future__ import annotations

import pytest
from batch_support import batch, client, make_notebook, runs_of, sqlite_uri

from jupyter_repro.provenance.store import is_locked_error, retry_locked

NOTEBOOK = (
    ("i = 0", ["parameters"]),
    "import jupyter_repro\nfor step in range(20):\n    jupyter_repro.record('m', i + step, step=step)",
)


def _check(tmp_path, n: int):
    nb = make_notebook(tmp_path / "grid.ipynb", *NOTEBOOK)
    (tmp_path / "g.yaml").write_text(f"i: {list(range(n))}\n")
    uri = sqlite_uri(tmp_path / "new-dir")  # neither the folder nor the db exists
    proc = batch(nb, "--grid", tmp_path / "g.yaml", "-j", "4", cwd=tmp_path, uri=uri, timeout=600)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert "OperationalError" not in output and "database is locked" not in output
    runs = runs_of(uri, "grid")
    assert sorted(int(r.data.params["i"]) for r in runs) == list(range(n))
    c = client(uri)
    for run in runs:
        assert run.info.status == "FINISHED"
        history = c.get_metric_history(run.info.run_id, "m")
        i = int(run.data.params["i"])
        assert sorted((m.step, m.value) for m in history) == [(s, i + s) for s in range(20)]
        names = {a.path for a in c.list_artifacts(run.info.run_id, "notebook")}
        assert f"notebook/{run.info.run_name}.ipynb" in names


def test_four_workers_on_a_fresh_sqlite_store_lose_nothing(tmp_path):
    _check(tmp_path, 8)


@pytest.mark.slow
def test_four_workers_twenty_runs(tmp_path):
    _check(tmp_path, 20)


def test_database_is_locked_is_retried_then_succeeds():
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise RuntimeError("(sqlite3.OperationalError) database is locked")
        return "ok"

    assert retry_locked(flaky) == "ok" and len(calls) == 3


def test_other_errors_are_not_retried():
    calls = []

    def broken():
        calls.append(1)
        raise ValueError("no such table: runs")

    with pytest.raises(ValueError):
        retry_locked(broken)
    assert calls == [1] and not is_locked_error(ValueError("no such table"))
