"""The pruning channel: how ``jupyter_repro.record`` inside a trial's kernel reaches Optuna.

The kernel is another process (often on another machine), started by the same code path
as a ``batch`` run. It learns that it runs a trial from two places:

- its environment, the same for every trial of one ``tune`` (set in the ``tune`` process
  before the workers start, and inherited by every kernel): :data:`ENV_STORAGE` (the
  Optuna storage URL, with credentials), :data:`ENV_STUDY`, :data:`ENV_METRIC`,
  :data:`ENV_PRUNER`;
- its MLflow run (``MLFLOW_RUN_ID``, set for every batch kernel): the run's tag
  :data:`TRIAL_ID_TAG` names the trial, so one worker process can run trials of the
  same study side by side (dask worker threads) without a per-trial environment.

``record(metric, value, step=k)`` then opens the trial through the storage, reports the
intermediate value (``Trial.report``) and asks ``Trial.should_prune()``; when the pruner
says so it raises :class:`jupyter_repro.TrialPruned`, which stops the notebook at that
cell, and the ``tune`` process tells Optuna the trial is PRUNED. Optuna and MLflow are
imported in the kernel only on the first such call.
"""

from __future__ import annotations

import os
from typing import Any

ENV_STORAGE = "JUPYTER_REPRO_TUNE_STORAGE"
ENV_STUDY = "JUPYTER_REPRO_TUNE_STUDY"
ENV_METRIC = "JUPYTER_REPRO_TUNE_METRIC"
ENV_PRUNER = "JUPYTER_REPRO_TUNE_PRUNER"

TAG = "jupyter_repro.tune."
STUDY_TAG = TAG + "study"
STORAGE_TAG = TAG + "storage"
TRIAL_TAG = TAG + "trial"  # the trial number (what Optuna's dashboard shows)
TRIAL_ID_TAG = TAG + "trial_id"  # the storage's id of the trial (what the API takes)
STATE_TAG = TAG + "trial_state"  # COMPLETE / PRUNED / FAIL, set when the trial ends
PARENT_TAG = TAG + "parent"  # "true" on the study's parent run

_trial: Any = None  # the trial this kernel runs, opened on the first report


def in_trial() -> bool:
    """Whether this process is the kernel of a ``tune`` trial (cheap: environment only)."""
    return bool(os.environ.get(ENV_STORAGE)) and bool(os.environ.get("MLFLOW_RUN_ID"))


def make_pruner(spec: str) -> Any:
    """The Optuna pruner named by ``spec``: ``none``, or ``median[:N]`` (``MedianPruner``
    with ``n_startup_trials=N``, Optuna's default 5 when N is not given)."""
    import optuna

    kind, _, arg = spec.partition(":")
    if kind == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=int(arg) if arg else 5)
    return optuna.pruners.NopPruner()


def _open_trial() -> Any:
    global _trial
    if _trial is None:
        import optuna
        from mlflow.tracking import MlflowClient

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        run_id = os.environ["MLFLOW_RUN_ID"]
        run = MlflowClient(os.environ.get("MLFLOW_TRACKING_URI")).get_run(run_id)
        trial_id = int(run.data.tags[TRIAL_ID_TAG])
        from .storage import open_storage

        study = optuna.load_study(
            study_name=os.environ[ENV_STUDY],
            storage=open_storage(os.environ[ENV_STORAGE]),
            pruner=make_pruner(os.environ.get(ENV_PRUNER, "none")),
        )
        _trial = optuna.trial.Trial(study, trial_id)
    return _trial


def report(name: str, value: float, step: int) -> None:
    """Report ``value`` at ``step`` to this kernel's trial when ``name`` is the study's
    metric; raise :class:`~jupyter_repro.metrics.TrialPruned` when the pruner says so.

    A no-op outside a trial and for other metrics.
    """
    if not in_trial() or name != os.environ.get(ENV_METRIC):
        return
    from ..metrics import TrialPruned

    trial = _open_trial()
    trial.report(float(value), int(step))
    if trial.should_prune():
        raise TrialPruned(f"trial {trial.number} pruned at step {step} ({name}={value:g})")
