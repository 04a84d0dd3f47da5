"""The papermill call of one batch run: the notebook executed into a partial file in a
fresh kernel started for this run alone (by :mod:`jupyter_repro.kernels`, possibly while
the previous run was executing), and the facts of a failure read back.

Nothing process-wide changes while the run is in flight (no ``os.environ``, no file
descriptor, no ``os.chdir``): the kernel's environment, working directory and stderr are
given to its own launch, so several runs can share a process (a dask worker with several
threads).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..notebook import cell_tags
from ..provenance.mlflow_log import ADDED_CELL_TAGS, source_cell_index
from .supervise import RunState

#: papermill's marker on the cells it adds in front of a failing cell.
ERROR_CELL_TAG = ADDED_CELL_TAGS[1]

#: Seconds between two writes of a running notebook's partial output: a write asked for
#: sooner is made when the interval is over (so the file is at most this stale while a
#: long cell runs); the last state is always written when the notebook ends, fails or is
#: stopped.
PARTIAL_SAVE_EVERY = 1.0

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


#: papermill engine (registered by :func:`register_engine`) that runs a notebook in a
#: kernel the caller started: :mod:`jupyter_repro.kernels` hands every run its kernel.
ENGINE = "jupyter_repro"


@functools.cache
def register_engine() -> str:
    """Register :data:`ENGINE` with papermill (once per process) and return its name.

    It is papermill's own ``nbclient`` engine, except that the notebook client is given a
    kernel already started (``km=``, nbclient's documented argument) and still shuts it
    down and removes its files at the end, as for one it started itself
    (``owns_km``); a pre-started kernel first gets the run's own variables
    (``late_env``, :func:`jupyter_repro.kernels.late_env_code`) through nbclient's
    ``on_notebook_start`` hook, before any cell runs.
    """
    from papermill.clientwrap import PapermillNotebookClient
    from papermill.engines import NBClientEngine, papermill_engines
    from papermill.log import logger
    from papermill.utils import merge_kwargs, remove_args

    class StartedKernelEngine(NBClientEngine):
        @classmethod
        def execute_managed_notebook(
            cls,
            nb_man: Any,
            kernel_name: str,
            log_output: bool = False,
            stdout_file: Any = None,
            stderr_file: Any = None,
            start_timeout: float = 60,
            execution_timeout: float | None = None,
            km: Any = None,
            late_env: dict[str, str] | None = None,
            on_ready: Callable[[], Any] | None = None,
            **kwargs: Any,
        ) -> Any:
            # as NBClientEngine.execute_managed_notebook (papermill 2.x), plus km
            kwargs = remove_args(["input_path"], **kwargs)
            safe_kwargs = remove_args(["timeout", "startup_timeout"], **kwargs)
            final_kwargs = merge_kwargs(
                safe_kwargs,
                timeout=execution_timeout if execution_timeout else kwargs.get("timeout"),
                startup_timeout=start_timeout,
                kernel_name=kernel_name,
                log=logger,
                log_output=log_output,
                stdout_file=stdout_file,
                stderr_file=stderr_file,
            )
            client = PapermillNotebookClient(nb_man, km=km, **final_kwargs)
            client.owns_km = True  # shut down and cleaned up at the end, as nbclient's own

            async def kernel_ready(**_: Any) -> None:  # nbclient: the kernel replied
                if on_ready is not None:
                    done = on_ready()
                    if inspect.isawaitable(done):
                        await done
                if not late_env:
                    return
                from ..kernels import late_env_code

                reply = await client.kc.execute_interactive(
                    late_env_code(late_env),
                    silent=True,
                    store_history=False,
                    timeout=start_timeout,
                )
                if reply["content"].get("status") != "ok":
                    raise RuntimeError(
                        f"{KERNEL_START_FAILED}: the kernel refused the run's variables"
                    )

            client.on_notebook_start = kernel_ready
            # papermill writes the whole notebook at every cell's start and end (13 writes
            # for a 4-cell notebook, a fifth of a small run's time): while cells run,
            # at most one write per PARTIAL_SAVE_EVERY seconds; papermill's own
            # notebook_complete (after this returns or raises, also when the run is
            # stopped) writes the final state
            full_save = nb_man.save
            last = [-float("inf")]
            later: list[Any] = [None]  # the write put off, due PARTIAL_SAVE_EVERY after the last

            def write(**kw: Any) -> None:
                if later[0] is not None:
                    later[0].cancel()
                    later[0] = None
                last[0] = time.monotonic()
                full_save(**kw)

            def save(**kw: Any) -> None:
                wait = last[0] + PARTIAL_SAVE_EVERY - time.monotonic()
                if wait <= 0:
                    write(**kw)
                elif later[0] is None:  # not now: once the interval is over, even mid-cell
                    try:
                        loop = asyncio.get_running_loop()
                    except RuntimeError:
                        write(**kw)
                        return
                    later[0] = loop.call_later(wait, lambda: write(**kw))

            nb_man.save = save
            try:
                return client.execute()
            finally:
                if later[0] is not None:
                    later[0].cancel()
                nb_man.save = full_save

    papermill_engines.register(ENGINE, StartedKernelEngine)
    return ENGINE


def execute_notebook(
    nb: Any,
    partial: Path,
    start_timeout: float,
    state: RunState,
    take_kernel: Callable[[bool], tuple[Any, dict[str, str]]],
    used: list[Any],
    on_ready: Callable[[], Any] | None = None,
) -> Any:
    """Run ``nb`` with papermill in a kernel from ``take_kernel`` (a started
    ``RunKernelManager`` and the variables still to set in it), saving to ``partial``
    after every cell; returns the executed notebook. Every kernel taken is appended to
    ``used`` (the caller reads its stderr and makes sure it is gone); ``on_ready`` is
    called (and awaited, when a coroutine function) once the kernel answered, before the
    first cell.

    A kernel that dies while starting (under load; over TCP also a port taken between
    jupyter_client choosing it and the kernel binding it), or refuses the run's late
    variables, ran no user code: it is killed, and a kernel started now
    (``take_kernel(True)``: cold, never the spare, which would fail the same way; the
    run's variables given at launch) is taken once before the failure stands.

    Raises:
        whatever papermill raises (``PapermillExecutionError`` for a cell's own error,
        ``DeadKernelError`` once the kernel was killed, ...), and ``RuntimeError`` when
        the run was stopped before its kernel started.
    """
    import papermill

    engine = register_engine()
    for start in (1, 2):
        if state.stopping:
            raise RuntimeError("batch stopped")
        km, late_env = take_kernel(start > 1)
        used.append(km)
        if km.pid is not None:
            state.kernel_launched(km.pid)
        try:
            return papermill.execute_notebook(
                nb,
                str(partial),
                kernel_name=km.kernel_name,
                engine_name=engine,
                km=km,
                late_env=late_env,
                on_ready=on_ready,
                progress_bar=False,
                start_timeout=start_timeout,
                execution_timeout=None,  # the run-wide watchdog ends it
                request_save_on_cell_execute=True,
            )
        except RuntimeError as exc:
            if start == 2 or state.stopping or KERNEL_START_FAILED not in str(exc):
                raise
            # the failed kernel goes before the next one starts: it must not run on
            # beside it, unknown to the watchdog (which now follows the new one)
            from ..kernels import discard

            discard(km)
            state.kernel_gone()
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
