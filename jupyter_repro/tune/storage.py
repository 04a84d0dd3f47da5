"""Optuna storages: the default location, opening one, and showing one without secrets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

#: File name of the default Optuna storage, beside the default MLflow store (a separate
#: database: both use Alembic, and their version tables would collide in one file).
DEFAULT_DB_NAME = "optuna.db"


def default_storage(tracking_uri: str, start: str | Path = ".") -> str:
    """``sqlite:///<folder of the MLflow sqlite store>/optuna.db``, else
    ``sqlite:///<project>/mlruns/optuna.db`` for a non-sqlite tracking store."""
    from ..provenance.store import DEFAULT_STORE_DIR, project_dir, sqlite_path

    db = sqlite_path(tracking_uri)
    folder = db.parent if db is not None else project_dir(start) / DEFAULT_STORE_DIR
    return f"sqlite:///{folder / DEFAULT_DB_NAME}"


def resolve_storage(url: str | None, tracking_uri: str, start: str | Path = ".") -> str:
    """``--storage`` (a relative sqlite path made absolute, as kernels run elsewhere),
    else :func:`default_storage`."""
    if not url:
        return default_storage(tracking_uri, start)
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        rel = url[len("sqlite:///") :]
        if rel and rel != ":memory:":
            return f"sqlite:///{Path(rel).resolve()}"
    return url


def public_url(url: str) -> str:
    """``url`` without user name and password: what is safe to put in an MLflow tag."""
    try:
        from sqlalchemy.engine import make_url

        # URL is a named tuple: ``set(username=None)`` would mean "leave as is".
        bare = make_url(url)._replace(username=None, password=None)
        return bare.render_as_string(hide_password=False)
    except Exception:  # not a URL sqlalchemy knows: keep only the scheme
        return url.split("://", 1)[0] + "://…"


def open_storage(
    url: str,
    heartbeat_interval: int | None = None,
    grace: int | None = None,
    existing: bool = False,
) -> Any:
    """An ``optuna.storages.RDBStorage`` for ``url``; sqlite waits for locks (several
    kernels and the ``tune`` process write to one file) instead of failing at once.

    ``existing``: the ``tune`` process has created and checked the storage already (a
    trial's kernel): skip Optuna's table creation and schema check, a dozen round trips
    per kernel.

    Raises:
        ReproError: the storage cannot be opened (one line naming the URL without secrets).
    """
    import optuna

    from ..errors import ReproError

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    quiet_optuna()
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite:"):
        kwargs["connect_args"] = {"timeout": 120}
        db = url[len("sqlite:///") :]
        if db and db != ":memory:":
            Path(db).parent.mkdir(parents=True, exist_ok=True)
    try:
        return optuna.storages.RDBStorage(
            url,
            engine_kwargs=kwargs,
            heartbeat_interval=heartbeat_interval,
            grace_period=grace,
            skip_compatibility_check=existing,
            skip_table_creation=existing,
        )
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        raise ReproError(
            f"cannot open Optuna storage {public_url(url)}: {type(exc).__name__}: {first}"
        ) from None


def quiet_optuna() -> None:
    """Silence Optuna's notes about the heartbeat API being experimental and meant for
    ``Study.optimize``: ``tune`` drives heartbeats itself around ask-and-tell on purpose."""
    import warnings

    import optuna

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed")
