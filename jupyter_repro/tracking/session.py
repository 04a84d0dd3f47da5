"""One tracking session per shell: hooks, notices, report, comm and export, glued together.

The IPython objects arrive by duck typing (``info.raw_cell``, ``result.error_in_exec``);
nothing here imports IPython, so :mod:`.magic` stays a thin argument parser.
"""

from __future__ import annotations

import ast
import json
import os
import platform
import re
import sys
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

from .._version import __version__
from ..verdicts import Finding, Verdict
from . import comm as protocol
from .export import ExportError, export_notebook, export_script
from .judge import NotebookCell, NotebookOrder, TrackReport, judge, judge_cell, made_stale
from .order import OrderBook, notebook_path_from_env
from .record import RECORD_VERSION, ExecutionEvent, RecordWriter, read_record, record_path
from .tracker import Tracker

#: A comment that silences notices for the cell it is in.
QUIET_MARK = re.compile(r"^\s*#\s*track:\s*quiet\b", re.MULTILINE)
_TRACK_LINE = re.compile(r"^\s*%track\b")
#: The verdicts a notice under a cell reports: those meaning a shown result is wrong or at
#: risk (not ``edited``, which the frontend shows, nor information).
_SERIOUS = (Verdict.OUT_OF_ORDER, Verdict.STALE, Verdict.HIDDEN_STATE, Verdict.UNDEFINED_NAME)

_ORDER_PHRASES = {
    "frontend": "the frontend's cells (comm)",
    "file": "the saved notebook {path}",
    "execution_order": "execution order only (no frontend comm, no notebook path): "
    "'below', 'deleted' and 'edited' verdicts are limited",
}


class TrackSession:
    """State of ``%track`` in one shell.

    Attributes:
        enabled: whether the hooks are registered.
        notices: whether one-line notices are printed under cells: True or False when
            asked (``%track notices on|off``, ``%track on --quiet``, the comm's
            ``set_notices``); None (the default) prints them only while no frontend is
            attached over the comm, whose badges show the same verdicts without writing
            into the cell outputs that are saved in the .ipynb.
        quiet_cells: cell ids whose notices are silenced (from the comm).
        tracker: the current :class:`Tracker` (None until the first ``%track on``).
        order: where the notebook order comes from.
        last_report: the verdicts after the latest tracked execution.
    """

    def __init__(self, shell: Any, env: Mapping[str, str] | None = None) -> None:
        self.shell = shell
        self.enabled = False
        self.notices: bool | None = None
        self.quiet_cells: set[str] = set()
        self.tracker: Tracker | None = None
        self.record_file: Path | None = None
        self.order = OrderBook(notebook_path_from_env(env))
        self.last_report: TrackReport | None = None
        self.out: TextIO | None = None  # None: sys.stdout at print time (captured per cell)
        self.channel = protocol.CommChannel(
            {
                "hello": self._on_hello,
                "notebook": self._on_notebook,
                "request_report": lambda _data: self._report_message(None),
                "set_notices": self._on_set_notices,
            }
        )
        self.comm_registered = self.channel.register()
        self._before: tuple[str, str | None, int | None, str | None] | None = None
        self._tree_hook = _TreeHook(self)

    # -- switching ------------------------------------------------------------------------
    def enable(self) -> str:
        """Register the hooks (idempotent) and return the one-line status."""
        if self.tracker is None:
            self._new_tracker()
        if not self.enabled:
            self.shell.events.register("pre_run_cell", self.pre_run_cell)
            self.shell.events.register("post_run_cell", self.post_run_cell)
            # first, so it sees the tree as IPython parsed it from the cell's source
            self.shell.ast_transformers.insert(0, self._tree_hook)
            self.enabled = True
            self._broadcast_status()
        return self.status_line()

    def disable(self) -> str:
        """Unregister the hooks; the record and the state are kept."""
        if self.enabled:
            self.shell.events.unregister("pre_run_cell", self.pre_run_cell)
            self.shell.events.unregister("post_run_cell", self.post_run_cell)
            if self._tree_hook in self.shell.ast_transformers:
                self.shell.ast_transformers.remove(self._tree_hook)
            self._before = None
            self.enabled = False
            if self.tracker is not None:  # turned off inside a cell: no post_run_cell
                self.tracker.cancel()
            self._broadcast_status()
        return "%track off: hooks removed; the record and verdicts so far are kept"

    def reset(self) -> str:
        """Forget the state (not the record file): the next runs start a fresh history."""
        self._new_tracker()
        self.last_report = None
        assert self.tracker is not None
        self.order.forget_runs(self.tracker.state.next_seq)
        if self.channel.comms:  # what frontends show is the old history's: replace it
            self.channel.broadcast(self._report_message(None))
        return "%track reset: history forgotten; verdicts start from the next execution"

    def close(self) -> None:
        """Unload: remove hooks, close comms and the record file."""
        self.disable()
        self.channel.unregister()
        if self.tracker is not None and self.tracker.writer is not None:
            self.tracker.writer.close()

    def _new_tracker(self) -> None:
        started = time.time()
        nb = self.order.notebook_path
        self.record_file = record_path(nb, os.getcwd(), started)
        if self.tracker is not None and self.tracker.writer is not None:
            self.tracker.writer.close()
        writer = RecordWriter(self.record_file)
        session_id = uuid.uuid4().hex
        writer.append(
            {
                "type": "session",
                "v": RECORD_VERSION,
                "session": session_id,
                "started": started,
                "pid": os.getpid(),
                "notebook": str(nb) if nb else None,
                "cwd": os.getcwd(),
                "jupyter_repro": __version__,
                "python": platform.python_version(),
            }
        )
        self.tracker = Tracker(writer, session_id)

    # -- hooks ------------------------------------------------------------------------
    def pre_run_cell(self, info: Any) -> None:
        """``pre_run_cell`` hook: note ``deletedCells``, snapshot what the cell touches."""
        self._guarded(self._pre_run_cell, info)

    def post_run_cell(self, result: Any) -> None:
        """``post_run_cell`` hook: finish the event, judge, notify, push to frontends."""
        self._guarded(self._post_run_cell, result)

    def _guarded(self, hook: Any, arg: Any) -> None:
        """Run a hook; a bug in tracking must not print a traceback under every cell of
        the user's: say it once, in one line, and switch tracking off."""
        try:
            hook(arg)
        except Exception as exc:  # reported to the user and tracking stops; never silent
            self.disable()
            print(
                f"%track: internal error, tracking turned off ({type(exc).__name__}: {exc}); "
                "please report it",
                file=sys.stderr,
            )

    def _pre_run_cell(self, info: Any) -> None:
        meta = getattr(info, "cell_meta", None)
        self.order.note_request_metadata(meta if isinstance(meta, Mapping) else None)
        raw = info.raw_cell or ""
        if info.silent or not info.store_history or _TRACK_LINE.match(raw):
            return
        assert self.tracker is not None
        cell_id, id_source = getattr(info, "cell_id", None), None
        if not cell_id:  # a console or an older frontend: the cell with this very source
            cell_id = self.order.cell_for_source(raw)
            id_source = "source_match" if cell_id else None
        # the snapshot is taken when IPython hands over the cell's syntax tree (the
        # ast_transformers, just before execution; see _TreeHook), or in post_run_cell
        # when the cell never got that far (a syntax error)
        self._before = (raw, cell_id, self.shell.execution_count, id_source)

    def _start_run(self, tree: ast.Module | None) -> None:
        """``Tracker.before`` for the cell noted by ``_pre_run_cell`` (once)."""
        pending, self._before = self._before, None
        if pending is None:
            return
        assert self.tracker is not None
        raw, cell_id, execution_count, id_source = pending
        self.tracker.before(
            raw,
            self.shell.user_ns,
            cell_id=cell_id,
            execution_count=execution_count,
            cell_id_source=id_source,
            tree=tree,
        )

    def _post_run_cell(self, result: Any) -> None:
        assert self.tracker is not None
        error, self._tree_hook.error = self._tree_hook.error, None
        if error is not None:
            raise error  # from the snapshot taken in the AST hook: reported by _guarded
        self._start_run(None)  # the cell never reached execution (a syntax error)
        error = result.error_in_exec or result.error_before_exec
        event = self.tracker.after(self.shell.user_ns, error, result.execution_count)
        if event is None:
            return
        wants_notice = (
            self.notices_shown()
            and event.cell_id not in self.quiet_cells
            and not QUIET_MARK.search(event.source)
        )
        if not (wants_notice or self.channel.comms):
            return
        state = self.tracker.state
        order = self.order.current(state)
        if self.channel.comms:  # a frontend wants the whole picture after every run
            report = self.judge(order)
            findings = report.for_cell(event.cell_id)
            self.channel.broadcast(self._report_message(event))
        else:  # only the notice: judge just this cell, in time independent of the notebook
            findings = judge_cell(state, order, event.cell_id)
        if wants_notice:
            for line in notice_lines(findings, made_stale(state, order, event)):
                print(line, file=self.out or sys.stdout)

    def notices_shown(self) -> bool:
        """Whether notices go under cells now (see :attr:`notices`)."""
        return self.notices if self.notices is not None else not self.channel.comms

    # -- verdicts ---------------------------------------------------------------------
    def judge(self, order: NotebookOrder | None = None) -> TrackReport:
        """Judge the current state against the best known notebook order."""
        assert self.tracker is not None
        state = self.tracker.state
        report = judge(state, order if order is not None else self.order.current(state))
        self.last_report = report
        return report

    def status_line(self) -> str:
        """The one-line status of ``%track on`` / ``%track status``."""
        state = "on" if self.enabled else "off"
        source = self.order.source
        phrase = _ORDER_PHRASES[source].format(
            path=self.order.notebook_path.name if self.order.notebook_path else ""
        )
        if self.order.notebook_path is not None and source != "file" and self.order.file_error:
            phrase += f" (the saved notebook is unreadable: {self.order.file_error})"
        deleted = (
            "; deleted cells from the execute requests" if self.order.saw_deleted_cells else ""
        )
        # the sequence counter: memory keeps only the runs verdicts still need
        runs = self.tracker.state.next_seq - 1 if self.tracker else 0
        where = f"; record: {self.record_file}" if self.record_file else ""
        writer = self.tracker.writer if self.tracker else None
        if writer is not None and writer.error:
            where += f" (not writable: {writer.error}; tracking in memory only)"
        return f"%track {state}: {runs} runs tracked; notebook order from {phrase}{deleted}{where}"

    def report_text(self) -> str:
        """``%track report``: a table of cells and their verdicts, then the findings."""
        report = self.judge()
        return format_report(report)

    def report_json(self) -> str:
        """``%track report --json``."""
        return json.dumps(self.judge().to_json(), indent=2)

    def export(self, script: str | None, notebook: str | None) -> str:
        """``%track export``: write what ran, in the order it ran.

        Raises :class:`~.export.ExportError` (one line: the path and the cause) when a
        file cannot be written; each file is replaced atomically, never left half written.
        """
        assert self.tracker is not None
        events, missing = self._session_events()
        note = None
        if missing:
            writer = self.tracker.writer
            why = writer.error if writer is not None and writer.error else "no record file"
            note = (
                f"INCOMPLETE: the record file is unusable ({why}), and memory keeps only the "
                f"runs verdicts still need: {len(events)} of {len(events) + missing} runs"
            )
        done: list[str] = []
        try:
            if script:
                done.append(str(export_script(events, script, note)))
            if notebook:
                done.append(str(export_notebook(events, notebook, note)))
        except ExportError as exc:
            if done:
                raise ExportError(f"{exc} ({', '.join(done)} was written)") from exc
            raise
        line = f"%track export: {len(events)} runs written to {', '.join(done)}"
        return f"{line}; {note}" if note else line

    def _session_events(self) -> tuple[list[ExecutionEvent], int]:
        """Every run of this tracking session, from the record file (memory keeps only
        the runs verdicts still need), or from memory when the file is unusable; and how
        many runs are missing (pruned from memory, only in the second case)."""
        assert self.tracker is not None
        writer = self.tracker.writer
        if writer is not None and writer.error is None and self.record_file is not None:
            try:
                return [
                    ExecutionEvent.from_json(line)
                    for line in read_record(self.record_file)
                    if line["type"] == "execution"
                    and line.get("session") == self.tracker.session_id
                ], 0
            except OSError as exc:
                writer.error = f"cannot read back: {exc}"
        state = self.tracker.state
        events = [state.events[k] for k in sorted(state.events)]
        return events, state.next_seq - 1 - len(events)

    # -- comm handlers --------------------------------------------------------------------
    def _on_hello(self, data: Mapping[str, Any]) -> dict[str, Any]:
        return protocol.envelope(
            "welcome",
            kernel=protocol.kernel_info(),
            tracking=self.enabled,
            order_source=self.order.source,
            record_path=str(self.record_file) if self.record_file else None,
        )

    def _on_notebook(self, data: Mapping[str, Any]) -> dict[str, Any] | None:
        next_seq = self.tracker.state.next_seq if self.tracker is not None else 1
        self.order.set_frontend_cells(protocol.parse_cells(data), next_seq)
        if self.tracker is None:
            return None
        return self._report_message(None)

    def _on_set_notices(self, data: Mapping[str, Any]) -> dict[str, Any]:
        enabled = data.get("enabled")
        if not isinstance(enabled, bool):
            raise protocol.ProtocolError("'enabled' must be true or false", "set_notices")
        cell_ids = data.get("cell_ids")
        if cell_ids is None:
            self.notices = enabled
        elif isinstance(cell_ids, list) and all(isinstance(c, str) for c in cell_ids):
            if enabled:
                self.quiet_cells.difference_update(cell_ids)
            else:
                self.quiet_cells.update(cell_ids)
        else:
            raise protocol.ProtocolError("'cell_ids' must be a list of strings", "set_notices")
        return self._status_message()

    def _report_message(self, event: ExecutionEvent | None) -> dict[str, Any]:
        if self.tracker is None:
            return self._status_message()
        report = self.judge() if event is None or self.last_report is None else self.last_report
        trigger = (
            {"cell_id": event.cell_id, "seq": event.seq, "execution_count": event.execution_count}
            if event is not None
            else None
        )
        return protocol.envelope("report", trigger=trigger, **report.to_json())

    def _status_message(self) -> dict[str, Any]:
        return protocol.envelope(
            "status",
            tracking=self.enabled,
            order_source=self.order.source,
            notices=self.notices_shown(),
            quiet_cells=sorted(self.quiet_cells),
        )

    def _broadcast_status(self) -> None:
        if self.channel.comms:
            self.channel.broadcast(self._status_message())


class _TreeHook:
    """In the shell's ``ast_transformers``: hands the syntax tree IPython parsed from the
    cell to :meth:`TrackSession._start_run` (one parse per cell, not two) and returns it
    unchanged. An error is kept for ``post_run_cell`` to report: IPython would drop a
    failing transformer with a warning of its own, and tracking must stop as after any
    internal error (``TrackSession._guarded``)."""

    def __init__(self, session: TrackSession) -> None:
        self.session = session
        self.error: Exception | None = None

    def visit(self, node: ast.AST) -> ast.AST:
        if self.session._before is not None:
            try:
                self.session._start_run(node if isinstance(node, ast.Module) else None)
            except Exception as exc:  # reported by post_run_cell, which stops tracking
                self.error = exc
        return node


def notice_lines(findings: list[Finding], stale_cells: list[NotebookCell]) -> list[str]:
    """The one-line notices under the cell that just ran: its own serious findings, and
    the cells this run has just made stale."""
    lines = [
        f"%track: {f.message} [{f.verdict.value}]"
        for f in findings
        if f.verdict in _SERIOUS and not f.information
    ]
    if stale_cells:
        cells = ", ".join(f"#{c.index + 1}" if c.placed else "a new cell" for c in stale_cells)
        lines.append(
            f"%track: this run made cell(s) {cells} stale: they read what it changed [stale]"
        )
    return lines


def format_report(report: TrackReport) -> str:
    """The readable table of ``%track report``."""
    rows = [("cell", "In", "id", "verdicts")]
    for cell in report.order.cells:
        event = report.latest.get(cell.id)
        verdicts = ", ".join(sorted({f.verdict.value for f in report.for_cell(cell.id)})) or "ok"
        if event is None and verdicts == "ok":
            verdicts = "not run"
        count = f"[{event.execution_count}]" if event and event.execution_count else "[ ]"
        rows.append((f"#{cell.index + 1}", count, cell.id[:12], verdicts))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = ["  ".join(r[i].ljust(widths[i]) for i in range(3)) + "  " + r[3] for r in rows]
    if report.findings:
        lines.append("")
        for f in report.findings:
            level = " (information)" if f.information else ""
            lines.append(f"#{f.cell_index + 1} {f.verdict.value}{level}: {f.message}")
    s = report.summary
    lines.append("")
    flagged = [f for f in report.findings if not f.information]
    if s.consistent and not flagged:  # never "equals a clean run" next to a flagged cell
        lines.append(f"state equals a clean top-to-bottom run (order from {s.order_source})")
    else:
        lines.append(f"state differs from a clean top-to-bottom run (order from {s.order_source}):")
        lines.extend(f"  - {r}" for r in s.reasons or ["a cell is flagged (see above)"])
    return "\n".join(lines)
