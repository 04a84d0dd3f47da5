"""The pruning channel: how ``jupyter_repro.record`` inside a trial's kernel reaches Optuna.

The kernel is another process (often on another machine), started by the same code path
as a ``batch`` run. It learns that it runs a trial, and which, from its environment:
``tune`` puts :func:`kernel_env` in the trial's run spec
(:attr:`~jupyter_repro.batch.spec.RunSpec.kernel_env`), which travels with the spec to
a local pool worker or a dask worker, and the kernel is started with it. So trials of
different studies can share one worker process (dask worker threads), and nothing in
the ``tune`` process's own environment changes.

``record(metric, value, step=k)`` then opens the trial through the storage, reports the
intermediate value (``Trial.report``) and asks ``Trial.should_prune()``; when the pruner
says so it raises :class:`jupyter_repro.TrialPruned`, which stops the notebook at that
cell, and the ``tune`` process tells Optuna the trial is PRUNED. Only Optuna is imported
in the kernel (not MLflow), and only on the first such call.

The storage URL is passed as given, password included (the kernel writes to that
storage): on a dask cluster it travels inside each task. A storage URL without a
password (PostgreSQL: ``PGPASSWORD`` or ``~/.pgpass`` on the workers) keeps it out.
"""

from __future__ import annotations

import os
from typing import Any

ENV_STORAGE = "JUPYTER_REPRO_TUNE_STORAGE"
ENV_STUDY = "JUPYTER_REPRO_TUNE_STUDY"
ENV_METRIC = "JUPYTER_REPRO_TUNE_METRIC"
ENV_PRUNER = "JUPYTER_REPRO_TUNE_PRUNER"
ENV_TRIAL_ID = "JUPYTER_REPRO_TUNE_TRIAL_ID"
ENV_NAMES = (ENV_STORAGE, ENV_STUDY, ENV_METRIC, ENV_PRUNER, ENV_TRIAL_ID)

_trial: Any = None  # the trial this kernel runs, opened on the first report


def kernel_env(storage: str, study: str, metric: str, pruner: str, trial_id: int) -> dict[str, str]:
    """The environment of one trial's kernel: storage URL (with credentials), study name,
    metric name, pruner spec (:func:`make_pruner`) and the storage's id of the trial."""
    return {
        ENV_STORAGE: storage,
        ENV_STUDY: study,
        ENV_METRIC: metric,
        ENV_PRUNER: pruner,
        ENV_TRIAL_ID: str(trial_id),
    }


def in_trial() -> bool:
    """Whether this process is the kernel of a ``tune`` trial (cheap: environment only)."""
    return bool(os.environ.get(ENV_STORAGE)) and bool(os.environ.get(ENV_TRIAL_ID))


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

        from .storage import open_storage

        study = optuna.load_study(
            study_name=os.environ[ENV_STUDY],
            storage=open_storage(os.environ[ENV_STORAGE], existing=True),
            # the kernel never samples: the cheapest sampler, not TPE's set-up
            sampler=optuna.samplers.RandomSampler(),
            pruner=make_pruner(os.environ.get(ENV_PRUNER, "none")),
        )
        _trial = optuna.trial.Trial(study, int(os.environ[ENV_TRIAL_ID]))
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
