"""A notebook that uses MLflow itself under ``batch`` (field case G06, docs/batch.md,
"Notebooks that use MLflow themselves"): the MLflow variables its kernel gets, and the
links between the batch's run and the runs the notebook creates."""

from __future__ import annotations

import json
import re
from typing import Any

#: Tag on every MLflow run a notebook creates itself under ``batch`` (through MLflow's
#: ``MLFLOW_RUN_CONTEXT``): the id of the batch's run that executed it.
NOTEBOOK_OF_TAG = "jupyter_repro.batch.run_id"
#: Tag on the batch's run: the runs the notebook created itself, ``experiment_id/run_id``.
NOTEBOOK_RUNS_TAG = "jupyter_repro.notebook_runs"
#: The variables of :func:`notebook_mlflow_env` that differ from run to run (the others
#: are the same for every run of a batch, so a kernel started ahead can have them).
PER_RUN_VARIABLES = ("MLFLOW_RUN_ID", "MLFLOW_RUN_CONTEXT")
_OWN_EXPERIMENT = re.compile(r"\bset_experiment\s*\(|\bstart_run\s*\([^)]*experiment_id")


def notebook_mlflow_env(nb: Any, uri: str, experiment_id: str, run_id: str) -> dict[str, str]:
    """MLflow variables for the kernel, so the notebook's own MLflow calls work as under
    papermill and what it logs ends up in, or linked from, the batch's run (field case G06).

    - ``MLFLOW_TRACKING_URI``/``MLFLOW_EXPERIMENT_ID``: the batch's store and experiment.
    - ``MLFLOW_RUN_ID`` = the batch's run, so a plain ``mlflow.start_run()`` (or autolog)
      resumes it and logs into it, *unless* the notebook picks its own experiment
      (``mlflow.set_experiment(...)``, ``start_run(experiment_id=...)``): MLflow then
      refuses to resume a run of another experiment ("active experiment ID does not match
      environment run ID", mlflow issue #2735), so the notebook starts its own run there.
    - ``MLFLOW_RUN_CONTEXT``: tags MLflow adds to every run the notebook creates (its own,
      nested, autolog): :data:`NOTEBOOK_OF_TAG` = the batch's run id, and
      ``mlflow.parentRunId`` for a top-level one, so the UI nests it under the batch's run
      (:func:`link_notebook_runs` lists them on the batch's run afterwards).
    """
    sources = "\n".join(
        c.get("source", "") for c in nb.get("cells", []) if c.get("cell_type") == "code"
    )
    env = {
        "MLFLOW_TRACKING_URI": uri,
        "MLFLOW_EXPERIMENT_ID": experiment_id,
        "MLFLOW_RUN_CONTEXT": json.dumps({NOTEBOOK_OF_TAG: run_id, "mlflow.parentRunId": run_id}),
    }
    if not _OWN_EXPERIMENT.search(sources):
        env["MLFLOW_RUN_ID"] = run_id
    return env


def link_notebook_runs(uri: str, run_id: str) -> list[str]:
    """Tag the batch's run with the runs its notebook created itself (any experiment), and
    end any of them the notebook left RUNNING (a kernel killed mid-run) as KILLED.

    Returns ``experiment_id/run_id`` strings; an empty list when there are none.
    """
    from ..provenance.store import client as mlflow_client

    client = mlflow_client(uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    found: list[str] = []
    for start in range(0, len(experiments), 100):
        runs = client.search_runs(
            experiments[start : start + 100],
            filter_string=f"tags.`{NOTEBOOK_OF_TAG}` = '{run_id}'",
            max_results=1000,
        )
        for run in runs:
            if run.info.run_id == run_id:
                continue
            found.append(f"{run.info.experiment_id}/{run.info.run_id}")
            if run.info.status == "RUNNING":
                client.set_terminated(run.info.run_id, "KILLED")
    if found:
        client.set_tag(run_id, NOTEBOOK_RUNS_TAG, ",".join(found)[:5000])
    return found
