"""The names a run carries in MLflow, defined once: tags, artifact paths, statuses.

Writers (:mod:`.mlflow_log`, :mod:`jupyter_repro.batch.execute`, :mod:`.gc`,
:mod:`.attempts`, ``nb-smoke``'s MLflow logging) and readers
(:mod:`jupyter_repro.reproduce.locate`, :mod:`jupyter_repro.reproduce.rerun`) import
these constants instead of spelling the strings, so a rename is one edit. The values are
part of what users search for (``tags.`jupyter_repro.batch.id` = '...'``) and of runs
already stored, so they never change meaning once published (docs/batch.md lists them).
"""

from __future__ import annotations

from enum import Enum

#: Prefix of every tag this toolkit writes.
PREFIX = "jupyter_repro."


class RunStatus(str, Enum):
    """An MLflow run's status as this toolkit uses it (MLflow's own names)."""

    RUNNING = "RUNNING"
    FINISHED = "FINISHED"
    FAILED = "FAILED"
    KILLED = "KILLED"

    def __str__(self) -> str:
        return self.value


# --- the code coordinate (written by Provenance.tags, read by reproduce) ---------------
NOTEBOOK_PATH = PREFIX + "notebook.path"
NOTEBOOK_SHA256 = PREFIX + "notebook.sha256"
NOTEBOOK_GIT_STATUS = PREFIX + "notebook.git_status"
SOURCES_MATCH_HEAD = PREFIX + "notebook.sources_match_head"
GIT_DIRTY = PREFIX + "git.dirty"
VERSION = PREFIX + "version"
#: MLflow's own tag for the notebook's path relative to its repository.
MLFLOW_SOURCE_NAME = "mlflow.source.name"

# --- data and parameters ---------------------------------------------------------------
#: ``jupyter_repro.data.<name>.sha256``: one tag per declared input (:func:`data_tag`).
DATA_PREFIX = PREFIX + "data."
DATA_SUFFIX = ".sha256"
#: Parameters-cell names not overridden (comma-separated); their defaults are params too.
PARAMS_DEFAULTS = PREFIX + "params.defaults"
#: Why the logged parameters may not be what the notebook used (``--allow-unknown``).
PARAMS_UNVERIFIED = PREFIX + "params.unverified"

# --- outcome --------------------------------------------------------------------------
STATUS = PREFIX + "status"
STATUS_REASON = PREFIX + "status_reason"
#: ``jupyter_repro.error.<key>``: the failing cell's facts (cell_index, cell_id, ename, evalue).
ERROR_PREFIX = PREFIX + "error."
#: Searchable output hashes: ``jupyter_repro.outputs``, then ``.1``, ``.2``, ...
OUTPUTS = PREFIX + "outputs"
#: "true" when the run's kernel was forked from a kernel template (it shares the template's
#: string-hash seed; docs/batch.md "How runs start"), "false" when it was a new interpreter.
KERNEL_FORKED = PREFIX + "kernel.forked"

# --- batch bookkeeping ----------------------------------------------------------------
BATCH_ID = PREFIX + "batch.id"
BATCH_INDEX = PREFIX + "batch.index"
BATCH_ATTEMPT = PREFIX + "batch.attempt"
BATCH_WORKER = PREFIX + "batch.worker"
BATCH_RETRY_OF = PREFIX + "batch.retry_of"

# --- heartbeat (gc) -------------------------------------------------------------------
HEARTBEAT = PREFIX + "heartbeat."
HEARTBEAT_HOST = HEARTBEAT + "host"
#: :func:`~jupyter_repro.processes.host_key` of the owner: where its pid means something.
HEARTBEAT_HOST_KEY = HEARTBEAT + "host_key"
HEARTBEAT_PID = HEARTBEAT + "pid"
HEARTBEAT_PID_START = HEARTBEAT + "pid_start"
HEARTBEAT_LAST_SEEN = HEARTBEAT + "last_seen"

# --- tune (jupyter_repro.tune: run tags, and the Optuna trial user attributes) ---------
TUNE_TAG = PREFIX + "tune."
TUNE_STUDY = TUNE_TAG + "study"  # the Optuna study's name
TUNE_STORAGE = TUNE_TAG + "storage"  # the Optuna storage URL without credentials
TUNE_TRIAL = TUNE_TAG + "trial"  # the trial number (what optuna-dashboard shows)
TUNE_TRIAL_ID = TUNE_TAG + "trial_id"  # the storage's id of the trial (what its API takes)
TUNE_STATE = TUNE_TAG + "trial_state"  # COMPLETE / PRUNED / FAIL, set when the trial ends
TUNE_PARENT = TUNE_TAG + "parent"  # "true" on the study's parent run
#: Where optuna-dashboard shows the trial (the study, on the parent run).
TUNE_DASHBOARD_URL = TUNE_TAG + "dashboard_url"
#: MLflow's run description (markdown, shown on the run's page): links to the trial.
MLFLOW_NOTE = "mlflow.note.content"
#: MLflow's own tag that nests a trial's run under the study's run in the UI.
MLFLOW_PARENT_RUN_ID = "mlflow.parentRunId"
#: Trial user attributes (the issue's names, so optuna-dashboard shows them as-is).
TRIAL_RUN_ID_ATTR = "mlflow_run_id"
TRIAL_RUN_URL_ATTR = "mlflow_run_url"
TRIAL_RUN_NAME_ATTR = PREFIX + "run_name"
TRIAL_OWNER_ATTR = PREFIX + "owner"  # [host key, pid, start time] of the tune process
TRIAL_REASON_ATTR = PREFIX + "fail_reason"

# --- reproduce and nb-smoke -----------------------------------------------------------
REPRODUCES = PREFIX + "reproduces"
REPRODUCE_VERDICT = PREFIX + "reproduce.verdict"
#: ``current`` (the user's environment) or ``fresh:<lock hash>`` (``--fresh-env``).
REPRODUCE_ENV = PREFIX + "reproduce.env"
SOURCE = PREFIX + "source"
SMOKE_MODE = PREFIX + "smoke.mode"

# --- artifacts (paths inside a run's artifact root) -----------------------------------
NOTEBOOK_DIR = "notebook"
HTML_RENDER_ERROR = NOTEBOOK_DIR + "/html_render_error.txt"
OUTPUT_MANIFEST = "outputs/manifest.json"
OUTPUT_IMAGES_DIR = "outputs/images"
NBDIFF_JSON = "diff/nbdiff.json"
NBDIFF_HTML = "diff/nbdiff.html"
NBDIFF_TXT = "diff/nbdiff.txt"
ENVIRONMENT_JSON = "environment.json"
#: The run's environment as a pinned requirements file (``uv pip sync`` / ``pip install -r``).
REQUIREMENTS_LOCK = "requirements.lock.txt"
DATA_JSON = "data.json"
ERROR_JSON = "error.json"
KERNEL_STDERR = "kernel_stderr.txt"


def data_tag(name: str) -> str:
    """The tag holding the sha256 of declared input ``name``."""
    return f"{DATA_PREFIX}{name}{DATA_SUFFIX}"


def data_name(tag: str) -> str | None:
    """The input name of a :func:`data_tag`, or None for any other tag."""
    if tag.startswith(DATA_PREFIX) and tag.endswith(DATA_SUFFIX):
        return tag[len(DATA_PREFIX) : -len(DATA_SUFFIX)]
    return None
