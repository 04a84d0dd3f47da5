"""MLflow bookkeeping of batch runs beyond one run's own life: attempts whose worker died
(dask reruns a task whose worker was lost), and orphans left RUNNING when a batch ends.

Next to :func:`~.mlflow_log.end_run`, which every ending here goes through.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .mlflow_log import end_run
from .names import BATCH_ATTEMPT, BATCH_ID, BATCH_INDEX, BATCH_WORKER, STATUS_REASON, RunStatus
from .store import retry_locked

#: Attempts of one run when the worker running it dies: the first and one retry.
MAX_ATTEMPTS = 2

#: What a closed dead attempt's reason says (and how a later attempt recognises it).
DIED_MID_RUN = "died mid-run"


@dataclass
class Attempt:
    """Which attempt of a batch run this is, from the runs of earlier attempts.

    Attributes:
        number: 1 for a first run, 2 after one worker died, ...
        retry_of: run id of the latest earlier attempt, or None.
        earlier: MLflow runs of earlier attempts (``mlflow.entities.Run``).
        done: an earlier attempt that already ended on its own (dask recomputed a
            released result): it is the run's outcome, nothing runs again.
    """

    number: int = 1
    retry_of: str | None = None
    earlier: list[Any] = field(default_factory=list)
    done: Any = None

    @property
    def given_up(self) -> bool:
        """Whether workers died :data:`MAX_ATTEMPTS` times: no new attempt starts."""
        return self.done is None and self.number > MAX_ATTEMPTS

    @property
    def workers(self) -> list[str]:
        """The workers (host:pid) that ran the earlier attempts, sorted."""
        return sorted({r.data.tags.get(BATCH_WORKER, "?") for r in self.earlier})


def earlier_attempts(uri: str, experiment_id: str, batch_id: str, index: int) -> list[Any]:
    """MLflow runs of batch ``batch_id``'s run ``index`` (attempts whose worker died)."""
    from .store import client

    return retry_locked(
        client(uri).search_runs,
        [experiment_id],
        filter_string=f"tags.`{BATCH_ID}` = '{batch_id}' and tags.`{BATCH_INDEX}` = '{index}'",
    )


def died(run: Any) -> bool:
    """Whether an earlier attempt's MLflow run is one whose worker died: still RUNNING
    (nobody closed it), or already closed by a later attempt as having died."""
    reason = run.data.tags.get(STATUS_REASON, "")
    return run.info.status == RunStatus.RUNNING or DIED_MID_RUN in reason


def resolve_attempt(uri: str, experiment_id: str, batch_id: str, index: int) -> Attempt:
    """Which attempt of run ``index`` starts now; dead earlier attempts are closed FAILED
    (saying whether this one retries them) before it starts.

    Raises:
        MlflowException: the store cannot be searched.
    """
    earlier = earlier_attempts(uri, experiment_id, batch_id, index)
    ended = [r for r in earlier if not died(r)]
    if ended:
        return Attempt(done=max(ended, key=lambda r: r.info.start_time), earlier=earlier)
    attempt = Attempt(number=len(earlier) + 1, earlier=earlier)
    if earlier:
        attempt.retry_of = max(earlier, key=lambda r: r.info.start_time).info.run_id
    close_dead_attempts(uri, earlier, retried=not attempt.given_up)
    return attempt


def close_dead_attempts(uri: str, runs: list[Any], retried: bool) -> None:
    """End attempts left RUNNING by a worker that died as FAILED, saying what happened."""
    for run in runs:
        if run.info.status != RunStatus.RUNNING:
            continue
        where = run.data.tags.get(BATCH_WORKER, "a worker")
        reason = f"the worker running it ({where}) {DIED_MID_RUN}" + (
            "; retried on another worker" if retried else "; not retried again"
        )
        end_run(uri, run.info.run_id, RunStatus.FAILED, reason)


def attempt_number(run: Any) -> int:
    """The attempt number a batch run's tags record (1 when it has none)."""
    return int(run.data.tags.get(BATCH_ATTEMPT, "1"))


def close_orphans(uri: str, experiment_id: str, batch_id: str, status: str) -> int:
    """Backstop: a run of this batch still RUNNING now has no owner left; end it.

    Returns how many runs were closed.
    """
    from .store import client

    runs = retry_locked(
        client(uri).search_runs,
        [experiment_id],
        filter_string=f"tags.`{BATCH_ID}` = '{batch_id}' and attributes.status = 'RUNNING'",
    )
    reason = (
        "worker process ended without closing the run"
        if status == RunStatus.FAILED
        else "batch interrupted: run closed by the batch process"
    )
    for run in runs:
        end_run(uri, run.info.run_id, status, reason)
    return len(runs)
