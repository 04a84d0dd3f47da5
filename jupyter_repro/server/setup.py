"""Checks and set-up before ``mlflow server`` starts: the port, the admin password, and
the files inside ``DIR`` (created private: they hold runs and password hashes)."""

from __future__ import annotations

import errno
import os
import secrets
import socket
from pathlib import Path

from ..errors import ReproError
from .options import (
    ARTIFACTS_FOLDER,
    DB_FILE,
    MIN_ADMIN_PASSWORD_LENGTH,
    AuthFiles,
    PortInUseError,
    ServerPlan,
)


def check_port_free(host: str, port: int) -> None:
    """Bind ``host:port`` the way uvicorn will (``SO_REUSEADDR``) and let it go again.

    Raises:
        PortInUseError: something listens there (exit 2).
        ReproError: the host does not resolve, is not an address of this machine, or the
            port needs privileges (exit 2).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host.strip("[]"), port))
        except socket.gaierror as exc:
            raise ReproError(f"--host {host}: cannot resolve it ({exc.strerror})") from None
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortInUseError(host, port) from None
            if exc.errno == errno.EADDRNOTAVAIL:
                raise ReproError(
                    f"--host {host}: not an address of this machine (use 0.0.0.0 for all)"
                ) from None
            if exc.errno == errno.EACCES:
                raise ReproError(
                    f"cannot listen on port {port} on {host}: permission denied "
                    "(ports below 1024 need privileges)"
                ) from None
            raise ReproError(f"cannot listen on port {port} on {host}: {exc.strerror}") from None


def _check_admin_password(auth: AuthFiles) -> None:
    """First start of a managed auth store: MLflow creates user ``admin`` and needs its
    password; say so now rather than as a traceback from the server."""
    if auth.database is None or auth.database.exists():
        return
    password = os.environ.get("MLFLOW_AUTH_ADMIN_PASSWORD", "")
    if not password:
        raise ReproError(
            "--app-name basic-auth: the first start creates user 'admin'; set "
            f"MLFLOW_AUTH_ADMIN_PASSWORD ({MIN_ADMIN_PASSWORD_LENGTH}+ characters) to its password"
        )
    if len(password) < MIN_ADMIN_PASSWORD_LENGTH:
        raise ReproError(
            f"MLFLOW_AUTH_ADMIN_PASSWORD is {len(password)} characters; MLflow requires "
            f"at least {MIN_ADMIN_PASSWORD_LENGTH}"
        )


def private_paths(plan: ServerPlan) -> tuple[list[Path], list[Path]]:
    """``(files, folders)`` inside ``DIR`` that hold runs, artifacts or password hashes:
    the default sqlite store, the basic-auth database and config, the CSRF key file, and
    the default artifacts folder (see :func:`prepare`)."""
    files: list[Path] = []
    folders: list[Path] = []
    if plan.folder is None:
        return files, folders
    if plan.backend_store_uri == f"sqlite:///{plan.folder / DB_FILE}":
        files.append(plan.folder / DB_FILE)
    if plan.artifacts_destination == str(plan.folder / ARTIFACTS_FOLDER):
        folders.append(plan.folder / ARTIFACTS_FOLDER)
    if plan.auth:
        files += [p for p in (plan.auth.database, plan.auth.ini, plan.auth.secret_key) if p]
    return files, folders


def _make_private(path: Path, folder: bool) -> None:
    """Create ``path`` owner-only (file 0600, folder 0700), or take group and other
    permissions off an existing one that is ours. An empty file is a valid new sqlite
    database, and sqlite gives its journal and WAL files the database's mode."""
    mode = 0o700 if folder else 0o600
    if folder:
        path.mkdir(mode=mode, exist_ok=True)
    elif not path.exists():
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode))
    st = path.stat()
    if st.st_uid == os.getuid() and st.st_mode & 0o077:
        os.chmod(path, st.st_mode & 0o700)


def prepare(plan: ServerPlan) -> dict[str, str]:
    """Create ``DIR`` and the files the plan needs, owner-only (0700 / 0600) even when
    ``DIR`` already exists and is world-readable: ``mlflow.db`` holds every run,
    ``basic_auth.db`` the password hashes. Returns the secret variables for the server's
    environment (never printed).

    Raises:
        ReproError: a file in ``DIR`` cannot be written (exit 2).
    """
    secret_env: dict[str, str] = dict(plan.secret_env)
    if plan.folder is None:
        return secret_env
    try:
        plan.folder.mkdir(mode=0o700, parents=True, exist_ok=True)  # data and password hashes
        files, folders = private_paths(plan)
        for path in folders:
            _make_private(path, folder=True)
        for path in files:
            if plan.auth and path in (plan.auth.ini, plan.auth.secret_key):
                continue  # written below, private from the start
            _make_private(path, folder=False)
        if plan.auth and plan.auth.ini and not plan.auth.ini.exists():
            fd = os.open(plan.auth.ini, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(
                    "# Written by jupyter-repro server; edit freely (it is not overwritten).\n"
                    "# Keys: mlflow/server/auth/basic_auth.ini in MLflow's sources.\n"
                    "[mlflow]\n"
                    "default_permission = READ\n"
                    f"database_uri = sqlite:///{plan.auth.database}\n"
                    "admin_username = admin\n"
                    "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
                )
        if plan.auth and plan.auth.secret_key:
            secret_env["MLFLOW_FLASK_SERVER_SECRET_KEY"] = _secret_key(plan.auth.secret_key)
        for path in files:
            if path.exists():
                _make_private(path, folder=False)
    except OSError as exc:
        where = exc.filename or plan.folder
        raise ReproError(f"--dir {plan.folder}: cannot write {where}: {exc.strerror}") from None
    return secret_env


def _secret_key(path: Path) -> str:
    """The CSRF key kept in ``path``, created (mode 0600) on first use so that it stays the
    same across restarts (sessions survive) and never appears on a command line."""
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32) + "\n")
    return path.read_text(encoding="utf-8").strip()
