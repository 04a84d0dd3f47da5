"""Checks and set-up before ``mlflow server`` starts: the port, the admin password, and
the files inside ``DIR`` (created private: they hold runs and password hashes)."""

from __future__ import annotations

import errno
import os
import secrets
import socket
from pathlib import Path

from ..errors import ReproError
from .options import MIN_ADMIN_PASSWORD_LENGTH, AuthFiles, PortInUseError, ServerPlan


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


def prepare(plan: ServerPlan) -> dict[str, str]:
    """Create ``DIR`` and the basic-auth files the plan needs; return the secret variables
    for the server's environment (never printed).

    Raises:
        ReproError: a file in ``DIR`` cannot be written (exit 2).
    """
    secret_env: dict[str, str] = {}
    if plan.folder is None:
        return secret_env
    try:
        plan.folder.mkdir(mode=0o700, parents=True, exist_ok=True)  # data and password hashes
        if plan.auth and plan.auth.ini and not plan.auth.ini.exists():
            plan.auth.ini.write_text(
                "# Written by jupyter-repro server; edit freely (it is not overwritten).\n"
                "# Keys: mlflow/server/auth/basic_auth.ini in MLflow's sources.\n"
                "[mlflow]\n"
                "default_permission = READ\n"
                f"database_uri = sqlite:///{plan.auth.database}\n"
                "admin_username = admin\n"
                "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n",
                encoding="utf-8",
            )
        if plan.auth and plan.auth.secret_key:
            secret_env["MLFLOW_FLASK_SERVER_SECRET_KEY"] = _secret_key(plan.auth.secret_key)
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
