"""A frontend for tests: talks to a real kernel the way JupyterLab 4 does.

Execute requests carry ``cellId`` and ``deletedCells`` in their metadata; the ``%track``
comm is opened with ``comm_open`` and spoken with ``comm_msg``. Written from
``docs/protocol.md`` only (no import from ``jupyter_repro``).
"""

from __future__ import annotations

import queue
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from jupyter_client import KernelManager

TARGET = "jupyter_repro.track"


@dataclass
class Reply:
    """What one request produced: the shell reply, stream text, and comm messages."""

    status: str
    stdout: str = ""
    stderr: str = ""
    comm: list[dict[str, Any]] = field(default_factory=list)
    closed_comms: list[str] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)  # iopub ``error`` contents


class Frontend:
    """One kernel plus the bookkeeping a notebook frontend keeps."""

    def __init__(self, extra_arguments: list[str] | None = None, env: dict | None = None,
                 cwd: str | None = None) -> None:  # fmt: skip
        self.km = KernelManager(kernel_name="python3")
        kwargs: dict[str, Any] = {"extra_arguments": extra_arguments or []}
        if env is not None:
            kwargs["env"] = env
        if cwd is not None:
            kwargs["cwd"] = cwd
        self.km.start_kernel(**kwargs)
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=60)
        self.comm_id: str | None = None
        self._pending_deleted: list[str] = []

    def close(self) -> None:
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)

    # -- requests ------------------------------------------------------------------------
    def execute(self, code: str, cell_id: str | None = None, *, silent: bool = False,
                store_history: bool = True) -> Reply:  # fmt: skip
        """Run a cell; metadata as JupyterLab sends it (``deletedCells`` since last time)."""
        metadata: dict[str, Any] = {"deletedCells": self._pending_deleted}
        if cell_id is not None:
            metadata["cellId"] = cell_id
        self._pending_deleted = []
        content = {"code": code, "silent": silent, "store_history": store_history,
                   "user_expressions": {}, "allow_stdin": False, "stop_on_error": True}  # fmt: skip
        msg = self.kc.session.msg("execute_request", content, metadata=metadata)
        self.kc.shell_channel.send(msg)
        reply = self._collect(msg["header"]["msg_id"])
        shell = self._shell_reply(msg["header"]["msg_id"])
        reply.status = shell["content"]["status"]
        return reply

    def delete_cells(self, *cell_ids: str) -> None:
        """Delete cells in the UI: reported with the next execute request."""
        self._pending_deleted.extend(cell_ids)

    def open_comm(self, data: dict[str, Any] | None = None) -> Reply:
        self.comm_id = uuid.uuid4().hex
        msg = self.kc.session.msg(
            "comm_open", {"comm_id": self.comm_id, "target_name": TARGET, "data": data or {}}
        )
        self.kc.shell_channel.send(msg)
        return self._collect(msg["header"]["msg_id"])

    def close_comm(self) -> Reply:
        """Close the comm from the frontend side (``comm_close``)."""
        assert self.comm_id is not None
        msg = self.kc.session.msg("comm_close", {"comm_id": self.comm_id, "data": {}})
        self.kc.shell_channel.send(msg)
        return self._collect(msg["header"]["msg_id"])

    def send(self, data: dict[str, Any]) -> Reply:
        assert self.comm_id is not None
        msg = self.kc.session.msg("comm_msg", {"comm_id": self.comm_id, "data": data})
        self.kc.shell_channel.send(msg)
        return self._collect(msg["header"]["msg_id"])

    def report(self) -> dict[str, Any]:
        """Ask for the current report over the comm."""
        replies = [m for m in self.send({"type": "request_report"}).comm if m["type"] == "report"]
        assert replies, "no report in reply to request_report"
        return replies[-1]

    def send_notebook(self, cells: list[tuple[str, str]]) -> Reply:
        """Tell the kernel the notebook's code cells in order: ``[(id, source), ...]``."""
        return self.send(
            {"type": "notebook", "protocol": "1.0",
             "cells": [{"id": i, "cell_type": "code", "source": s} for i, s in cells]}
        )  # fmt: skip

    # -- plumbing ------------------------------------------------------------------------
    def _collect(self, parent_id: str, timeout: float = 30) -> Reply:
        reply = Reply(status="ok")
        deadline = time.monotonic() + timeout
        while True:
            try:
                msg = self.kc.get_iopub_msg(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise TimeoutError(f"no idle status for {parent_id}") from None
            if msg["parent_header"].get("msg_id") != parent_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream":
                if content["name"] == "stdout":
                    reply.stdout += content["text"]
                else:
                    reply.stderr += content["text"]
            elif kind == "comm_msg" and content.get("comm_id") == self.comm_id:
                reply.comm.append(content["data"])
            elif kind == "error":
                reply.errors.append(content)
            elif kind == "comm_close":
                reply.closed_comms.append(content.get("comm_id"))
            elif kind == "status" and content["execution_state"] == "idle":
                return reply

    def _shell_reply(self, parent_id: str, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            msg = self.kc.get_shell_msg(timeout=max(0.1, deadline - time.monotonic()))
            if msg["parent_header"].get("msg_id") == parent_id:
                return msg


def verdicts_by_cell(report: dict[str, Any]) -> dict[str, set[str]]:
    """``{cell_id: {verdict, ...}}`` for the cells that have findings."""
    out: dict[str, set[str]] = {}
    for f in report["findings"]:
        out.setdefault(f["cell_id"], set()).add(f["verdict"])
    return out
