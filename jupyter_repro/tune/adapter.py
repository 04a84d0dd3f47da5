"""The one place ``tune`` touches ``batch``: validation, run specs and executors.

A trial is a batch run: the same :class:`~jupyter_repro.batch.execute.RunSpec`, the same
executors (local pool or dask), the same :func:`~jupyter_repro.batch.execute.execute_run`
(fresh kernel, typed injected values, data digests, per-run timeout, heartbeats, clean
KILLED/FAILED endings). Only this module imports from :mod:`jupyter_repro.batch`, so a
change of the batch's interfaces is a change here.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from ..batch.executors import Executor
from ..batch.registry import executor_class
from ..batch.runner import BatchOptions, open_experiment, plan_batch
from ..batch.spec import RunResult, RunSpec
from ..parameters import ParameterInfo, find_parameters_cell, notebook_parameters
from ..processes import process_identity
from ..provenance.attempts import close_orphans
from ..provenance.data import digest_input
from ..provenance.mlflow_log import Provenance, collect_provenance, format_param

__all__ = ["Executor", "RunResult", "RunSpec", "TrialRuns", "close_orphans"]


@dataclass
class TrialRuns:
    """What every trial's run shares, computed once before the first trial.

    Attributes:
        nb: the notebook as read (validation of each trial's values uses it).
        known: the parameters cell's names and defaults.
        batch_id: one id for all runs of this ``tune`` (``jupyter_repro.batch.id`` tag),
            so the batch machinery's orphan clean-up covers the trials too.
    """

    path: Path
    nb: Any
    kernel: str
    known: dict[str, ParameterInfo]
    uri: str
    experiment: str
    experiment_id: str
    provenance: Provenance
    batch_id: str
    stamp: str
    out_dir: Path
    owner: tuple[str, int, float]
    options: BatchOptions
    executor: Executor
    check_attempts: bool = False

    def spec(
        self,
        index: int,
        params: dict[str, Any],
        tags: dict[str, str],
        kernel_env: dict[str, str] | None = None,
    ) -> RunSpec:
        """The run spec of trial ``index`` with injected ``params``, extra run ``tags``
        and extra variables in its kernel's environment (the pruning channel)."""
        run_name = f"{self.path.stem}-{self.stamp}-t{index:03d}"
        defaults = {
            n: format_param(info.default) if info.has_literal_default else info.default_source
            for n, info in self.known.items()
            if n not in params
        }
        return RunSpec(
            index=index,
            run_name=run_name,
            notebook=str(self.path.resolve()),
            params=params,
            defaults=defaults,
            output_path=str((self.out_dir / f"{run_name}.ipynb").resolve()),
            kernel_name=self.kernel,
            cwd=str(self.path.resolve().parent),
            timeout=self.options.timeout,
            start_timeout=self.options.start_timeout,
            uri=self.uri,
            experiment_id=self.experiment_id,
            batch_id=self.batch_id,
            provenance=self.provenance,
            heartbeat_interval=self.options.heartbeat_interval,
            flags=tags,
            owner=self.owner,
            check_attempts=self.check_attempts,
            kernel_env=dict(kernel_env or {}),
            # trials keep coming until the study ends: start the next trial's kernel
            # while this one runs (the spare left at the end dies with its worker)
            warm_next=True,
        )

    def submit(self, spec: RunSpec) -> Any:
        """Start one trial's run; the future holds its :class:`RunResult`."""
        return self.executor.submit_run(spec)


def check_notebook(notebook: str | Path, options: BatchOptions) -> tuple[Any, str, list[str]]:
    """Read the notebook and check its kernel and the executor options (no side effects).

    Raises:
        ReproError: unreadable notebook, missing kernelspec, bad -j / --executor.
    """
    return plan_batch(Path(notebook), [], options)


def start_runs(
    notebook: str | Path, options: BatchOptions, nb: Any, kernel: str, jobs: int, say: Any
) -> TrialRuns:
    """Digest data, collect provenance, start the executor and open the experiment.

    Raises:
        ReproError: a ``--data`` path that cannot be read, a store that cannot be opened,
            a dask scheduler that cannot be reached.
    """
    from ..provenance.store import check_reachable, resolve_tracking_uri

    path = Path(notebook)
    executor_cls = executor_class(options.executor)
    executor_cls.prepare()  # e.g. workers' imports overlap with the provenance below
    data = [digest_input(p) for p in options.data]
    uri = resolve_tracking_uri(options.tracking_uri, path.parent)
    check_reachable(uri)
    experiment = options.experiment or path.stem
    provenance = collect_provenance(path, data)
    batch_id = uuid.uuid4().hex
    executor = executor_cls.create(options, path, batch_id, jobs)
    try:
        for line in executor.check(uri, kernel):
            say(f"warning: {line}")
        where = executor.describe(jobs)
        if where:
            say(where)
        experiment_id = open_experiment(executor, uri, experiment)
    except BaseException:
        executor.kill()
        raise
    return TrialRuns(
        path=path,
        nb=nb,
        kernel=kernel,
        known=notebook_parameters(nb),
        uri=uri,
        experiment=experiment,
        experiment_id=experiment_id,
        provenance=provenance,
        batch_id=batch_id,
        stamp=f"{datetime.now().strftime('%Y%m%d-%H%M%S')}-{batch_id[:4]}",
        out_dir=Path(options.output_dir) / experiment,
        owner=process_identity(),
        options=options,
        executor=executor,
        check_attempts=executor_cls.reruns_lost_runs,
    )


def has_parameters_cell(nb: Any) -> bool:
    """Whether the notebook has a cell tagged ``parameters`` (papermill's rule)."""
    return find_parameters_cell(nb) is not None


def this_process() -> tuple[str, int, float]:
    """(host key, pid, start time) of this process, as batch runs record their owner."""
    return process_identity(os.getpid())
