"""How a batch run ends (issue 19's overlapped kernel exit): the kernel's stderr, its last
words included, is logged; what the run produced survives an artifact upload that fails;
the partial notebook keeps up while a long cell runs.

Real ``jupyter-repro batch`` subprocesses, real kernels, a real sqlite MLflow store.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from batch_support import batch, client, ready_store, runs_of, start_batch
from helpers import make_notebook


def _artifact_text(uri: str, run_id: str, name: str) -> str | None:
    import mlflow

    try:
        path = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path=name, tracking_uri=uri
        )
    except Exception:
        return None
    return Path(path).read_text()


@pytest.mark.parametrize("flag", [[], ["--no-fork-kernels"]], ids=["forked", "new_interpreter"])
def test_the_kernels_stderr_is_logged_with_what_it_wrote_as_it_exited(tmp_path, flag):
    nb = make_notebook(
        tmp_path / "talk.ipynb",
        ("i = 0", ["parameters"]),
        "get_ipython().kernel.log.warning('DURING-RUN-%s' % i)\n"
        "import atexit, os\n"
        "atexit.register(lambda: os.write(2, b'LAST-WORDS\\n'))",
    )
    uri = ready_store(tmp_path / "store")
    done = batch(nb, "-p", "i", "7", *flag, cwd=tmp_path, uri=uri)
    assert done.returncode == 0, done.stdout + done.stderr
    (run,) = runs_of(uri, "talk")
    assert run.info.status == "FINISHED"
    text = _artifact_text(uri, run.info.run_id, "kernel_stderr.txt")
    assert text is not None, "kernel_stderr.txt was not logged"
    assert "DURING-RUN-7" in text
    assert "LAST-WORDS" in text  # written while the kernel exited, after the last cell


def test_metrics_and_failure_facts_survive_an_artifact_upload_that_fails(tmp_path):
    """The experiment's artifact location cannot be written (a path below a file): the
    run still has its metric and the failing cell's tags, and a real status."""
    uri = ready_store(tmp_path / "store")
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    client(uri).create_experiment("broken", artifact_location=(blocker / "sub").as_uri())
    nb = make_notebook(
        tmp_path / "broken.ipynb",
        ("i = 0", ["parameters"]),
        "import jupyter_repro\njupyter_repro.record('acc', 0.5)",
        "raise ValueError('boom')",
    )
    done = batch(nb, "-p", "i", "1", "--experiment", "broken", cwd=tmp_path, uri=uri)
    assert done.returncode == 1, done.stdout + done.stderr
    (run,) = runs_of(uri, "broken")
    assert run.info.status == "FAILED"
    assert run.data.metrics.get("acc") == 0.5
    assert run.data.tags.get("jupyter_repro.error.ename") == "ValueError"
    assert "logging the run's results failed" in run.data.tags.get(
        "jupyter_repro.status_reason", ""
    )


def test_the_partial_notebook_keeps_up_while_a_long_cell_runs(tmp_path):
    """Writes are at most one a second, but one put off is made when the second is over:
    the first cell's output is on disk while the second cell still sleeps."""
    nb = make_notebook(
        tmp_path / "long.ipynb",
        ("i = 0", ["parameters"]),
        "print('FIRST-OUTPUT')",
        "import time\ntime.sleep(30)",
    )
    uri = ready_store(tmp_path / "store")
    proc = start_batch(nb, "-p", "i", "1", cwd=tmp_path, uri=uri, log=tmp_path / "batch.log")
    try:
        seen = None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and seen is None:
            for partial in (tmp_path / "runs" / "long").glob(".*.partial.ipynb"):
                try:
                    text = partial.read_text()
                except OSError:
                    continue
                cells = json.loads(text)["cells"] if text.strip() else []
                if any("FIRST-OUTPUT" in json.dumps(c.get("outputs", [])) for c in cells):
                    seen = cells
            time.sleep(0.2)
        assert seen is not None, "the first cell's output never reached the partial notebook"
        assert proc.poll() is None  # written while the long cell still ran
        assert seen[-1]["metadata"]["papermill"]["status"] in ("running", "pending")
    finally:
        proc.terminate()
        proc.wait(timeout=120)
