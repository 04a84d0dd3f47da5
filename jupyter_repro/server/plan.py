"""Planning ``jupyter-repro server``: what would run, computed without side effects.

:func:`plan_server` composes small pure steps, each testable alone:

- :func:`check_options` — ranges and the ``mlflow server`` options this command owns;
- :func:`plan_stores` — the backend store and artifact destination (``DIR`` or yours);
- :func:`plan_auth` — the basic-auth files this command manages inside ``DIR``;
- :func:`plan_hosts` — the URL users set and the Host / CORS allow-lists that MLflow's
  security middleware needs on a non-loopback ``--host``.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import sys
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from ..errors import ReproError
from ..uris import redact
from .options import (
    ARTIFACTS_FOLDER,
    AUTH_DB_FILE,
    AUTH_INI_FILE,
    DB_FILE,
    MLFLOW_DEFAULT_ALLOWED_HOSTS,
    SECRET_KEY_FILE,
    AuthFiles,
    ServerOptions,
    ServerPlan,
)

__all__ = ["plan_server", "redact"]

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


def check_options(options: ServerOptions) -> None:
    """Raise :class:`ReproError` (exit 2) for a port, worker count or timeout out of
    range, or an option after ``--`` that this command sets itself."""
    if not 1 <= options.port <= 65535:
        raise ReproError(f"--port must be an integer from 1 to 65535, not {options.port}")
    if options.workers is not None and options.workers < 1:
        raise ReproError(f"--workers must be at least 1, not {options.workers}")
    if not options.timeout > 0:
        raise ReproError(f"--timeout must be positive, not {options.timeout:g}")
    for arg in options.mlflow_args:
        own = next((o for o in _OWN_OPTIONS if arg == o or arg.startswith(o + "=")), None)
        if own:
            better = _OWN_OPTIONS[own]
            hint = f"use jupyter-repro server's own {better}" if better else "it is always set"
            raise ReproError(f"{own} cannot be passed to mlflow server after --: {hint}")
    host = options.host.strip()
    if not _is_loopback(host) and not options.app_name and not options.no_auth:
        raise ReproError(
            f"--host {host or '0.0.0.0'} without authentication lets anyone who reaches port "
            f"{options.port} read and change every run: add --app-name basic-auth, or "
            "--no-auth to accept that"
        )


@dataclass(frozen=True)
class Stores:
    """Where runs and artifacts live (see :func:`plan_stores`).

    Attributes:
        backend: the backend store URI (may hold a password: redact before printing).
        backend_on_cli: pass it as ``--backend-store-uri`` (``False``: it came from
            ``$MLFLOW_BACKEND_STORE_URI`` and stays off the command line).
        backend_secret: it holds a password: passed as ``$MLFLOW_BACKEND_STORE_URI`` in
            the server's environment, never on its command line or printed.
        artifacts: the artifact destination (a local path made absolute, or a URI).
        artifacts_on_cli: pass it as ``--artifacts-destination``.
        uses_folder: either store lives in ``DIR``.
        notes: lines explaining where a store came from.
    """

    backend: str
    backend_on_cli: bool
    backend_secret: bool
    artifacts: str
    artifacts_on_cli: bool
    uses_folder: bool
    notes: tuple[str, ...] = ()


def plan_stores(options: ServerOptions, folder: Path, environ: dict[str, str]) -> Stores:
    """The stores: ``--backend-store-uri`` / ``--artifacts-destination``, else the
    ``$MLFLOW_*`` variable in ``environ``, else ``sqlite:///DIR/mlflow.db`` and
    ``DIR/artifacts`` (``folder`` is the absolute ``DIR``)."""
    notes: list[str] = []
    uses_folder = False
    backend, backend_on_cli = options.backend_store_uri, True
    if not backend and environ.get("MLFLOW_BACKEND_STORE_URI"):
        backend, backend_on_cli = environ["MLFLOW_BACKEND_STORE_URI"], False
        notes.append("runs and metrics: from $MLFLOW_BACKEND_STORE_URI")
    if not backend:
        backend, uses_folder = f"sqlite:///{folder / DB_FILE}", True

    artifacts, artifacts_on_cli = options.artifacts_destination, True
    if not artifacts and environ.get("MLFLOW_ARTIFACTS_DESTINATION"):
        artifacts, artifacts_on_cli = environ["MLFLOW_ARTIFACTS_DESTINATION"], False
    if not artifacts:
        artifacts, uses_folder = str(folder / ARTIFACTS_FOLDER), True
    elif _is_local_path(artifacts):
        artifacts = str(Path(artifacts).expanduser().absolute())
    secret = redact(backend) != backend
    if secret and backend_on_cli:
        backend_on_cli = False
        notes.append(
            "runs and metrics: the backend URI holds a password; it goes to the server in "
            "$MLFLOW_BACKEND_STORE_URI, not on its command line"
        )
    return Stores(
        backend, backend_on_cli, secret, artifacts, artifacts_on_cli, uses_folder, tuple(notes)
    )


def plan_auth(
    app_name: str | None, folder: Path, environ: dict[str, str]
) -> tuple[AuthFiles | None, dict[str, str]]:
    """The basic-auth files this command manages in ``folder`` and the variables the
    server needs for them; ``(None, {})`` unless ``app_name`` is ``basic-auth``.
    ``$MLFLOW_AUTH_CONFIG_PATH`` / ``$MLFLOW_FLASK_SERVER_SECRET_KEY`` in ``environ`` mean
    the user manages that part.

    Raises:
        ReproError: ``app_name`` is not an installed MLflow server app, or basic auth's
            prerequisites are missing (exit 2).
    """
    if app_name:
        _check_app_name(app_name)
    if app_name != "basic-auth":
        return None, {}
    manage_ini = not environ.get("MLFLOW_AUTH_CONFIG_PATH")
    keep_key = not environ.get("MLFLOW_FLASK_SERVER_SECRET_KEY")
    auth = AuthFiles(
        ini=folder / AUTH_INI_FILE if manage_ini else None,
        database=folder / AUTH_DB_FILE if manage_ini else None,
        secret_key=folder / SECRET_KEY_FILE if keep_key else None,
    )
    return auth, ({"MLFLOW_AUTH_CONFIG_PATH": str(auth.ini)} if manage_ini else {})


@dataclass(frozen=True)
class Hosts:
    """How users reach the server (see :func:`plan_hosts`).

    Attributes:
        tracking_uri: what users set ``MLFLOW_TRACKING_URI`` to.
        health_url: polled until it answers ``OK`` (always on this machine).
        allowed_hosts: passed to ``--allowed-hosts`` (empty: MLflow's default).
        security_args: the ``--allowed-hosts`` / ``--cors-allowed-origins`` arguments.
        notes: lines explaining the choices.
    """

    tracking_uri: str
    health_url: str
    allowed_hosts: tuple[str, ...]
    security_args: tuple[str, ...]
    notes: tuple[str, ...]


def plan_hosts(
    host: str,
    port: int,
    public_url: str | None,
    extra: tuple[str, ...],
    names: tuple[str, list[str]] | None = None,
    authenticated: bool = False,
) -> Hosts:
    """The URLs and the Host / CORS allow-lists for ``host:port``.

    ``names`` is ``(preferred, names)`` from :func:`machine_names`, looked up here when
    ``None`` and ``host`` is not a loopback address. ``extra`` are the arguments after
    ``--`` (``--static-prefix``, yours ``--allowed-hosts`` / ``--cors-allowed-origins``,
    ``--disable-security-middleware`` are honoured).

    Raises:
        ReproError: ``public_url`` is not ``http(s)://HOST[:PORT][/PATH]`` (exit 2).
    """
    notes: list[str] = []
    prefix = _split_static_prefix(extra)
    probe = {"0.0.0.0": "127.0.0.1", "::": "::1", "[::]": "::1", "": "127.0.0.1"}.get(host, host)
    health_url = f"http://{_url_host(probe)}:{port}{prefix}/health"

    allowed: list[str] = []
    origins: list[str] = []
    tracking_uri = f"http://{_url_host(host)}:{port}{prefix}"
    if public_url:
        public = urllib.parse.urlsplit(public_url)
        if public.scheme not in ("http", "https") or not public.hostname:
            raise ReproError(f"--public-url {public_url}: expected http(s)://HOST[:PORT][/PATH]")
        tracking_uri = public_url.rstrip("/")
        public_host = _url_host(public.hostname)
        allowed += [public.netloc, public_host, _host_pattern(f"{public_host}:*")]
        origins.append(f"{public.scheme}://{public.netloc}")
    if not _is_loopback(host):
        preferred, found = names if names is not None else machine_names(ipv6=":" in host)
        found = list(found)
        shown = preferred if _is_wildcard(host) else host
        if not public_url:
            tracking_uri = f"http://{_url_host(shown)}:{port}{prefix}"
        if not _is_wildcard(host):
            found.insert(0, _url_host(host))
        found = list(dict.fromkeys(found))
        for name in found:
            allowed += [_host_pattern(name), _host_pattern(f"{name}:*")]
            origins.append(f"http://{name}:{port}")
        notes.append(
            f"reachable from other machines as {', '.join(found[:4])}"
            + (" ..." if len(found) > 4 else "")
            + " (accepted by MLflow's Host check besides localhost and private IPs)"
        )
        if not authenticated:
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
    return Hosts(tracking_uri, health_url, allowed_hosts, tuple(security), tuple(notes))


def plan_server(options: ServerOptions) -> ServerPlan:
    """Validate ``options`` and compute the ``mlflow server`` command, its environment and
    the URL users set; touches nothing on disk (only name lookups for a non-loopback host).

    Raises:
        ReproError: bad input (port out of range, ``DIR`` not usable, an option passed
            after ``--`` that this command owns, unknown ``--app-name``, ...): exit 2.
    """
    check_options(options)
    host, port, extra = options.host.strip(), options.port, tuple(options.mlflow_args)
    folder = Path(options.dir).expanduser().absolute()
    environ = dict(os.environ)
    stores = plan_stores(options, folder, environ)
    auth, env = plan_auth(options.app_name, folder, environ)
    uses_folder = stores.uses_folder or bool(auth and (auth.ini or auth.secret_key))
    if uses_folder:
        _check_folder(folder, "--dir")
    hosts = plan_hosts(host, port, options.public_url, extra, authenticated=bool(options.app_name))

    command = [sys.executable, "-m", "mlflow", "server", "--host", host, "--port", str(port)]
    if stores.backend_on_cli:
        command += ["--backend-store-uri", stores.backend]
    if stores.artifacts_on_cli:
        command += ["--artifacts-destination", stores.artifacts]
    command.append("--serve-artifacts")
    if options.workers is not None:
        command += ["--workers", str(options.workers)]
    if options.app_name:
        command += ["--app-name", options.app_name]
    command += [*hosts.security_args, *extra]

    return ServerPlan(
        command=tuple(command),
        env=env,
        tracking_uri=hosts.tracking_uri,
        health_url=hosts.health_url,
        backend_store_uri=stores.backend,
        artifacts_destination=stores.artifacts,
        folder=folder if uses_folder else None,
        auth=auth,
        secret_env={"MLFLOW_BACKEND_STORE_URI": stores.backend} if stores.backend_secret else {},
        allowed_hosts=hosts.allowed_hosts,
        notes=stores.notes + hosts.notes,
    )
