"""The types of one batch run: :class:`RunSpec` (what the client computes for each
parameter set before any run starts) and :class:`RunResult` (how the run ended).

Both travel between processes (pickled to a pool worker or a dask task and back), so
they hold plain data only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..provenance.mlflow_log import Provenance
from ..provenance.names import RunStatus


@dataclass
class RunSpec:
    """Everything one run needs, computed by the batch before any run starts.

    Attributes:
        params: the overrides to inject (already validated against the notebook).
        defaults: parameters-cell names not overridden -> default as written.
        output_path: final place of the executed notebook (written atomically).
        timeout: seconds for the whole run, or None.
        cwd: the kernel's working directory (the notebook's folder, as in Jupyter).
    """

    index: int
    run_name: str
    notebook: str
    params: dict[str, Any]
    defaults: dict[str, str]
    output_path: str
    kernel_name: str
    cwd: str
    timeout: float | None
    start_timeout: float
    uri: str
    experiment_id: str
    batch_id: str
    provenance: Provenance
    heartbeat_interval: float = 30.0
    flags: dict[str, str] = field(default_factory=dict)
    #: (host key, pid, process start time) of the batch process: a run on the same host
    #: key stops as KILLED once that process is gone (see :mod:`jupyter_repro.processes`).
    owner: tuple[str, int, float] | None = None
    #: Look for earlier attempts of this run (a dask worker died running it) before
    #: starting: close them as FAILED and give up after
    #: :data:`~jupyter_repro.provenance.attempts.MAX_ATTEMPTS`.
    check_attempts: bool = False
    #: Extra environment variables for the run's kernel (``tune``'s pruning channel,
    #: :mod:`jupyter_repro.tune.channel`); they travel with the spec, so a dask worker's
    #: kernel gets them too. The MLflow variables of the run win over them.
    kernel_env: dict[str, str] = field(default_factory=dict)
    #: Start the next run's kernel while this one runs (:mod:`jupyter_repro.kernels`):
    #: the batch sets it on all but the last runs, so no spare is started for nothing.
    warm_next: bool = False


@dataclass
class RunResult:
    """How a run ended, for the batch's table and exit code."""

    index: int
    run_name: str
    params: dict[str, Any]
    status: str  # a RunStatus
    run_id: str | None
    duration: float
    reason: str = ""
    output_path: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    worker: str = ""  # host:pid of the process that ran it
    attempt: int = 1
    #: kernels the run started: 1, or 2 when the first died before running anything
    #: (0 when none started)
    kernel_starts: int = 0
    #: its kernel was forked from a kernel template (None: no kernel started)
    kernel_forked: bool | None = None
    #: when the run began on its worker (``time.time()``, the worker's clock); 0 if never
    started_at: float = 0.0
    #: the executed notebook as JSON text, when it was written on another machine and
    #: must be shipped back to the client (dask without a shared file system)
    notebook_text: str | None = field(default=None, repr=False)

    @classmethod
    def not_started(cls, spec: RunSpec, reason: str) -> RunResult:
        """A run the batch stopped before it began: KILLED, no MLflow run, no time spent."""
        return cls(spec.index, spec.run_name, spec.params, RunStatus.KILLED, None, 0.0, reason)

    @classmethod
    def failed_unseen(cls, spec: RunSpec, reason: str) -> RunResult:
        """A run whose worker gave no result (it died, or logging failed): FAILED."""
        return cls(spec.index, spec.run_name, spec.params, RunStatus.FAILED, None, 0.0, reason)
