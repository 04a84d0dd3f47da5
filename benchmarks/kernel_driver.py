"""Drive a real Jupyter kernel as JupyterLab 4 does, for the %track benchmarks.

Shared by ``track_accuracy.py`` and ``track_overhead.py``. Execute requests carry
``cellId`` (and an empty ``deletedCells``) in their metadata; comms are opened with
``comm_open`` and spoken with ``comm_msg``, and every iopub message is collected until the
kernel is idle again. Two kernels are supported:

* the stock IPython kernel of the interpreter running the benchmark (``python3``), where
  ``%track`` is loaded as it would be by a user;
* ipyflow's kernel (``python -m ipyflow.kernel``) from a separate virtual environment,
  spoken to over its ``ipyflow`` comm exactly as its JupyterLab extension
  (``jupyterlab-ipyflow``) does: ``comm_open`` with ``{interface: "jupyterlab",
  cell_metadata_by_id}``, ``change_active_cell`` before a run, ``compute_exec_schedule``
  after it; the reply lists ``waiting_cells`` and ``ready_cells``, the cells its UI marks.
"""

from __future__ import annotations

import atexit
import functools
import json
import os
import queue
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jupyter_client import KernelManager
from jupyter_client.kernelspec import KernelSpecManager

HERE = Path(__file__).resolve().parent
#: ipyflow lives in its own venv (it replaces the kernel class; it must not touch ours).
IPYFLOW_VENV = Path(os.environ.get("IPYFLOW_VENV", HERE / ".corpus" / "ipyflow-venv"))
IPYFLOW_SETUP = (
    "uv venv -p 3.11 benchmarks/.corpus/ipyflow-venv && uv pip install -p "
    "benchmarks/.corpus/ipyflow-venv ipyflow ipykernel numpy pandas"
)


#: Kernel managers alive in this process, so that a benchmark stopped by a signal
#: (``timeout``, Ctrl-C) leaves no kernel behind: see ``shutdown_all``.
LIVE: set[KernelManager] = set()
_LIVE_LOCK = threading.Lock()


def track_manager(km: KernelManager) -> None:
    """Register a started kernel manager for ``shutdown_all``."""
    with _LIVE_LOCK:
        LIVE.add(km)


def untrack_manager(km: KernelManager) -> None:
    """Forget a kernel manager whose kernel has been shut down."""
    with _LIVE_LOCK:
        LIVE.discard(km)


def shutdown_all(grace: float = 1.5) -> None:
    """Kill every kernel still alive (called on SIGTERM/SIGINT by the benchmarks). A
    kernel still starting when the signal came is only killable once its start returns:
    after ``grace`` seconds a second pass catches those."""
    for attempt in range(2):
        with _LIVE_LOCK:
            managers = list(LIVE)
        for km in managers:
            try:
                if km.has_kernel:
                    km.shutdown_kernel(now=True)
                    untrack_manager(km)
            except Exception:  # already gone, or still starting: the second pass
                pass
        if attempt == 0:
            time.sleep(grace)


@dataclass
class Reply:
    """What one request produced: status, stream text, outputs, comm messages."""

    status: str = "ok"
    stdout: str = ""
    stderr: str = ""
    outputs: list[dict[str, Any]] = field(default_factory=list)
    comm: list[dict[str, Any]] = field(default_factory=list)


@functools.cache
def ipyflow_python() -> Path | None:
    """The interpreter of the ipyflow venv, or None when ipyflow is not installed there
    (probed once per process: importing ipyflow costs seconds)."""
    python = IPYFLOW_VENV / "bin" / "python"
    if not python.exists():
        return None
    probe = subprocess.run(
        [str(python), "-c", "import ipyflow.kernel"], capture_output=True, timeout=120
    )
    return python if probe.returncode == 0 else None


def ipyflow_version() -> str | None:
    """ipyflow's installed version (from its distribution metadata), or None."""
    python = ipyflow_python()
    if python is None:
        return None
    out = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('ipyflow'))"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    return out.stdout.strip() or None


@functools.cache
def _ipyflow_spec_dir() -> str:
    """A kernelspec folder whose ``ipyflow-bench`` kernel runs ipyflow's venv (one per
    process, removed at exit)."""
    python = ipyflow_python()
    if python is None:
        raise RuntimeError(f"ipyflow is not installed in {IPYFLOW_VENV}; run: {IPYFLOW_SETUP}")
    root = Path(tempfile.mkdtemp(prefix="ipyflow-spec-"))
    atexit.register(shutil.rmtree, root, True)
    spec = root / "ipyflow-bench"
    spec.mkdir()
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [str(python), "-m", "ipyflow.kernel", "-f", "{connection_file}"],
                "display_name": "ipyflow (benchmark)",
                "language": "python",
            }
        )
    )
    return str(root)


def start_kernel(kind: str, cwd: str) -> tuple[KernelManager, Any, str | None]:
    """Start a ``python3`` or ``ipyflow`` kernel in ``cwd``: (manager, client, spec dir)."""
    env = dict(os.environ, PYTHONHASHSEED="0")
    spec_dir = None  # shared, removed at exit: nothing for the caller to clean
    if kind == "ipyflow":
        spec_dir = _ipyflow_spec_dir()
        km = KernelManager(
            kernel_name="ipyflow-bench",
            kernel_spec_manager=KernelSpecManager(kernel_dirs=[spec_dir]),
        )
    else:
        km = KernelManager(kernel_name="python3")
    # stderr: the kernel's TCP warning, once per kernel, would bury the benchmark's lines
    km.start_kernel(cwd=cwd, env=env, stderr=subprocess.DEVNULL)
    track_manager(km)
    kc = km.client()
    kc.start_channels()
    kc.wait_for_ready(timeout=120)
    return km, kc, spec_dir


class Frontend:
    """One kernel plus what a notebook frontend keeps (comm id, cell ids)."""

    def __init__(self, kind: str = "python3", cwd: str | None = None) -> None:
        self.kind = kind
        self._own_cwd = cwd is None
        self.cwd = cwd or tempfile.mkdtemp(prefix=f"bench-{kind}-")
        self.km, self.kc, self._spec_dir = start_kernel(kind, self.cwd)
        self.comm_id: str | None = None

    def close(self) -> None:
        """Stop the kernel and remove the temporary folders this frontend made."""
        try:
            self.kc.stop_channels()
            self.km.shutdown_kernel(now=True)
            untrack_manager(self.km)
        finally:
            if self._own_cwd:
                shutil.rmtree(self.cwd, ignore_errors=True)

    def __enter__(self) -> Frontend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def execute(self, code: str, cell_id: str | None = None, *, store_history: bool = True,
                timeout: float = 120) -> Reply:  # fmt: skip
        """Run ``code`` as the cell ``cell_id`` (JupyterLab's execute-request metadata)."""
        metadata: dict[str, Any] = {"deletedCells": []}
        if cell_id is not None:
            metadata["cellId"] = cell_id
        content = {"code": code, "silent": False, "store_history": store_history,
                   "user_expressions": {}, "allow_stdin": False, "stop_on_error": True}  # fmt: skip
        msg = self.kc.session.msg("execute_request", content, metadata=metadata)
        self.kc.shell_channel.send(msg)
        reply = self._collect(msg["header"]["msg_id"], timeout)
        reply.status = self._shell_reply(msg["header"]["msg_id"], timeout)["content"]["status"]
        return reply

    def open_comm(self, target: str, data: dict[str, Any]) -> Reply:
        """``comm_open`` on ``target``; the kernel's replies are in ``Reply.comm``."""
        self.comm_id = uuid.uuid4().hex
        msg = self.kc.session.msg(
            "comm_open", {"comm_id": self.comm_id, "target_name": target, "data": data}
        )
        self.kc.shell_channel.send(msg)
        return self._collect(msg["header"]["msg_id"], 60)

    def send(self, data: dict[str, Any], timeout: float = 120) -> Reply:
        """One ``comm_msg`` on the open comm; the kernel's replies are in ``Reply.comm``."""
        assert self.comm_id is not None, "open_comm first"
        msg = self.kc.session.msg("comm_msg", {"comm_id": self.comm_id, "data": data})
        self.kc.shell_channel.send(msg)
        return self._collect(msg["header"]["msg_id"], timeout)

    def _collect(self, parent_id: str, timeout: float) -> Reply:
        reply = Reply()
        deadline = time.monotonic() + timeout
        while True:
            try:
                msg = self.kc.get_iopub_msg(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise TimeoutError(f"{self.kind} kernel: no idle status in {timeout}s") from None
            if msg["parent_header"].get("msg_id") != parent_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream":
                if content["name"] == "stdout":
                    reply.stdout += content["text"]
                else:
                    reply.stderr += content["text"]
                reply.outputs.append({"output_type": "stream", **content})
            elif kind in ("execute_result", "display_data", "error"):
                reply.outputs.append({"output_type": kind, **content})
            elif kind == "comm_msg" and content.get("comm_id") == self.comm_id:
                reply.comm.append(content["data"])
            elif kind == "status" and content["execution_state"] == "idle":
                return reply

    def _shell_reply(self, parent_id: str, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            msg = self.kc.get_shell_msg(timeout=max(0.1, deadline - time.monotonic()))
            if msg["parent_header"].get("msg_id") == parent_id:
                return msg
