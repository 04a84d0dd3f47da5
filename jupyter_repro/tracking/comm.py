"""The comm protocol between the kernel's ``%track`` and any frontend.

Specified in ``docs/protocol.md`` (the document is the contract; this module implements
the kernel side of it). In short: the frontend opens a comm on :data:`TARGET`; it may send
``hello``, ``notebook`` (its cells in order), ``request_report`` and ``set_notices``; the
kernel answers ``welcome``, and pushes a ``report`` after every tracked execution and
whenever asked. Unknown fields are ignored; an unknown ``type`` gets an ``error`` reply.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from .._version import __version__
from ..errors import ProtocolError
from .order import FrontendCell

__all__ = [
    "INTERNAL_ERROR",
    "PROTOCOL_VERSION",
    "TARGET",
    "CommChannel",
    "ProtocolError",
    "envelope",
    "kernel_info",
    "parse_cells",
]

#: The comm target name a frontend opens.
TARGET = "jupyter_repro.track"
#: Protocol version, ``MAJOR.MINOR``: a client must refuse a different MAJOR and must
#: ignore fields and message types it does not know within the same MAJOR.
PROTOCOL_VERSION = "1.1"
#: How the ``message`` of an ``error`` reply starts when the kernel side failed (a bug),
#: as opposed to a message that does not follow the protocol.
INTERNAL_ERROR = "internal error in the kernel's %track"


def envelope(kind: str, **fields: Any) -> dict[str, Any]:
    """A kernel message: ``type`` and ``protocol`` first, then the fields."""
    return {"type": kind, "protocol": PROTOCOL_VERSION, **fields}


def parse_cells(data: Mapping[str, Any]) -> list[FrontendCell]:
    """The ``cells`` of a ``notebook`` message, validated."""
    cells = data.get("cells")
    if not isinstance(cells, list):
        raise ProtocolError("'cells' must be a list", "notebook")
    out: list[FrontendCell] = []
    for i, cell in enumerate(cells):
        if not isinstance(cell, Mapping) or not isinstance(cell.get("id"), str):
            raise ProtocolError(f"cells[{i}] needs a string 'id'", "notebook")
        source = cell.get("source", "")
        if isinstance(source, list) and all(isinstance(line, str) for line in source):
            source = "".join(source)  # nbformat's list-of-lines form
        if not isinstance(source, str):
            raise ProtocolError(
                f"cells[{i}].source must be a string or a list of strings", "notebook"
            )
        kind = cell.get("cell_type", "code")
        if not isinstance(kind, str):
            raise ProtocolError(f"cells[{i}].cell_type must be a string", "notebook")
        out.append(FrontendCell(cell["id"], kind, source))
    return out


class CommChannel:
    """The kernel's end: registers :data:`TARGET`, keeps open comms, dispatches messages.

    ``handlers`` maps a client message type to a function taking the message data and
    returning the reply (or None). The channel never raises into the kernel: a handler's
    :class:`ProtocolError` becomes an ``error`` message to that comm, and any other
    exception (a bug on the kernel side) an ``error`` whose message starts with
    :data:`INTERNAL_ERROR`; tracking goes on. A comm the frontend closed, or whose send
    fails, is dropped.
    """

    def __init__(self, handlers: Mapping[str, Callable[[Mapping[str, Any]], dict | None]]) -> None:
        self.handlers = dict(handlers)
        self.comms: list[Any] = []
        self._manager: Any = None

    def register(self) -> bool:
        """Register the target with the kernel's comm manager (False outside a kernel)."""
        try:
            import comm as comm_pkg

            manager = comm_pkg.get_comm_manager()
            manager.register_target(TARGET, self._on_open)
        except (ImportError, AttributeError, NotImplementedError):
            return False
        self._manager = manager
        return True

    def unregister(self) -> None:
        """Close open comms and forget the target."""
        for c in list(self.comms):
            try:
                c.close()
            except (RuntimeError, ValueError, AttributeError, OSError):
                pass
        self.comms.clear()
        if self._manager is not None:
            self._manager.unregister_target(TARGET, self._on_open)
            self._manager = None

    def _on_open(self, comm: Any, open_msg: Mapping[str, Any]) -> None:
        self.comms.append(comm)
        comm.on_msg(lambda msg: self._on_msg(comm, msg))
        comm.on_close(lambda _msg: self._forget(comm))
        data = open_msg.get("content", {}).get("data")
        # the open message may carry a first message; a bare open means "hello"
        self._dispatch(
            comm, data if isinstance(data, Mapping) and data.get("type") else {"type": "hello"}
        )

    def _forget(self, comm: Any) -> None:
        if comm in self.comms:
            self.comms.remove(comm)

    def _on_msg(self, comm: Any, msg: Mapping[str, Any]) -> None:
        self._dispatch(comm, msg.get("content", {}).get("data") or {})

    def _dispatch(self, comm: Any, data: Any) -> None:
        kind = data.get("type") if isinstance(data, Mapping) else None
        try:
            if not isinstance(kind, str) or kind not in self.handlers:
                raise ProtocolError(
                    f"unknown message type {kind!r}", kind if isinstance(kind, str) else None
                )
            version = data.get("protocol")
            if isinstance(version, str) and version.split(".")[0] != PROTOCOL_VERSION.split(".")[0]:
                raise ProtocolError(
                    f"protocol {version} is not supported (kernel speaks {PROTOCOL_VERSION})", kind
                )
            reply = self.handlers[kind](data)
        except ProtocolError as exc:
            reply = envelope("error", message=str(exc), in_reply_to=exc.in_reply_to)
        except Exception as exc:  # a bug here must not escape into ipykernel unanswered
            reply = envelope(
                "error",
                message=f"{INTERNAL_ERROR} ({type(exc).__name__}: {exc}); please report it",
                in_reply_to=kind if isinstance(kind, str) else None,
            )
        if reply is not None:
            self._send(comm, reply)

    def broadcast(self, message: dict[str, Any]) -> None:
        """Send a kernel message to every open comm (dropping those that are gone)."""
        for c in list(self.comms):
            self._send(c, message)

    def _send(self, comm: Any, message: dict[str, Any]) -> None:
        """Send, or forget a comm that is closed or whose send fails."""
        if getattr(comm, "_closed", False):
            self._forget(comm)
            return
        try:
            comm.send(message)
        except Exception:  # a dead comm must not break tracking: stop sending to it
            self._forget(comm)


def kernel_info() -> dict[str, str]:
    """What ``welcome`` says about the kernel side."""
    return {"name": "jupyter_repro", "version": __version__}
