"""Where runs are logged: the tracking URI, safe creation of an sqlite store, retries.

Several processes opening a fresh sqlite store at once run MLflow's schema migrations
concurrently and crash (tests/test_batch_concurrency.py); so a store is created once, under a file lock,
before any worker starts. sqlite's "database is locked" is retried, never fatal.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

#: Folder (under the project folder) of the default local store.
DEFAULT_STORE_DIR = "mlruns"
DEFAULT_DB_NAME = "mlflow.db"


#: Set (unless the user set them) in every process that logs runs: MLflow's telemetry
#: thread pops an environment variable while other threads read ``os.environ`` (a run
#: failed with KeyError '_MLFLOW_TELEMETRY_SESSION_ID' when offline), and its
#: "View run" lines would interleave with the batch's table.
QUIET_MLFLOW_ENV = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
}


def quiet_mlflow() -> None:
    """Apply :data:`QUIET_MLFLOW_ENV` to this process (before MLflow's first request)."""
    for key, value in QUIET_MLFLOW_ENV.items():
        if key not in os.environ:
            os.environ[key] = value


def project_dir(start: str | Path = ".") -> Path:
    """The project folder: the git work tree containing ``start``, else ``start`` itself."""
    here = Path(start).resolve()
    for folder in (here, *here.parents):
        if (folder / ".git").exists():
            return folder
    return here


def default_tracking_uri(start: str | Path = ".") -> str:
    """``sqlite:///<project>/mlruns/mlflow.db``: the store used when nothing else is set."""
    return f"sqlite:///{project_dir(start) / DEFAULT_STORE_DIR / DEFAULT_DB_NAME}"


def resolve_tracking_uri(cli_value: str | None = None, start: str | Path = ".") -> str:
    """``--tracking-uri``, else ``MLFLOW_TRACKING_URI``, else :func:`default_tracking_uri`.

    Relative sqlite and file paths are made absolute, because the notebook's kernel runs
    in the notebook's folder and must reach the same store.
    """
    uri = cli_value or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri(start)
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        rel = uri[len("sqlite:///") :]
        if rel and rel != ":memory:":
            uri = f"sqlite:///{Path(rel).resolve()}"
    elif "://" not in uri and uri != "databricks" and not uri.startswith("databricks-uc"):
        uri = Path(uri).resolve().as_uri()  # a plain path ("databricks" is a workspace)
    return uri


def sqlite_path(uri: str) -> Path | None:
    """The database file of an ``sqlite:///`` URI, or None for other stores."""
    if uri.startswith("sqlite:///"):
        return Path(uri[len("sqlite:///") :].split("?", 1)[0])
    return None


def default_artifact_location(uri: str, experiment: str) -> str | None:
    """Artifacts of an sqlite store live next to the database, not in the cwd's ``mlruns``."""
    db = sqlite_path(uri)
    if db is None:
        return None
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in experiment)
    return (db.parent / "artifacts" / safe).as_uri()


def is_locked_error(exc: BaseException) -> bool:
    """Whether ``exc`` is sqlite's transient "database is locked" / "busy"."""
    text = str(exc).lower()
    return (
        "database is locked" in text or "database table is locked" in text or "sqlite_busy" in text
    )


def retry_locked(fn: Callable[..., T], *args: Any, attempts: int = 60, **kwargs: Any) -> T:
    """Call ``fn``; on sqlite "database is locked", back off and call it again."""
    delay = 0.05
    for attempt in range(attempts):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            if not is_locked_error(exc) or attempt == attempts - 1:
                raise
            time.sleep(delay)
            delay = min(delay * 1.5, 1.0)
    raise AssertionError("unreachable")  # pragma: no cover


def prepare_store(uri: str) -> None:
    """Create the store once (sqlite: under a file lock) so workers only ever open it."""
    db = sqlite_path(uri)
    if db is None:
        return
    from filelock import FileLock

    db.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(db) + ".lock", timeout=300):
        from mlflow.tracking import MlflowClient

        retry_locked(MlflowClient(uri).search_experiments, max_results=1)


def ensure_experiment(uri: str, name: str) -> str:
    """The id of experiment ``name``, created (with artifacts beside an sqlite db) if new."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    db = sqlite_path(uri)

    def get_or_create() -> str:
        exp = client.get_experiment_by_name(name)
        if exp is not None:
            return exp.experiment_id
        return client.create_experiment(
            name, artifact_location=default_artifact_location(uri, name)
        )

    if db is None:
        return retry_locked(get_or_create)
    from filelock import FileLock

    with FileLock(str(db) + ".lock", timeout=300):
        return retry_locked(get_or_create)


def prepare_experiment(uri: str, name: str) -> str:
    """Create the store if needed (once, locked), then the experiment; return its id."""
    prepare_store(uri)
    return ensure_experiment(uri, name)
