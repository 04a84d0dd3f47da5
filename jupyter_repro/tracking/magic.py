"""The ``%track`` line magic: argument parsing only; the work is in :mod:`.session`.

Load with ``%load_ext jupyter_repro``, or for every kernel through IPython configuration
(``c.InteractiveShellApp.extensions = ["jupyter_repro"]``; see ``docs/tracking.md``).
"""

from __future__ import annotations

from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring

from .export import ExportError
from .session import TrackSession

_SESSIONS: dict[int, TrackSession] = {}


def session_for(shell: Any) -> TrackSession:
    """The shell's tracking session, created on first use."""
    session = _SESSIONS.get(id(shell))
    if session is None:
        session = _SESSIONS[id(shell)] = TrackSession(shell)
    return session


@magics_class
class TrackMagics(Magics):
    """Holds the ``%track`` magic."""

    @magic_arguments()
    @argument(
        "action",
        nargs="?",
        default="status",
        choices=["on", "off", "status", "report", "reset", "export", "notices"],
        help="on/off: start or stop tracking; status: one line; report: verdicts per cell; "
        "reset: forget the history; export: write what ran; notices on|off: the one-line "
        "notices under cells",
    )
    @argument("value", nargs="?", help="for 'notices': on or off")
    @argument("--json", action="store_true", help="report: print JSON for machines")
    @argument("--script", metavar="FILE", help="export: the code that ran, in run order")
    @argument("--notebook", metavar="FILE", help="export: a notebook of the runs, in run order")
    @argument("--quiet", action="store_true", help="on: no notices under cells")
    @line_magic
    def track(self, line: str = "") -> None:
        """Record cell executions and flag out-of-order, stale and hidden state.

        ``%track on`` prints which notebook-order source it found; ``%track report``
        shows a table; the JSON of ``--json`` is documented in docs/protocol.md.
        """
        args = parse_argstring(self.track, line)
        session = session_for(self.shell)
        if args.action == "on":
            session.notices = False if args.quiet else None
            print(session.enable())
        elif args.action == "off":
            print(session.disable())
        elif args.action == "status":
            print(session.status_line())
        elif args.action == "reset":
            print(session.reset())
        elif args.action == "notices":
            if args.value not in ("on", "off"):
                raise UsageError("%track notices takes 'on' or 'off'")
            session.notices = args.value == "on"
            print(f"%track notices {args.value}")
        elif session.tracker is None:
            print("%track: nothing tracked yet; run %track on first")
        elif args.action == "report":
            print(session.report_json() if args.json else session.report_text())
        elif args.action == "export":
            if not (args.script or args.notebook):
                raise UsageError("%track export needs --script FILE and/or --notebook FILE")
            try:
                print(session.export(args.script, args.notebook))
            except ExportError as exc:  # one line: the path and the cause, no traceback
                raise UsageError(f"%track export: {exc}") from None


def load_ipython_extension(ipython: Any) -> None:
    """Register ``%track`` (tracking itself starts with ``%track on``)."""
    ipython.register_magics(TrackMagics)
    session_for(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    """Remove the hooks and comm target of ``%track``."""
    session = _SESSIONS.pop(id(ipython), None)
    if session is not None:
        session.close()
