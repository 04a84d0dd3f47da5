"""What ``jupyter-repro server`` is told and what it plans to run: options, files, errors.

Pure data: no module here touches the disk or the network.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ReproError

#: Files inside ``--dir`` (relative names; the folder itself defaults to ServerOptions.dir).
DB_FILE = "mlflow.db"
ARTIFACTS_FOLDER = "artifacts"
AUTH_INI_FILE = "basic_auth.ini"
AUTH_DB_FILE = "basic_auth.db"
SECRET_KEY_FILE = "flask-secret-key"

#: MLflow's own basic-auth rule (mlflow.utils.validation._validate_password).
MIN_ADMIN_PASSWORD_LENGTH = 12

#: Hosts MLflow's security middleware accepts when ``--allowed-hosts`` is not given
#: (``mlflow server --help``: localhost on any port and the private IPv4 ranges). Giving
#: ``--allowed-hosts`` replaces that list, so ours starts with it.
MLFLOW_DEFAULT_ALLOWED_HOSTS: tuple[str, ...] = (
    "localhost",
    "localhost:*",
    "127.0.0.1",
    "127.0.0.1:*",
    "[::1]",
    "[[]::1]:*",
    "10.*",
    "192.168.*",
    *(f"172.{i}.*" for i in range(16, 32)),
)


class PortInUseError(ReproError):
    """Something already listens on ``host:port``; nothing was started (exit 2).

    Attributes:
        host: the address that was asked for.
        port: the TCP port.
    """

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        super().__init__(
            f"port {port} on {host} is already in use; stop what listens there or pass --port N"
        )


class ServerError(ReproError):
    """``mlflow server`` did not come up, or stopped by itself (exit 1).

    Attributes:
        cause: the line of the server's output that says why (or a description).
        returncode: the server's exit status, ``None`` if it was still running.
    """

    exit_code = 1

    def __init__(self, message: str, cause: str, returncode: int | None) -> None:
        self.cause = cause
        self.returncode = returncode
        super().__init__(f"{message}: {cause}" if cause else message)


@dataclass(frozen=True)
class ServerOptions:
    """Everything ``jupyter-repro server`` is told; defaults live here and nowhere else.

    Attributes:
        host: interface to bind (``0.0.0.0`` / ``::`` for every interface).
        port: TCP port, 1-65535.
        dir: folder for the default stores (``mlflow.db``, ``artifacts/``) and basic-auth
            files; created when needed.
        backend_store_uri: database URI replacing ``sqlite:///DIR/mlflow.db``; when unset,
            ``$MLFLOW_BACKEND_STORE_URI`` is honoured (keeps passwords off the command line).
        artifacts_destination: where served artifacts are stored instead of
            ``DIR/artifacts`` (``s3://bucket/path``, ...); ``$MLFLOW_ARTIFACTS_DESTINATION``
            is honoured the same way.
        workers: uvicorn worker processes (``None``: MLflow's default, 4).
        app_name: MLflow server app, e.g. ``basic-auth``.
        public_url: the URL users reach the server by when it is not ``http://HOST:PORT``
            (a TLS reverse proxy); it is printed and accepted by the security middleware.
        timeout: seconds to wait for ``/health`` before giving up.
        mlflow_args: further ``mlflow server`` arguments, passed verbatim.
        no_auth: accept a non-loopback ``host`` without ``--app-name`` (anyone who reaches
            the port can read and change every run); refused otherwise.
    """

    host: str = "127.0.0.1"
    port: int = 5000
    dir: str = "mlflow-server"
    backend_store_uri: str | None = None
    artifacts_destination: str | None = None
    workers: int | None = None
    app_name: str | None = None
    public_url: str | None = None
    timeout: float = 120.0
    mlflow_args: tuple[str, ...] = ()
    no_auth: bool = False


@dataclass(frozen=True)
class AuthFiles:
    """Where basic auth keeps its state when this command manages it (all inside ``DIR``).

    Attributes:
        ini: the auth config file (``MLFLOW_AUTH_CONFIG_PATH``), written on first start.
        database: the sqlite user/permission store named in ``ini``.
        secret_key: file holding ``MLFLOW_FLASK_SERVER_SECRET_KEY`` (0600), made on first
            start unless that variable is set.
    """

    ini: Path | None
    database: Path | None
    secret_key: Path | None


@dataclass(frozen=True)
class ServerPlan:
    """What :func:`serve` will run, computed without side effects by :func:`plan_server`.

    Attributes:
        command: the ``mlflow server`` argv (``sys.executable -m mlflow server ...``).
        env: variables added to the server's environment (no secrets).
        secret_env: variables the server needs that hold a secret (a backend URI with a
            password, kept off the command line where ``ps`` shows it to every user);
            never printed.
        tracking_uri: what users set ``MLFLOW_TRACKING_URI`` to.
        health_url: polled until it answers ``OK``.
        backend_store_uri: where runs and metrics live (may hold a password: redact).
        artifacts_destination: where artifacts live.
        folder: absolute ``DIR`` when anything lives there, else ``None``.
        auth: basic-auth files, when ``--app-name basic-auth`` and this command manages them.
        allowed_hosts: Host names passed to ``--allowed-hosts`` (empty: MLflow's default).
        notes: lines for stderr that explain choices made for the user.
    """

    command: tuple[str, ...]
    env: Mapping[str, str]
    tracking_uri: str
    health_url: str
    backend_store_uri: str
    artifacts_destination: str
    folder: Path | None
    auth: AuthFiles | None = None
    secret_env: Mapping[str, str] = field(default_factory=dict)
    allowed_hosts: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default=())

    def shell_command(self) -> str:
        """The plan as one shell line (``env K=V ... python -m mlflow server ...``)."""
        env = [f"{k}={v}" for k, v in sorted(self.env.items())]
        return shlex.join(["env", *env, *self.command] if env else list(self.command))


# --------------------------------------------------------------------------- planning


def parse_int(text: str | int, option: str, low: int, high: int) -> int:
    """``text`` as an int in ``[low, high]``; raises :class:`ReproError` (exit 2) naming
    ``option`` otherwise."""
    try:
        value = int(str(text).strip(), 10)
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        raise ReproError(f"{option} must be an integer from {low} to {high}, not {text!r}")
    return value
