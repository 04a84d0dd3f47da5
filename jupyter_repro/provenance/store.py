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


#: Loggers whose INFO lines ("Creating initial MLflow database tables...", alembic's
#: migration steps) would interleave with a command's own output; kept at WARNING.
QUIET_LOGGERS = ("mlflow.store.db.utils", "alembic.runtime.migration")


def quiet_mlflow() -> None:
    """Apply :data:`QUIET_MLFLOW_ENV` to this process (before MLflow's first request), and
    keep :data:`QUIET_LOGGERS` to warnings."""
    import logging

    for key, value in QUIET_MLFLOW_ENV.items():
        if key not in os.environ:
            os.environ[key] = value
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


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


#: Seconds to wait for a tracking server's TCP port before calling it unreachable
#: (MLflow's own client retries for over a minute before it says anything).
#: A refused connection or a non-MLflow answer fails at once; only a silent server waits
#: this long (a loaded server answered its first request after more than 5 s).
#: ``$JUPYTER_REPRO_REACH_TIMEOUT`` (seconds) changes it.
REACH_TIMEOUT = 20.0
#: MLflow REST endpoint every tracking server answers (GET and POST, MLflow 2 and 3).
SEARCH_PATH = "/api/2.0/mlflow/experiments/search"


#: URI schemes MLflow's tracking client opens (its tracking-store registry: REST servers,
#: file stores, SQLAlchemy databases with an optional ``+driver``, Databricks).
TRACKING_SCHEMES = frozenset(
    {"http", "https", "file", "sqlite", "postgresql", "mysql", "mssql", "databricks",
     "databricks-uc", "uc"}
)  # fmt: skip


def check_scheme(uri: str) -> None:
    """Raise :class:`~jupyter_repro.errors.ReproError` (exit 2) when MLflow has no
    tracking store for ``uri``'s scheme (``bogus://x``), before any process starts: MLflow
    itself fails later, inside a worker, with a message about its model registry."""
    import urllib.parse

    from ..errors import ReproError
    from ..uris import redact

    scheme = urllib.parse.urlsplit(uri).scheme.lower()
    if scheme and scheme.split("+", 1)[0] not in TRACKING_SCHEMES:
        raise ReproError(
            f"tracking URI {redact(uri)}: MLflow has no tracking store for scheme "
            f"'{scheme}' (use http(s)://, sqlite:///, file:, postgresql://, mysql://, "
            "mssql://, databricks or a folder)"
        )


def check_reachable(uri: str, timeout: float | None = None) -> None:
    """Raise :class:`~jupyter_repro.errors.ReproError` (exit 2) naming ``uri`` (password
    redacted) when nothing that answers like an MLflow tracking server is at an
    ``http(s)://`` ``uri`` within ``timeout`` seconds: no connection, no answer, or an
    answer other than MLflow's to ``GET <uri>/api/2.0/mlflow/experiments/search`` (200,
    or 401/403 from a server with authentication). A firewall or captive proxy that
    answers 404 for every address is caught here instead of after MLflow's minute of
    retries. ``$HTTP(S)_PROXY`` / ``$NO_PROXY`` are honoured as MLflow's client honours
    them. Other stores (sqlite, files, databricks) are only checked for a scheme MLflow
    knows (:func:`check_scheme`).
    """
    import http.client
    import urllib.error
    import urllib.parse
    import urllib.request

    from ..errors import ReproError
    from ..uris import redact

    check_scheme(uri)
    parts = urllib.parse.urlsplit(uri)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return
    if timeout is None:
        try:
            timeout = float(os.environ.get("JUPYTER_REPRO_REACH_TIMEOUT", REACH_TIMEOUT))
        except ValueError:
            timeout = REACH_TIMEOUT
    try:
        port = parts.port
    except ValueError:
        raise ReproError(f"tracking URI {redact(uri)}: invalid port") from None
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    netloc = host + (f":{port}" if port else "")
    probe = urllib.parse.urlunsplit(
        (parts.scheme, netloc, parts.path.rstrip("/") + SEARCH_PATH, "max_results=1", "")
    )
    try:
        with urllib.request.urlopen(probe, timeout=timeout) as response:
            body = response.read(4096)
        if body.lstrip().startswith(b"{"):
            return
        why = "it answers, but not as an MLflow tracking server (not JSON)"
    except urllib.error.HTTPError as exc:
        if exc.code in (401, 403):
            return  # an MLflow server with authentication: the client sends credentials
        why = f"it answers HTTP {exc.code}, not as an MLflow tracking server"
    except urllib.error.URLError as exc:
        why = str(getattr(exc, "reason", exc))
    except (TimeoutError, OSError, http.client.HTTPException) as exc:
        why = str(exc) or type(exc).__name__
    if "timed out" in why:
        why = f"no answer within {timeout:g} s"
    raise ReproError(f"tracking URI {redact(uri)}: no MLflow tracking server answers there ({why})")


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


_CLIENTS: dict[str, Any] = {}


def client(uri: str) -> Any:
    """The ``mlflow.tracking.MlflowClient`` of ``uri``, one per process (a batch worker
    reuses it for every run: MLflow caches the store behind it per URI anyway, and the
    client is safe to share between a run's threads, as its heartbeat does)."""
    found = _CLIENTS.get(uri)
    if found is None:
        from mlflow.tracking import MlflowClient

        found = _CLIENTS.setdefault(uri, MlflowClient(uri))
    return found


def prepare_store(uri: str) -> None:
    """Create the store once (sqlite: under a file lock) so workers only ever open it."""
    db = sqlite_path(uri)
    if db is None:
        return
    from filelock import FileLock

    db.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(db) + ".lock", timeout=300):
        retry_locked(client(uri).search_experiments, max_results=1)


def ensure_experiment(uri: str, name: str) -> str:
    """The id of experiment ``name``, created (with artifacts beside an sqlite db) if new."""
    mlflow = client(uri)
    db = sqlite_path(uri)

    def get_or_create() -> str:
        exp = mlflow.get_experiment_by_name(name)
        if exp is not None:
            return exp.experiment_id
        return mlflow.create_experiment(
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
