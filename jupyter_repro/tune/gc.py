"""``jupyter-repro gc --storage``: fail Optuna trials left RUNNING by a ``tune`` that is gone.

Optuna cannot tell that the process running a trial was killed, so its trials stay
RUNNING for ever (the workshop's "dangling trials"). Two rules, the same as for MLflow
runs (:mod:`jupyter_repro.provenance.gc`):

- the trial's owner (user attribute ``jupyter_repro.owner``: host key, pid and start
  time of the ``tune`` process) is on this host and provably gone: FAIL now;
- otherwise, its Optuna heartbeat (``RDBStorage(heartbeat_interval=...)``, beaten by
  ``tune`` for every trial in flight) is older than ``stale_after`` seconds: FAIL —
  Optuna's own stale-trial rule (``optuna.storages.fail_stale_trials``), with our grace.

A trial with neither (made by another tool, no heartbeat) is never touched.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .storage import open_storage, public_url


@dataclass(frozen=True)
class DanglingTrial:
    """A RUNNING trial judged dead: its study, number, storage id and why."""

    study: str
    number: int
    trial_id: int
    reason: str


def find_dangling_trials(storage_url: str, stale_after: float = 600.0) -> list[DanglingTrial]:
    """RUNNING trials of every study in ``storage_url`` whose ``tune`` process is gone.

    Raises:
        ReproError: the storage cannot be opened.
    """
    import optuna

    from ..processes import pid_alive
    from ..provenance.names import TRIAL_OWNER_ATTR as OWNER_ATTR
    from .adapter import this_process

    # Optuna's stale rule, judged on the database's clock: heartbeat older than the grace.
    storage = open_storage(storage_url, heartbeat_interval=1, grace=max(1, int(stale_after)))
    here = this_process()[0]
    found: list[DanglingTrial] = []
    for summary in storage.get_all_studies():
        study_id = storage.get_study_id_from_name(summary.study_name)
        running = storage.get_all_trials(
            study_id, deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)
        )
        stale = set(storage._get_stale_trial_ids(study_id)) if running else set()
        for trial in running:
            owner = trial.user_attrs.get(OWNER_ATTR)
            if isinstance(owner, list) and len(owner) == 3 and owner[0] == here:
                if pid_alive(int(owner[1]), float(owner[2])):
                    continue  # its tune is alive here: never touched
                reason = f"the tune process {owner[1]} on this host is gone"
            elif trial._trial_id in stale:
                reason = f"no Optuna heartbeat for over {stale_after:.0f}s (its tune is gone)"
            else:
                continue
            found.append(DanglingTrial(summary.study_name, trial.number, trial._trial_id, reason))
    return found


def fail_trials(storage_url: str, trials: list[DanglingTrial]) -> int:
    """Set each trial FAIL with the reason in user attribute ``jupyter_repro.fail_reason``.

    A trial that finished since it was found is left as it is. Returns how many failed.
    """
    import optuna

    from ..provenance.names import TRIAL_REASON_ATTR as REASON_ATTR

    storage = open_storage(storage_url)
    failed = 0
    for t in trials:
        try:
            storage.set_trial_user_attr(t.trial_id, REASON_ATTR, f"jupyter-repro gc: {t.reason}")
            if storage.set_trial_state_values(t.trial_id, optuna.trial.TrialState.FAIL):
                failed += 1
        except optuna.exceptions.UpdateFinishedTrialError:
            continue
    return failed


def gc_trials(storage_url: str, stale_after: float, dry_run: bool, say: Any = print) -> int:
    """Find and (unless ``dry_run``) fail dangling trials, one line each; return how many."""
    trials = find_dangling_trials(storage_url, stale_after)
    verb = "would mark FAIL" if dry_run else "marked FAIL"
    for t in trials:
        say(f"trial {t.number} of study '{t.study}'  {verb}: {t.reason}")
    if not dry_run:
        fail_trials(storage_url, trials)
    return len(trials)


__all__ = ["DanglingTrial", "fail_trials", "find_dangling_trials", "gc_trials", "public_url"]
