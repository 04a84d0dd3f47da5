"""``jupyter-repro server``: start a team MLflow tracking server and say how to use it.

The server is MLflow's documented multi-user deployment: runs, parameters and metrics in a
database (sqlite in ``DIR/mlflow.db`` by default, PostgreSQL and the like with
``--backend-store-uri``) and artifacts *served* through the server (``--serve-artifacts``,
stored in ``DIR/artifacts`` or ``--artifacts-destination``), so clients need nothing but
the URL: no shared disk, no object-store credentials.

What this wrapper adds to a bare ``mlflow server``:

- checks before starting (port free, ``DIR`` writable, basic-auth prerequisites), each
  failure one line and exit 2;
- on a non-loopback ``--host`` the ``--allowed-hosts`` / ``--cors-allowed-origins`` that
  MLflow's security middleware needs so that users can reach it by the machine's name;
- it waits until ``/health`` answers, then prints the one line users paste
  (``export MLFLOW_TRACKING_URI=...``);
- it owns the whole process tree (``mlflow server`` starts uvicorn, its workers, a job
  runner and huey consumers): Ctrl-C / SIGTERM / SIGHUP stop all of it, and a server that
  stops by itself is reported with the line of its output that says why.

:func:`plan_server` is pure (what would run), :func:`serve` runs it; the CLI is a thin
shell over both.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import errno
import ipaddress
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from .errors import ReproError
from .processes import die_with_parent, tree_members

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

#: ``mlflow server`` options this command sets itself; passing them after ``--`` would make
#: the printed URL or the stores differ from what actually runs.
_OWN_OPTIONS = {
    "--host": "--host",
    "-h": "--host",
    "--port": "--port",
    "-p": "--port",
    "--backend-store-uri": "--backend-store-uri",
    "--artifacts-destination": "--artifacts-destination",
    "--serve-artifacts": None,
    "--no-serve-artifacts": None,
    "--artifacts-only": None,
    "--workers": "--workers",
    "-w": "--workers",
    "--app-name": "--app-name",
}

#: Set by ``mlflow server`` for its workers: a per-start folder it never removes.
_HUEY_STORAGE_ENV = "_MLFLOW_HUEY_STORAGE_PATH"


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


def _is_wildcard(host: str) -> bool:
    return host in ("0.0.0.0", "::", "[::]", "")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _url_host(host: str) -> str:
    """``host`` as it goes in a URL (IPv6 in brackets)."""
    host = host.strip("[]")
    return f"[{host}]" if ":" in host else host


def _host_pattern(name: str) -> str:
    """``name`` as an ``--allowed-hosts`` entry: MLflow compares entries without ``*``
    literally and the others with fnmatch, where an IPv6 ``[`` must be escaped."""
    return name.replace("[", "[[]", 1) if "*" in name and name.startswith("[") else name


def machine_names(ipv6: bool = True) -> tuple[str, list[str]]:
    """The name users should type for this machine and every name/address it answers to.

    Returns ``(preferred, names)``. ``preferred`` is the fully qualified name when it has a
    domain, else the short hostname, provided it resolves; otherwise the first interface
    address (a URL with a name nobody can resolve helps no one). ``names`` holds the
    resolvable names and every non-loopback, non-link-local interface address (IPv6 ones
    in brackets, only if ``ipv6``), without duplicates.
    """
    import psutil

    short = socket.gethostname()
    fqdn = socket.getfqdn()
    candidates = [fqdn] if "." in fqdn and not fqdn.startswith("localhost") else []
    candidates.append(short)
    names = [name for name in dict.fromkeys(candidates) if _resolves(name)]
    addresses: list[str] = []
    for addrs in psutil.net_if_addrs().values():
        for addr in addrs:
            if addr.family not in (socket.AF_INET, socket.AF_INET6):
                continue
            try:
                ip = ipaddress.ip_address(addr.address.split("%")[0])
            except ValueError:
                continue
            if ip.is_loopback or ip.is_link_local or (ip.version == 6 and not ipv6):
                continue
            addresses.append(f"[{ip}]" if ip.version == 6 else str(ip))
    names = list(dict.fromkeys([*names, *addresses]))
    preferred = names[0] if names else short
    return preferred, names or [short]


def _resolves(name: str) -> bool:
    try:
        return bool(socket.getaddrinfo(name, None, type=socket.SOCK_STREAM))
    except (OSError, UnicodeError):
        return False


def _split_static_prefix(args: tuple[str, ...]) -> str:
    """The ``--static-prefix`` among ``args`` (or ``$MLFLOW_STATIC_PREFIX``), or ``""``."""
    prefix = os.environ.get("MLFLOW_STATIC_PREFIX", "")
    for i, arg in enumerate(args):
        if arg == "--static-prefix" and i + 1 < len(args):
            prefix = args[i + 1]
        elif arg.startswith("--static-prefix="):
            prefix = arg.split("=", 1)[1]
    return prefix.rstrip("/")


def _given(args: tuple[str, ...], option: str) -> bool:
    return any(a == option or a.startswith(option + "=") for a in args)


def _is_local_path(uri: str) -> bool:
    return "://" not in uri and not uri.startswith("file:")


def _check_folder(path: Path, option: str) -> None:
    """Raise :class:`ReproError` unless ``path`` is, or can be made, a writable folder."""
    if path.exists():
        if not path.is_dir():
            raise ReproError(f"{option} {path}: is not a folder")
        if not os.access(path, os.W_OK | os.X_OK):
            raise ReproError(f"{option} {path}: is not writable")
        return
    existing = next((p for p in path.parents if p.exists()), Path("."))
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise ReproError(f"{option} {path}: cannot create it ({existing} is not a writable folder)")


def _check_app_name(app_name: str) -> None:
    from importlib.metadata import entry_points

    known = sorted({ep.name for ep in entry_points(group="mlflow.app")})
    if app_name not in known:
        raise ReproError(
            f"--app-name {app_name}: MLflow has no such server app "
            f"(installed: {', '.join(known) or 'none'})"
        )
    if app_name == "basic-auth":
        import importlib.util

        if importlib.util.find_spec("flask_wtf") is None:
            raise ReproError(
                "--app-name basic-auth needs Flask-WTF, which is not installed: "
                "pip install 'mlflow[auth]'"
            )


def plan_server(options: ServerOptions) -> ServerPlan:
    """Validate ``options`` and compute the ``mlflow server`` command, its environment and
    the URL users set; touches nothing on disk (only name lookups for a non-loopback host).

    Raises:
        ReproError: bad input (port out of range, ``DIR`` not usable, an option passed
            after ``--`` that this command owns, unknown ``--app-name``, ...): exit 2.
    """
    host, port = options.host.strip(), options.port
    if not 1 <= port <= 65535:
        raise ReproError(f"--port must be an integer from 1 to 65535, not {port}")
    if options.workers is not None and options.workers < 1:
        raise ReproError(f"--workers must be at least 1, not {options.workers}")
    if not options.timeout > 0:
        raise ReproError(f"--timeout must be positive, not {options.timeout:g}")
    extra = tuple(options.mlflow_args)
    for arg in extra:
        own = next((o for o in _OWN_OPTIONS if arg == o or arg.startswith(o + "=")), None)
        if own:
            better = _OWN_OPTIONS[own]
            hint = f"use jupyter-repro server's own {better}" if better else "it is always set"
            raise ReproError(f"{own} cannot be passed to mlflow server after --: {hint}")

    notes: list[str] = []
    folder = Path(options.dir).expanduser().absolute()
    uses_folder = False

    backend = options.backend_store_uri
    backend_on_cli = True
    if not backend and os.environ.get("MLFLOW_BACKEND_STORE_URI"):
        backend, backend_on_cli = os.environ["MLFLOW_BACKEND_STORE_URI"], False
        notes.append("runs and metrics: from $MLFLOW_BACKEND_STORE_URI")
    if not backend:
        backend, uses_folder = f"sqlite:///{folder / DB_FILE}", True

    artifacts = options.artifacts_destination
    artifacts_on_cli = True
    if not artifacts and os.environ.get("MLFLOW_ARTIFACTS_DESTINATION"):
        artifacts, artifacts_on_cli = os.environ["MLFLOW_ARTIFACTS_DESTINATION"], False
    if not artifacts:
        artifacts, uses_folder = str(folder / ARTIFACTS_FOLDER), True
    elif _is_local_path(artifacts):
        artifacts = str(Path(artifacts).expanduser().absolute())

    env: dict[str, str] = {}
    auth: AuthFiles | None = None
    if options.app_name:
        _check_app_name(options.app_name)
    if options.app_name == "basic-auth":
        manage_ini = not os.environ.get("MLFLOW_AUTH_CONFIG_PATH")
        keep_key = not os.environ.get("MLFLOW_FLASK_SERVER_SECRET_KEY")
        auth = AuthFiles(
            ini=folder / AUTH_INI_FILE if manage_ini else None,
            database=folder / AUTH_DB_FILE if manage_ini else None,
            secret_key=folder / SECRET_KEY_FILE if keep_key else None,
        )
        uses_folder = uses_folder or manage_ini or keep_key
        if manage_ini:
            env["MLFLOW_AUTH_CONFIG_PATH"] = str(auth.ini)

    if uses_folder:
        _check_folder(folder, "--dir")

    prefix = _split_static_prefix(extra)
    probe = {"0.0.0.0": "127.0.0.1", "::": "::1", "[::]": "::1", "": "127.0.0.1"}.get(host, host)
    health_url = f"http://{_url_host(probe)}:{port}{prefix}/health"

    allowed: list[str] = []
    origins: list[str] = []
    tracking_uri = f"http://{_url_host(host)}:{port}{prefix}"
    if options.public_url:
        public = urllib.parse.urlsplit(options.public_url)
        if public.scheme not in ("http", "https") or not public.hostname:
            raise ReproError(
                f"--public-url {options.public_url}: expected http(s)://HOST[:PORT][/PATH]"
            )
        tracking_uri = options.public_url.rstrip("/")
        public_host = _url_host(public.hostname)
        allowed += [public.netloc, public_host, _host_pattern(f"{public_host}:*")]
        origins.append(f"{public.scheme}://{public.netloc}")
    if not _is_loopback(host):
        preferred, names = machine_names(ipv6=":" in host)
        shown = preferred if _is_wildcard(host) else host
        if not options.public_url:
            tracking_uri = f"http://{_url_host(shown)}:{port}{prefix}"
        if not _is_wildcard(host):
            names.insert(0, _url_host(host))
        names = list(dict.fromkeys(names))
        for name in names:
            allowed += [_host_pattern(name), _host_pattern(f"{name}:*")]
            origins.append(f"http://{name}:{port}")
        notes.append(
            f"reachable from other machines as {', '.join(names[:4])}"
            + (" ..." if len(names) > 4 else "")
            + " (accepted by MLflow's Host check besides localhost and private IPs)"
        )
        if not options.app_name:
            notes.append(
                "no authentication: whoever reaches this port can read and change every run "
                "(--app-name basic-auth adds users; docs/team-server.md)"
            )

    security_off = _given(extra, "--disable-security-middleware")
    allowed_hosts: tuple[str, ...] = ()
    security: list[str] = []
    if allowed and not security_off:
        if _given(extra, "--allowed-hosts"):
            notes.append("--allowed-hosts: yours, passed after --")
        else:
            allowed_hosts = tuple(dict.fromkeys([*MLFLOW_DEFAULT_ALLOWED_HOSTS, *allowed]))
            security += ["--allowed-hosts", ",".join(allowed_hosts)]
        if not _given(extra, "--cors-allowed-origins"):
            security += ["--cors-allowed-origins", ",".join(dict.fromkeys(origins))]

    command = [sys.executable, "-m", "mlflow", "server", "--host", host, "--port", str(port)]
    if backend_on_cli:
        command += ["--backend-store-uri", backend]
    if artifacts_on_cli:
        command += ["--artifacts-destination", artifacts]
    command.append("--serve-artifacts")
    if options.workers is not None:
        command += ["--workers", str(options.workers)]
    if options.app_name:
        command += ["--app-name", options.app_name]
    command += security
    command += extra

    return ServerPlan(
        command=tuple(command),
        env=env,
        tracking_uri=tracking_uri,
        health_url=health_url,
        backend_store_uri=backend,
        artifacts_destination=artifacts,
        folder=folder if uses_folder else None,
        auth=auth,
        allowed_hosts=allowed_hosts,
        notes=tuple(notes),
    )


def redact(uri: str) -> str:
    """``uri`` with any password replaced by ``***`` (for logs, never for the command)."""
    parts = urllib.parse.urlsplit(uri)
    if parts.password is None:
        return uri
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


# ------------------------------------------------------------------- checks and setup


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


# --------------------------------------------------------------------- the process tree


def _health_ok(url: str) -> bool:
    import http.client
    import urllib.request

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never a proxy
    try:
        with opener.open(url, timeout=3) as response:
            return response.status == 200 and response.read(16).strip() == b"OK"
    except (OSError, http.client.HTTPException):
        return False


class _Hangup(KeyboardInterrupt):
    """SIGHUP (the terminal went away), handled like Ctrl-C: the server must not outlive us."""


def _on_sighup(signum: int, frame: Any) -> None:
    raise _Hangup()


class ServerProcess:
    """A running ``mlflow server`` in its own process group, its output relayed to ``log``.

    The last lines of its output are kept so that a failure can be reported by the line
    that explains it; :meth:`stop` ends every process of the tree.
    """

    def __init__(self, plan: ServerPlan, secret_env: Mapping[str, str], log: IO[str]) -> None:
        env = {**os.environ, **plan.env, **secret_env, "PYTHONUNBUFFERED": "1"}
        self.log = log
        self.tail: collections.deque[str] = collections.deque(maxlen=200)
        self.popen = subprocess.Popen(
            list(plan.command),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            preexec_fn=die_with_parent(),
        )
        self.pid = self.popen.pid
        self._known: dict[int, Any] = {}
        self._huey_dir: str | None = None
        self._reader = threading.Thread(target=self._relay, name="mlflow-server-log", daemon=True)
        self._reader.start()

    def _relay(self) -> None:
        assert self.popen.stdout is not None
        for raw in iter(self.popen.stdout.readline, b""):
            line = raw.decode("utf-8", errors="replace").rstrip("\n")
            self.tail.append(line)
            try:
                self.log.write(line + "\n")
                self.log.flush()
            except (OSError, ValueError):  # our stderr is gone: keep draining the pipe
                pass
        self.popen.stdout.close()

    def poll(self) -> int | None:
        """The server's exit status, ``None`` while it runs."""
        return self.popen.poll()

    def wait(self) -> int:
        """Block until the server process exits (interruptible by signals)."""
        return self.popen.wait()

    def cause(self) -> str:
        """The output line that best explains a failure: the last Python exception line,
        else the last ``ERROR`` line (uvicorn's bind error), else the last line."""
        if self.popen.poll() is not None:
            self._reader.join(timeout=3)
        lines = [line.strip() for line in self.tail if line.strip()]
        generic = "Running the mlflow server failed"
        for line in reversed(lines):
            head = line.split(":", 1)[0]
            if head.endswith(("Error", "Exception")) and " " not in head:
                return line[:400]
        for line in reversed(lines):
            if "ERROR" in line and generic not in line:
                return line.split("ERROR", 1)[1].lstrip(": ").strip()[:400]
        return lines[-1][:400] if lines else "no output"

    def remember_tree(self) -> None:
        """Note every process of the tree now (and the per-start folder MLflow leaves in
        /dev/shm), so that :meth:`stop` finds them even if they leave the process group."""
        import psutil

        try:
            root = psutil.Process(self.pid)
            tree = root.children(recursive=True)
        except psutil.Error:
            return
        for proc in tree:
            self._known[proc.pid] = proc
            if self._huey_dir is None:
                with contextlib.suppress(psutil.Error):
                    self._huey_dir = proc.environ().get(_HUEY_STORAGE_ENV)

    def _members(self) -> list[Any]:
        """Live processes of the tree other than the root: remembered, current
        descendants and anything still in the process group."""
        return tree_members(self.pid, self._known.values())

    def stop(self, grace: float = 20.0) -> None:
        """End the whole tree: SIGTERM (graceful: uvicorn finishes requests), SIGKILL for
        what is left after ``grace`` seconds or at a second Ctrl-C/SIGTERM. Idempotent."""
        import psutil

        others = self._members()
        if self.popen.poll() is None or others:
            self.log.write(f"jupyter-repro server: stopping mlflow server (pid {self.pid})\n")
            self.log.flush()
        force = threading.Event()
        with _signals_set(force):
            self._send(others, signal.SIGTERM)
            deadline = time.monotonic() + grace
            while not force.is_set() and time.monotonic() < deadline:
                if self.popen.poll() is not None and not self._members():
                    break
                time.sleep(0.2)
            if self.popen.poll() is None or self._members():
                self._send(self._members(), signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=10)
            psutil.wait_procs(self._members(), timeout=5)
        if self.popen.poll() is not None:
            self._reader.join(timeout=5)
        self._remove_huey_dir()

    def _send(self, others: list[Any], sig: int) -> None:
        """``sig`` to the process group, the root, and members that left the group."""
        import psutil

        try:
            os.killpg(self.pid, sig)
        except (ProcessLookupError, PermissionError):
            if self.popen.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    self.popen.send_signal(sig)
        for proc in others:
            with contextlib.suppress(OSError, psutil.Error):
                if os.getpgid(proc.pid) != self.pid:
                    proc.send_signal(sig)

    def _remove_huey_dir(self) -> None:
        """MLflow makes a fresh job-queue folder per start (``/dev/shm/tmpXXXX``) and never
        deletes it; once the tree is gone nothing can use it again."""
        path = self._huey_dir
        if not path:
            return
        folder = Path(path)
        roots = {Path("/dev/shm"), Path(tempfile.gettempdir())}
        if folder.parent in roots and folder.name.startswith("tmp") and folder.is_dir():
            shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def _signals_set(event: threading.Event) -> Iterator[None]:
    """While stopping, Ctrl-C / SIGTERM / SIGHUP set ``event`` (stop waiting, kill now)
    instead of interrupting the clean-up."""
    names = ("SIGINT", "SIGTERM", "SIGHUP")
    previous: dict[int, Any] = {}
    for name in names:
        sig = getattr(signal, name, None)
        if sig is None:
            continue
        try:
            previous[sig] = signal.signal(sig, lambda signum, frame: event.set())
        except ValueError:  # not the main thread: nothing to intercept
            pass
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


# -------------------------------------------------------------------------- the command


def serve(options: ServerOptions, out: IO[str] | None = None, err: IO[str] | None = None) -> int:
    """Start the server, wait for ``/health``, print ``export MLFLOW_TRACKING_URI=...`` to
    ``out`` (where data lives, to ``err``), and stay in the foreground.

    Returns only through exceptions or a hangup: Ctrl-C / SIGTERM reach the caller as
    ``KeyboardInterrupt`` (``run_command`` makes them 130 / 143) after the whole server tree
    is stopped; SIGHUP returns 129 after the same clean-up.

    Raises:
        PortInUseError, ReproError: bad input, nothing started (exit 2).
        ServerError: the server did not answer within ``options.timeout`` seconds, or exited
            by itself; the message carries its explaining output line (exit 1).
    """
    out = out or sys.stdout
    err = err or sys.stderr
    if (
        threading.current_thread() is threading.main_thread()
        and signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    ):
        # started in the background by a script (`cmd &` ignores SIGINT): a server must
        # still stop on Ctrl-C / `kill -INT`, so take SIGINT back
        signal.signal(signal.SIGINT, signal.default_int_handler)
    plan = plan_server(options)
    check_port_free(options.host.strip(), options.port)
    if plan.auth:
        _check_admin_password(plan.auth)
    secret_env = prepare(plan)

    previous_hup = None
    if hasattr(signal, "SIGHUP"):
        with contextlib.suppress(ValueError):
            previous_hup = signal.signal(signal.SIGHUP, _on_sighup)
    server = ServerProcess(plan, secret_env, err)
    try:
        _wait_healthy(server, plan, options.timeout)
        server.remember_tree()
        _announce(plan, server, out, err)
        returncode = server.wait()
        raise ServerError(
            f"mlflow server (pid {server.pid}) stopped by itself with status {returncode}",
            server.cause(),
            returncode,
        )
    except _Hangup:
        server.stop()
        print("jupyter-repro: hangup", file=err, flush=True)
        return 129
    finally:
        server.stop()
        if previous_hup is not None:
            signal.signal(signal.SIGHUP, previous_hup)


def _wait_healthy(server: ServerProcess, plan: ServerPlan, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        returncode = server.poll()
        if returncode is not None:
            raise ServerError(
                f"mlflow server exited with status {returncode} before answering {plan.health_url}",
                server.cause(),
                returncode,
            )
        if _health_ok(plan.health_url):
            return
        if time.monotonic() > deadline:
            raise ServerError(
                f"mlflow server did not answer {plan.health_url} within {timeout:g} s "
                "(--timeout); its last output",
                server.cause(),
                None,
            )
        time.sleep(0.5)


def _announce(plan: ServerPlan, server: ServerProcess, out: IO[str], err: IO[str]) -> None:
    artifacts = plan.artifacts_destination
    lines = [
        f"jupyter-repro server: MLflow tracking server ready at {plan.tracking_uri} "
        f"(UI and API; pid {server.pid})",
        f"  runs and metrics: {redact(plan.backend_store_uri)}",
        f"  artifacts:        {redact(artifacts)} (uploaded and downloaded through the "
        "server; clients need no access to it)",
    ]
    if plan.auth:
        where = plan.auth.database or "the database named in $MLFLOW_AUTH_CONFIG_PATH"
        lines.append(
            f"  basic auth:       users in {where}; clients set MLFLOW_TRACKING_USERNAME "
            "and MLFLOW_TRACKING_PASSWORD"
        )
    lines += [f"  note: {note}" for note in plan.notes]
    lines.append(
        f"  use it:           jupyter-repro batch NOTEBOOK --tracking-uri {plan.tracking_uri}"
        "   (or the export line on stdout)"
    )
    lines.append("  stop with Ctrl-C")
    err.write("\n".join(lines) + "\n")
    err.flush()
    out.write(f"export MLFLOW_TRACKING_URI={shlex.quote(plan.tracking_uri)}\n")
    out.flush()


def print_command(
    options: ServerOptions, out: IO[str] | None = None, err: IO[str] | None = None
) -> int:
    """``--print-command``: print the ``mlflow server`` line :func:`serve` would run and
    exit 0, creating nothing. Secrets are not printed; ``err`` names what the line needs.

    Raises:
        ReproError: bad input (exit 2), as for :func:`serve`.
    """
    out = out or sys.stdout
    err = err or sys.stderr
    plan = plan_server(options)
    print(plan.shell_command(), file=out)
    if plan.auth and plan.auth.secret_key:
        print(
            "jupyter-repro server: the server also needs MLFLOW_FLASK_SERVER_SECRET_KEY "
            f"(jupyter-repro server keeps one in {plan.auth.secret_key})",
            file=err,
        )
    if plan.auth and plan.auth.ini and not plan.auth.ini.exists():
        print(
            f"jupyter-repro server: {plan.auth.ini} is written by the first "
            "`jupyter-repro server` start",
            file=err,
        )
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``server`` subcommand to the umbrella parser."""
    d = ServerOptions()
    s = subparsers.add_parser(
        "server",
        help="start a team MLflow tracking server and print the MLFLOW_TRACKING_URI to use",
        description="Start `mlflow server` with a database backend (sqlite in DIR/mlflow.db "
        "unless --backend-store-uri) and artifacts served through it (DIR/artifacts unless "
        "--artifacts-destination), wait until it answers, print the "
        "`export MLFLOW_TRACKING_URI=...` line users paste, and run in the foreground until "
        "Ctrl-C / SIGTERM, which stop the whole server. Exit 1 if it fails or stops by "
        "itself, 2 on bad input, 130 / 143 when interrupted / terminated. "
        "Arguments after -- go to `mlflow server` verbatim. Guide: docs/team-server.md.",
    )
    s.add_argument(
        "--host",
        default=d.host,
        help=f"interface to bind (default {d.host}; "
        "0.0.0.0 for every interface: the machine's names are then allowed)",
    )
    s.add_argument("--port", default=str(d.port), help=f"TCP port (default {d.port})")
    s.add_argument(
        "--dir",
        default=d.dir,
        metavar="DIR",
        help=f"folder for mlflow.db, artifacts/ and basic-auth files (default ./{d.dir})",
    )
    s.add_argument(
        "--backend-store-uri",
        metavar="URI",
        default=None,
        help="database instead of sqlite:///DIR/mlflow.db, e.g. "
        "postgresql://user:pass@db/mlflow (default: $MLFLOW_BACKEND_STORE_URI)",
    )
    s.add_argument(
        "--artifacts-destination",
        metavar="URI",
        default=None,
        help="where served artifacts are stored instead of DIR/artifacts, e.g. "
        "s3://bucket/path (credentials on the server only)",
    )
    s.add_argument(
        "--workers",
        metavar="N",
        default=None,
        help="uvicorn worker processes (default: MLflow's, 4)",
    )
    s.add_argument(
        "--app-name",
        metavar="NAME",
        default=None,
        help="MLflow server app, e.g. basic-auth (users and passwords)",
    )
    s.add_argument(
        "--public-url",
        metavar="URL",
        default=None,
        help="URL users reach it by, e.g. behind a TLS proxy "
        "(https://mlflow.example.org): printed and allowed by the Host check",
    )
    s.add_argument(
        "--timeout",
        metavar="SECONDS",
        default=str(d.timeout),
        help=f"seconds to wait for the server to answer (default {d.timeout:g})",
    )
    s.add_argument(
        "--print-command",
        "--dry-run",
        action="store_true",
        help="print the mlflow server command line and exit (e.g. for a "
        "systemd unit); starts and creates nothing",
    )
    s.add_argument(
        "mlflow_args",
        nargs="*",
        metavar="-- MLFLOW_ARG",
        help="arguments after -- are passed to mlflow server verbatim",
    )
    s.set_defaults(func=server_command)


def server_command(args: argparse.Namespace) -> int:
    """``jupyter-repro server``: 0 (``--print-command``), 1 the server failed or stopped by
    itself, 2 bad input, 129 / 130 / 143 hangup / interrupted / terminated."""
    try:
        timeout = float(args.timeout)
    except ValueError:
        raise ReproError(f"--timeout must be a number of seconds, not {args.timeout!r}") from None
    options = ServerOptions(
        host=args.host,
        port=parse_int(args.port, "--port", 1, 65535),
        dir=args.dir,
        backend_store_uri=args.backend_store_uri,
        artifacts_destination=args.artifacts_destination,
        workers=None if args.workers is None else parse_int(args.workers, "--workers", 1, 1024),
        app_name=args.app_name,
        public_url=args.public_url,
        timeout=timeout,
        mlflow_args=tuple(args.mlflow_args),
    )
    if args.print_command:
        return print_command(options)
    return serve(options)
