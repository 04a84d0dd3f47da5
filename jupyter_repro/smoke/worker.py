"""The process that runs one notebook: ``python -m jupyter_repro.smoke.worker SPEC EVENTS``.

nb-smoke starts one of these per notebook, in the notebook's folder, in a new session
(so a timeout kills it with its children), with stdin closed and stdout/stderr going to
files. It reads the run spec (JSON, written by :mod:`jupyter_repro.smoke.convert`) and
appends one JSON event per line to EVENTS, flushed at once, so the parent knows which
cell was running even when this process is killed:

``{"event": "start", "mode": ...}``, ``{"event": "kernel", "pid": ..., "create_time": ...}``,
``{"event": "cell_start", "position": i, "stdout": offset, "stderr": offset}``,
``{"event": "cell_end", "position": i, "ok": bool, "error": {...} | null,
"outputs": [...], "streams": "fd" (script mode), "stream_start": {...} | null}``,
``{"event": "done"}``.

Script mode: an IPython ``InteractiveShell`` (no kernel, no ZMQ) runs each cell, so
magics, ``!cmd`` lines and the display formatter behave as in a kernel. What user code can
observe about its host is made the same as under ipykernel 7 (measured by the fidelity
suite, tests/test_smoke_fidelity.py): cells run inside a running asyncio event loop,
with the branch ipykernel's ``do_execute`` takes (top-level ``await`` as a coroutine of
that loop, other cells with the blocking ``run_cell`` inside it), so ``asyncio.run()``
raises as in a kernel; ``sys.stdout``/``sys.stderr`` are an ``OutStream`` with
ipykernel's surface (no ``buffer``, ``isatty()`` False, ``str`` only); the shell, its
display hook and publisher carry ipykernel's class names; the config has an
``IPKernelApp`` section; ``sys.argv`` and ``sys.path`` are laid out as
``ipykernel_launcher`` leaves them; ``input()``/``getpass()`` raise
``StdinNotImplementedError``. What cannot be had without a kernel (``get_ipython().kernel``,
comms, widgets, ``ipykernel`` in ``sys.modules``) is found statically and the notebook
runs in kernel mode instead (:data:`jupyter_repro.smoke.convert.KERNEL_ONLY`).
Kernel mode: nbclient runs the cells in a fresh Jupyter kernel.
"""

from __future__ import annotations

import ast
import asyncio
import io
import json
import os
import re
import sys
import time
import traceback
from typing import Any

import jupyter_repro._fast_import  # noqa: F401 - before nbclient/nbformat
from jupyter_repro.smoke.options import RAISES_TAG

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_KERNEL_CELL_LINE = re.compile(r"Cell In\[(\d+)\], line (\d+)")
_SYNTAX_WHERE = re.compile(r" \([^()]*, line \d+\)$")
_INPUT_MESSAGE = (
    "input() was called, but notebooks are checked without a keyboard "
    "(stdin is closed); give the value as a parameter instead"
)
_EXIT_MESSAGE = "exit() was called: the kernel would shut down and later cells would not run"


class _Events:
    def __init__(self, path: str) -> None:
        self._fh = open(path, "a", encoding="utf-8")  # noqa: SIM115 - lives as long as the run

    def emit(self, **event: Any) -> None:
        self._fh.write(json.dumps(event, default=str) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())


def _strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


def _error(ename: str, evalue: str, line: int | None, tb: str) -> dict[str, Any]:
    return {"ename": ename, "evalue": evalue, "line": line, "traceback": tb[-8000:]}


# -- script mode ----------------------------------------------------------------------


class OutStream(io.TextIOBase):
    """``sys.stdout``/``sys.stderr`` with the surface of ipykernel's ``OutStream``.

    A kernel replaces both streams with ``ipykernel.iostream.OutStream``: a text stream
    without ``buffer``, ``mode``, ``line_buffering`` or ``reconfigure``, that takes only
    ``str`` ("write() argument must be str"), says ``isatty() -> False``, has encoding
    ``UTF-8`` and name ``stdout``/``stderr``. Code that works on a real console stream
    (``sys.stdout.buffer.write``, field case G03) fails there, so it fails here too.
    Text goes straight to the file descriptor (no buffering), which the parent slices per
    cell, so it stays in order with what child processes and C code write to the fd.
    (Importing ipykernel itself would cost ~0.7 s per notebook: it pulls in jupyter_client
    and zmq.)
    """

    encoding = "UTF-8"

    def __init__(self, name: str, fd: int) -> None:
        super().__init__()
        self.name = name
        self._fd = fd
        self._closed = False

    def write(self, string: str) -> int:  # type: ignore[override]
        if not isinstance(string, str):
            raise TypeError(f"write() argument must be str, not {type(string)}")
        if self._closed:
            raise ValueError("I/O operation on closed file")
        data = string.encode("utf-8", "replace")
        while data:
            data = data[os.write(self._fd, data) :]
        return len(string)

    def writelines(self, sequence) -> None:  # type: ignore[override]
        for string in sequence:
            self.write(string)

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self._fd

    def flush(self) -> None:
        if self._closed:
            return

    def close(self) -> None:
        self._closed = True

    @property
    def closed(self) -> bool:  # type: ignore[override]
        return self._closed


def _kernel_like_process(spec_path: str) -> None:
    """``sys.argv``, ``sys.path`` and environment as a kernel's user code sees them.

    ipykernel_launcher drops the current directory from ``sys.path[0]`` and IPython's
    ``InteractiveShellApp.init_path`` puts ``''`` back just before site-packages (so a
    ``random.py`` beside the notebook does not shadow the standard library).
    ``ZMQInteractiveShell.init_environment`` sets the colour and pager variables.
    """
    import ipykernel_launcher  # a module, not the ipykernel package: no import cost

    if sys.path and (sys.path[0] in ("", os.getcwd())):
        del sys.path[0]
    if "" not in sys.path and not sys.flags.safe_path:
        idx = next(
            (
                i
                for i, p in enumerate(sys.path)
                if os.path.basename(p) in ("site-packages", "dist-packages")
            ),
            0,
        )
        sys.path.insert(idx, "")
    connection = os.path.join(os.path.dirname(os.path.abspath(spec_path)), "kernel.json")
    # nbclient (nbconvert, nbmake, papermill) starts kernels with this extra argument.
    sys.argv = [
        ipykernel_launcher.__file__,
        "-f",
        connection,
        "--HistoryManager.hist_file=:memory:",
    ]
    os.environ.update(
        {
            "TERM": "xterm-color",
            "CLICOLOR": "1",
            "FORCE_COLOR": "1",
            "CLICOLOR_FORCE": "1",
            "PAGER": "cat",
            "GIT_PAGER": "cat",
        }
    )


def _make_shell():
    from IPython.core.autocall import ExitAutocall
    from IPython.core.displayhook import DisplayHook
    from IPython.core.displaypub import DisplayPublisher
    from IPython.core.error import StdinNotImplementedError
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets import Type, default

    class ZMQExitAutocall(ExitAutocall):
        """``exit``/``quit`` as ipykernel names them (``ask_exit`` below ends the run)."""

    class ZMQShellDisplayHook(DisplayHook):
        """Keeps a cell's result as an ``execute_result`` output instead of printing it."""

        def start_displayhook(self):
            # ipykernel fails the request for a traceback shown from here to
            # finish_displayhook (formatting the cell's result), and for no other one.
            self.shell.in_displayhook = True

        def write_output_prompt(self):
            pass

        def write_format_data(self, format_dict, md_dict=None):
            self.shell.cell_outputs.append(
                {
                    "output_type": "execute_result",
                    "execution_count": self.prompt_count,
                    "data": _jsonable(format_dict),
                    "metadata": _jsonable(md_dict or {}),
                }
            )

        def finish_displayhook(self):
            self.shell.in_displayhook = False

    class ZMQDisplayPublisher(DisplayPublisher):
        """Keeps ``display()`` calls as ``display_data`` outputs, as a kernel does."""

        def publish(self, data, metadata=None, source=None, *, transient=None, update=False, **kw):
            shell = self.shell
            output = {
                "output_type": "display_data",
                "data": _jsonable(data),
                "metadata": _jsonable(metadata or {}),
            }
            display_id = (transient or {}).get("display_id")
            if update:
                # update_display_data: a frontend (and nbclient when it saves) replaces
                # every output shown with this display_id, in whichever cell it is, and
                # adds nothing here (field case G07).
                for position, index in shell.display_map.get(display_id, []):
                    if position == shell.position:
                        shell.cell_outputs[index].update(
                            data=output["data"], metadata=output["metadata"]
                        )
                    else:
                        shell.smoke_events.emit(
                            event="display_update",
                            position=position,
                            index=index,
                            data=output["data"],
                            metadata=output["metadata"],
                        )
                return
            if display_id is not None:
                shell.display_map.setdefault(display_id, []).append(
                    (shell.position, len(shell.cell_outputs))
                )
            shell.cell_outputs.append(output)

        def clear_output(self, wait=False):
            # Displays are dropped here; printed text is dropped by starting the cell's
            # streams at the current end of stdout/stderr (the parent slices them).
            for places in self.shell.display_map.values():
                places[:] = [p for p in places if p[0] != self.shell.position]
            self.shell.cell_outputs.clear()
            sys.stdout.flush()
            sys.stderr.flush()
            self.shell.stream_start = {"stdout": _offset(1), "stderr": _offset(2)}

    class ZMQInteractiveShell(InteractiveShell):
        """An InteractiveShell, named as ipykernel's, that remembers errors shown outside
        ``run_code``.

        Notebooks (rich, tqdm, plotly) tell Jupyter from a terminal by the shell's class
        name and by an ``IPKernelApp`` section in its config; both are as in a kernel.

        IPython's display formatter catches an exception raised by a rich repr
        (``_repr_html_``) and only shows its traceback; a Jupyter kernel reports that
        cell as an error when it happens while formatting the cell's result, so nb-smoke
        must too. A traceback shown elsewhere (``display(obj)``, a ``post_execute``
        callback such as matplotlib drawing a figure) leaves the kernel's reply "ok" and
        the notebook runs on: it is kept as an ``error`` output, not a failure.
        """

        displayhook_class = Type(ZMQShellDisplayHook)
        display_pub_class = Type(ZMQDisplayPublisher)
        shown_errors: list[BaseException]
        shown_tracebacks: list[tuple[BaseException, str]]
        in_displayhook = False
        cell_outputs: list[dict[str, Any]]
        stream_start: dict[str, int | None] | None = None
        asked_exit = False

        def showtraceback(self, exc_tuple=None, *args, **kwargs):
            try:
                _etype, value, _tb = self._get_exc_info(exc_tuple)
                if self.in_displayhook:
                    self.shown_errors.append(value)
            except ValueError:
                pass
            return super().showtraceback(exc_tuple, *args, **kwargs)

        def _showtraceback(self, etype, evalue, stb):
            # Keep the formatted traceback for the report instead of printing it, so a
            # cell's output is what the cell printed (as in kernel mode).
            self.shown_tracebacks.append((evalue, _strip_ansi(self.InteractiveTB.stb2text(stb))))

        @default("exiter")
        def _default_exiter(self):
            return ZMQExitAutocall(self)

        def ask_exit(self):
            self.asked_exit = True
            self.exit_now = True

        def enable_gui(self, gui=None):  # no event loop in a smoke run
            return None

        def enable_matplotlib(self, gui=None):
            if gui not in (None, "inline", "agg", "svg", "pdf", "ps"):
                print(f"nb-smoke: %matplotlib {gui} uses the inline backend here", file=sys.stderr)
                gui = "inline"
            return super().enable_matplotlib(gui)

    from traitlets.config import Config

    config = Config()
    config.HistoryManager.hist_file = ":memory:"  # never the user's IPython history
    # As ipykernel's ZMQInteractiveShell guarantees (tqdm.auto picks its notebook bar).
    config.IPKernelApp.tqdm = "dummy value for https://github.com/tqdm/tqdm/pull/1628"
    shell = ZMQInteractiveShell.instance(colors="neutral", config=config)
    import warnings

    # As ZMQInteractiveShell.__init__ does after InteractiveShell's: the filter it adds.
    warnings.filterwarnings(
        "ignore",
        message=".*Trio's signal handling code might have collided.*",
        category=RuntimeWarning,
    )
    shell.shown_errors = []
    shell.shown_tracebacks = []
    shell.cell_outputs = []
    shell.display_map = {}  # display_id -> [(position, index in that cell's outputs)]
    shell.position = None

    def no_input(*_args: Any, **_kwargs: Any) -> str:
        raise StdinNotImplementedError(_INPUT_MESSAGE)

    import builtins
    import getpass

    builtins.input = no_input
    getpass.getpass = no_input
    return shell


def _jsonable(value: Any) -> Any:
    """Display data as JSON can carry it (bytes as base64, as nbformat stores images)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (bytes, bytearray)):
        import base64

        return base64.b64encode(bytes(value)).decode("ascii")
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def _cell_line(exc: BaseException, count: int) -> int | None:
    if isinstance(exc, SyntaxError):
        return exc.lineno
    prefix = f"<ipython-input-{count}-"
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename.startswith(prefix):
            return tb.tb_lineno
        tb = tb.tb_next
    return None


def run_script_mode(spec: dict[str, Any], events: _Events, spec_path: str = "") -> None:
    """Run the spec's cells in this process, as a kernel would (see the module docs)."""
    _kernel_like_process(spec_path)
    sys.stdout = OutStream("stdout", 1)
    sys.stderr = OutStream("stderr", 2)
    shell = _make_shell()
    shell.smoke_events = events
    from jupyter_repro.smoke import fast

    fast.install(shell, spec.get("timeit", "auto"))
    events.emit(event="start", mode="script", pid=os.getpid())
    # A kernel's cells run inside its running event loop; so do these. The loop is left
    # open at the end (a kernel never closes it while the notebook runs).
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    loop.run_until_complete(_run_cells(shell, spec, events))
    events.emit(event="timeit", **fast.COUNTS)


async def _execute(shell, code: str):
    """One cell as ipykernel 7's ``IPythonKernel.do_execute`` runs it.

    A cell with top-level ``await`` is a coroutine of the running loop; any other cell
    runs with the blocking ``run_cell`` from inside the loop's task, as in a kernel.
    """
    from IPython.core.async_helpers import _asyncio_runner

    preprocessing_exc_tuple = None
    try:
        transformed_cell = shell.transform_cell(code)
    except Exception:
        transformed_cell = code
        preprocessing_exc_tuple = sys.exc_info()
    if shell.loop_runner is _asyncio_runner and shell.should_run_async(
        code, transformed_cell=transformed_cell, preprocessing_exc_tuple=preprocessing_exc_tuple
    ):
        res = None
        try:
            res = await asyncio.ensure_future(
                shell.run_cell_async(
                    code,
                    store_history=True,
                    silent=False,
                    transformed_cell=transformed_cell,
                    preprocessing_exc_tuple=preprocessing_exc_tuple,
                )
            )
        finally:
            shell.events.trigger("post_execute")
            shell.events.trigger("post_run_cell", res)
        return res
    return shell.run_cell(code, store_history=True)


async def _run_cells(shell, spec: dict[str, Any], events: _Events) -> None:
    for position, cell in enumerate(spec["cells"]):
        if cell["action"] != "run":
            continue
        sys.stdout.flush()
        sys.stderr.flush()
        events.emit(
            event="cell_start",
            position=position,
            stdout=_offset(1),
            stderr=_offset(2),
        )
        shell.shown_errors = []
        shell.shown_tracebacks = []
        shell.in_displayhook = False
        shell.cell_outputs = []
        shell.stream_start = None
        shell.position = position
        count = shell.execution_count
        result = await _execute(shell, cell["source"])
        sys.stdout.flush()
        sys.stderr.flush()
        exc = result.error_before_exec or result.error_in_exec
        if exc is None and shell.shown_errors:
            exc = shell.shown_errors[0]
        error = None
        if exc is not None:
            texts = [t for v, t in shell.shown_tracebacks if v is exc]
            texts = texts or [t for _v, t in shell.shown_tracebacks]
            tb = (
                texts[0]
                if texts
                else "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            )
            message = exc.msg if isinstance(exc, SyntaxError) and exc.msg else str(exc)
            error = _error(type(exc).__name__, message, _cell_line(exc, count), tb)
        elif shell.asked_exit:
            error = _error("SystemExit", _EXIT_MESSAGE, None, "")
        else:
            # Shown, but a kernel would reply "ok" and run on: an error output, as there.
            for value, text in shell.shown_tracebacks:
                shell.cell_outputs.append(
                    {
                        "output_type": "error",
                        "ename": type(value).__name__,
                        "evalue": str(value),
                        "traceback": text.splitlines(),
                    }
                )
        if error is not None:
            shell.cell_outputs.append(
                {
                    "output_type": "error",
                    "ename": error["ename"],
                    "evalue": error["evalue"],
                    "traceback": [],
                }
            )
        # Streams are taken by the parent from the process's stdout/stderr (they include
        # what child processes and C code wrote), displays and results from here.
        events.emit(
            event="cell_end",
            position=position,
            ok=error is None,
            error=error,
            outputs=shell.cell_outputs,
            streams="fd",
            stream_start=shell.stream_start,
        )
        if error is not None and RAISES_TAG not in cell["tags"]:
            break
        if shell.asked_exit:
            break
        shell.asked_exit = False


def _offset(fd: int) -> int | None:
    try:
        return os.lseek(fd, 0, os.SEEK_CUR)
    except OSError:
        return None


# -- kernel mode ----------------------------------------------------------------------


def run_kernel_mode(spec: dict[str, Any], events: _Events, spec_path: str) -> None:
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook()
    nb.metadata = spec.get("metadata") or {}
    nb.cells = [nbformat.v4.new_code_cell(c["source"]) for c in spec["cells"]]
    for cell, source in zip(nb.cells, spec["cells"], strict=False):
        cell.metadata["tags"] = list(source["tags"])
    replies: dict[int, dict] = {}

    def on_cell_executed(cell, cell_index, execute_reply):
        replies[cell_index] = execute_reply

    # IPC sockets in a folder inside this run's private temporary folder (which nb-smoke
    # removes even after a kill): no port race between notebooks checked in parallel.
    from jupyter_client import AsyncKernelManager

    from jupyter_repro.kernels import KernelFolder, client_class, transport_options

    folder = KernelFolder(parent=os.path.dirname(os.path.abspath(spec_path)))
    km = AsyncKernelManager(kernel_name=spec["kernel_name"], **transport_options(folder))
    km.client_factory = client_class()  # ready once it answered: no fixed IOPub wait
    client = NotebookClient(
        nb,
        km=km,
        kernel_name=spec["kernel_name"],
        timeout=None,
        allow_errors=True,
        record_timing=False,
        resources={"metadata": {"path": os.getcwd()}},
        on_cell_executed=on_cell_executed,
    )
    client.owns_km = True  # shut down and cleaned up at the end, as a manager it made
    try:
        _run_in_kernel(client, nb, spec, events, replies)
    finally:
        folder.remove()


def _run_in_kernel(client, nb, spec: dict[str, Any], events: _Events, replies: dict) -> None:
    from jupyter_core.utils import run_sync

    with client.setup_kernel():
        pid = getattr(getattr(client.km, "provisioner", None), "pid", None)
        events.emit(event="start", mode="kernel", pid=os.getpid())
        events.emit(event="kernel", pid=pid, create_time=_create_time(pid))
        policy = spec.get("timeit", "auto")
        # Every policy replaces %timeit, if only to count the calls (--full-timeit).
        code = (
            "try:\n import jupyter_repro.smoke.fast as _nbsmoke_fast\n"
            f" _nbsmoke_fast.install(get_ipython(), {policy!r})\n del _nbsmoke_fast\n"
            "except ImportError:\n pass\n"
        )
        run_sync(client.kc.execute_interactive)(code, silent=True, store_history=False, timeout=60)
        try:
            _kernel_cells(client, nb, spec, events, replies)
            _kernel_timeit_counts(client, events)
        finally:
            # nbclient applies update_display_data to the output with that display_id in
            # whichever cell it is; cells that ended before an update was sent get their
            # final outputs here (field case G07).
            events.emit(
                event="final_outputs",
                outputs={
                    str(position): _jsonable(cell.get("outputs", []))
                    for position, cell in enumerate(nb.cells)
                    if spec["cells"][position]["action"] == "run"
                },
            )


def _kernel_timeit_counts(client, events: _Events) -> None:
    """Ask the kernel how many ``%timeit`` calls ran once and in full (a ``timeit`` event)."""
    from jupyter_core.utils import run_sync

    expression = "__import__('jupyter_repro.smoke.fast', fromlist=['COUNTS']).COUNTS"
    try:
        reply = run_sync(client.kc.execute_interactive)(
            "", silent=True, store_history=False, timeout=30, user_expressions={"c": expression}
        )
        found = reply["content"]["user_expressions"]["c"]
        counts = ast.literal_eval(found["data"]["text/plain"])
        events.emit(event="timeit", shortened=int(counts["shortened"]), full=int(counts["full"]))
    except Exception:  # a dead kernel, or one without jupyter_repro: nothing to report
        pass
        pass


def _kernel_cells(client, nb, spec: dict[str, Any], events: _Events, replies: dict) -> None:
    from nbclient.exceptions import DeadKernelError

    for position, cell in enumerate(nb.cells):
        if spec["cells"][position]["action"] != "run":
            continue
        events.emit(event="cell_start", position=position)
        try:
            client.execute_cell(cell, position)
        except DeadKernelError as exc:
            events.emit(
                event="cell_end",
                position=position,
                ok=False,
                error=_error(
                    "DeadKernelError",
                    f"the kernel died during this cell ({exc})",
                    None,
                    "",
                ),
                outputs=_jsonable(cell.get("outputs", [])),
            )
            return
        reply = replies.get(position, {}).get("content", {})
        error = None
        if reply.get("status") == "error":
            # The error output has the real exception even where the reply does not
            # (an exception in a rich repr gives ename "NoneType" in the reply).
            shown = next(
                (o for o in cell.get("outputs", []) if o.get("output_type") == "error"),
                reply,
            )
            tb = _strip_ansi("\n".join(shown.get("traceback", [])))
            ename = shown.get("ename", "Error")
            evalue = shown.get("evalue", "")
            if ename in ("SyntaxError", "IndentationError", "TabError"):
                evalue = _SYNTAX_WHERE.sub("", evalue)
            error = _error(ename, evalue, _kernel_line(tb, cell.get("execution_count")), tb)
        elif any(p.get("source") == "ask_exit" for p in reply.get("payload", [])):
            error = _error("SystemExit", _EXIT_MESSAGE, None, "")
        events.emit(
            event="cell_end",
            position=position,
            ok=error is None,
            error=error,
            outputs=_jsonable(cell.get("outputs", [])),
        )
        tagged = RAISES_TAG in spec["cells"][position]["tags"]
        if error is not None and (not tagged or error["evalue"] == _EXIT_MESSAGE):
            break


def _create_time(pid: int | None) -> float | None:
    """The process's start time, so the parent never kills a later process with a reused pid."""
    from ..processes import create_time

    return None if pid is None else create_time(pid)


def _kernel_line(tb: str, count: int | None) -> int | None:
    for match in _KERNEL_CELL_LINE.finditer(tb):
        if count is None or int(match.group(1)) == count:
            return int(match.group(2))
    return None


# -- processes the notebook started (field case G12) ------------------------------------


def become_subreaper() -> bool:
    """See :func:`jupyter_repro.processes.become_subreaper` (orphans stay below us)."""
    from jupyter_repro.processes import become_subreaper as _become

    return _become()


def kill_descendants() -> list[str]:
    """SIGKILL every process below this one and reap it; returns their command lines.

    Repeats until none is left (one may fork while its siblings die).
    """
    import psutil

    me = psutil.Process()
    killed: list[str] = []
    for _round in range(10):
        try:
            kids = [k for k in me.children(recursive=True) if k.status() != psutil.STATUS_ZOMBIE]
        except psutil.Error:
            kids = []
        if not kids:
            break
        for kid in kids:
            try:
                killed.append(" ".join(kid.cmdline())[:200] or kid.name())
            except psutil.Error:
                pass
            try:
                kid.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(kids, timeout=2)
    _reap()
    return killed


def _reap() -> None:
    """Collect exit statuses of dead children (orphans re-parented here are children)."""
    while True:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def watch_parent(interval: float = 0.25) -> None:
    """End this worker, with everything below it, when nb-smoke itself dies (kill -9).

    A daemon thread compares ``os.getppid()`` with the parent at start; a parent that
    dies re-parents this process, the thread kills the descendants and exits. (A
    ``PR_SET_PDEATHSIG`` SIGKILL would leave the descendants to init.)
    """
    import threading

    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(interval)
            if os.getppid() != parent:
                kill_descendants()
                os._exit(1)

    threading.Thread(target=watch, name="nb-smoke-parent-watch", daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    spec_path, events_path = argv
    with open(spec_path, encoding="utf-8") as fh:
        spec = json.load(fh)
    events = _Events(events_path)
    started = time.monotonic()
    become_subreaper()
    watch_parent()
    try:
        if spec["mode"] == "kernel":
            run_kernel_mode(spec, events, spec_path)
        else:
            run_script_mode(spec, events, spec_path)
    except BaseException as exc:  # report anything, then let the parent decide
        events.emit(
            event="crash",
            ename=type(exc).__name__,
            evalue=str(exc),
            traceback="".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
        )
        _end_processes(events)
        return 3
    _end_processes(events)
    events.emit(event="done", seconds=time.monotonic() - started)
    return 0


def _end_processes(events: _Events) -> None:
    """Kill what the notebook left running; say so in an event the report turns into a note."""
    killed = [c for c in kill_descendants() if "ipykernel_launcher" not in c]
    if killed:
        events.emit(event="leftovers", processes=killed)


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # A notebook may leave non-daemon threads running; a kernel would not wait for them
    # at the end of a run, and neither does nb-smoke.
    os._exit(code)
