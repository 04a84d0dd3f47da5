"""The papermill call of one batch run: a fresh kernel launched for this run alone, the
notebook executed into a partial file, and the facts of a failure read back.

Nothing process-wide changes while the run is in flight (no ``os.environ``, no file
descriptor, no ``os.chdir``): the kernel's environment, working directory and stderr are
given to its own launch, so several runs can share a process (a dask worker with several
threads).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..notebook import cell_tags
from ..processes import kill_children, subreaper_preexec
from ..provenance.mlflow_log import ADDED_CELL_TAGS, source_cell_index
from .supervise import RunState

#: papermill's marker on the cells it adds in front of a failing cell.
ERROR_CELL_TAG = ADDED_CELL_TAGS[1]

#: nbclient's message when a kernel died while starting (no user code ran).
KERNEL_START_FAILED = "before replying to kernel_info"


def papermill_ready(nb: Any) -> Any:
    """The metadata papermill's own loader adds (tags lists, ``papermill`` dicts).

    Notebooks read by :func:`~jupyter_repro.notebook.read_notebook` (including jupytext
    ones) lack them, and papermill's parameterize step fails with AttributeError without.
    """
    import nbformat

    nb = nbformat.from_dict(nb)
    nb.metadata.setdefault(
        "papermill",
        {"default_parameters": {}, "parameters": {}, "environment_variables": {}},
    )
    for cell in nb.cells:
        cell.setdefault("metadata", {}).setdefault("tags", [])
        cell.metadata.setdefault("papermill", {})
    return nbformat.from_dict(nb)


def kernel_manager_class(state: RunState, env: dict[str, str], stderr_path: Path, cwd: str) -> type:
    """An ``AsyncKernelManager`` that starts this run's kernel in ``cwd``, with ``env``
    added to its environment and its stderr in ``stderr_path``, and records its pid in
    ``state`` (:meth:`~.supervise.RunState.kernel_launched`).

    Given to nbclient through papermill (``kernel_manager_class``), so nothing
    process-wide changes while the run is in flight: papermill's own ``cwd=`` changes
    the directory of the whole process, which runs sharing a dask worker would race on.
    """
    from jupyter_client import AsyncKernelManager

    class RunKernelManager(AsyncKernelManager):
        async def _async_launch_kernel(self, kernel_cmd: list[str], **kw: Any) -> None:
            kw["env"] = {**(kw.get("env") or os.environ), **env}
            kw["cwd"] = cwd
            # The kernel inherits the orphans of everything the notebook starts (a
            # process in its own session whose parent exited, field case G12), so they
            # stay in its tree: shutdown_kernel and kill_kernel kill them with it.
            kw["preexec_fn"] = subreaper_preexec()
            with open(stderr_path, "ab") as err:
                kw["stderr"] = err
                await super()._async_launch_kernel(kernel_cmd, **kw)
            pid = getattr(self.provisioner, "pid", None)
            if isinstance(pid, int):
                state.kernel_launched(pid)
            elif state.stopping or state.timed_out:
                state.kill_kernel()

        async def shutdown_kernel(self, now: bool = False, restart: bool = False) -> None:
            # The notebook is done: what it left running (children, detached grandchildren
            # re-parented to the kernel) goes first, then the kernel shuts down as usual.
            pid = getattr(self.provisioner, "pid", None)
            if isinstance(pid, int) and not restart:
                kill_children(pid)
            await super()._async_shutdown_kernel(now=now, restart=restart)

    return RunKernelManager


def execute_notebook(
    nb: Any, partial: Path, kernel_name: str, start_timeout: float, km_class: type, state: RunState
) -> Any:
    """Run ``nb`` with papermill, saving to ``partial`` after every cell; returns the
    executed notebook.

    A kernel that dies while starting (e.g. a port taken between jupyter_client choosing
    it and the kernel binding it, under load) ran no user code: a fresh one is started
    once before the failure stands.

    Raises:
        whatever papermill raises (``PapermillExecutionError`` for a cell's own error,
        ``DeadKernelError`` once the kernel was killed, ...), and ``RuntimeError`` when
        the run was stopped before its kernel started.
    """
    import papermill

    if state.stopping:
        raise RuntimeError("batch stopped")
    for start in (1, 2):
        try:
            return papermill.execute_notebook(
                nb,
                str(partial),
                kernel_name=kernel_name,
                progress_bar=False,
                start_timeout=start_timeout,
                execution_timeout=None,  # the run-wide watchdog ends it
                request_save_on_cell_execute=True,
                kernel_manager_class=km_class,
            )
        except RuntimeError as exc:
            if start == 2 or state.stopping or KERNEL_START_FAILED not in str(exc):
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def is_cell_error(exc: BaseException | None) -> bool:
    """Whether ``exc`` is a cell of the notebook raising (its own failure), not a
    kernel that died, a timeout or a stop."""
    from papermill.exceptions import PapermillExecutionError

    return isinstance(exc, PapermillExecutionError)


def describe_failure(exc: BaseException, executed: Any) -> tuple[str, dict[str, Any]]:
    """A one-line reason and the failing cell's facts (``error.json``) for an exception
    raised by :func:`execute_notebook`; ``executed`` is the partial notebook or None."""
    if is_cell_error(exc):
        # papermill's index is into the notebook before it added its error-marker cells
        cells = [c for c in (executed or {}).get("cells", []) if ERROR_CELL_TAG not in cell_tags(c)]
        index = source_cell_index({"cells": cells}, exc.cell_index)
        cell_id = cells[exc.cell_index].get("id") if exc.cell_index < len(cells) else None
        error = {
            "cell_index": index,
            "cell_id": cell_id,
            "execution_count": exc.exec_count,
            "ename": exc.ename,
            "evalue": exc.evalue,
            "traceback": [str(line) for line in (exc.traceback or [])][-30:],
        }
        return f"cell {index} raised {exc.ename}: {exc.evalue}", error
    name = type(exc).__name__
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    if name == "DeadKernelError":
        return f"the kernel died ({first or 'DeadKernelError'})", {"ename": name, "evalue": first}
    if name == "CellTimeoutError":
        return f"a cell timed out: {first}", {"ename": name, "evalue": first}
    return f"{name}: {first}", {"ename": name, "evalue": first}


def running_cell(executed: Any) -> int | None:
    """Source index of the cell that was running when the kernel was stopped.

    papermill marks every cell "completed" when it gives up, so the running cell is the
    last one that has a start time.
    """
    if executed is None:
        return None
    last = None
    for index, cell in enumerate(executed.get("cells", [])):
        if cell.get("metadata", {}).get("papermill", {}).get("start_time"):
            last = index
    return source_cell_index(executed, last) if last is not None else None
