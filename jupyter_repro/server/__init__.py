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
- it owns the whole process tree: Ctrl-C / SIGTERM / SIGHUP stop all of it, and a server
  that stops by itself is reported with the line of its output that says why.

Modules: :mod:`.options` (what it is told, what it plans: data only), :mod:`.plan` (pure
planning: stores, auth files, host allow-list), :mod:`.setup` (checks and files in
``DIR``), :mod:`.process` (the process tree and the foreground command), :mod:`.cli`.
"""

from __future__ import annotations

from .cli import print_command, register, server_command
from .options import (
    AuthFiles,
    PortInUseError,
    ServerError,
    ServerOptions,
    ServerPlan,
    parse_int,
)
from .plan import machine_names, plan_auth, plan_hosts, plan_server, plan_stores, redact
from .process import ServerProcess, serve
from .setup import check_port_free, prepare

__all__ = [
    "AuthFiles",
    "PortInUseError",
    "ServerError",
    "ServerOptions",
    "ServerPlan",
    "ServerProcess",
    "check_port_free",
    "machine_names",
    "parse_int",
    "plan_auth",
    "plan_hosts",
    "plan_server",
    "plan_stores",
    "prepare",
    "print_command",
    "redact",
    "register",
    "serve",
    "server_command",
]
