"""The executor registry: executor names -> classes, from the entry point group
``jupyter_repro.executors`` (as papermill registers its engines) and
:func:`register_executor`, which the entry-point loader uses too.

Light on purpose (no executor is imported until one is chosen): the ``batch`` parser
reads the names for ``--executor``'s choices only when argparse needs them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .executors import Executor

#: The entry point group executors are registered in.
ENTRY_POINT_GROUP = "jupyter_repro.executors"


_REGISTRY: dict[str, str | type] = {}
_LOADED = False


def register_executor(name: str, target: str | type) -> None:
    """Make executor ``name`` available to ``--executor``.

    Args:
        target: the class, or ``"module:Class"`` (imported on first use, as an entry
            point's value).

    The entry points of group :data:`ENTRY_POINT_GROUP` are registered through this
    function; a later registration of the same name replaces the earlier one.
    """
    _REGISTRY[name] = target


def _load_entry_points() -> None:
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        _REGISTRY.setdefault(ep.name, ep.value)
    # Built in: present even when the package metadata is not installed (a source tree).
    _REGISTRY.setdefault("local", "jupyter_repro.batch.executors:LocalProcessExecutor")
    _REGISTRY.setdefault("dask", "jupyter_repro.batch.dask_executor:DaskExecutor")


def executor_names() -> list[str]:
    """Every registered executor name, ``local`` first, then sorted."""
    _load_entry_points()
    return sorted(_REGISTRY, key=lambda name: (name != "local", name))


def executor_class(name: str) -> type[Executor]:
    """The executor class registered as ``name``.

    Raises:
        ReproError: no executor has that name, or its module cannot be imported.
    """
    from ..errors import ReproError

    _load_entry_points()
    target = _REGISTRY.get(name)
    if target is None:
        raise ReproError(f"--executor must be one of {', '.join(executor_names())}, not {name!r}")
    if isinstance(target, str):
        import importlib

        module, _, attr = target.partition(":")
        try:
            obj: Any = importlib.import_module(module)
            for part in attr.split("."):
                obj = getattr(obj, part)
        except (ImportError, AttributeError) as exc:
            raise ReproError(
                f"--executor {name}: cannot load {target} ({type(exc).__name__}: {exc})"
            ) from None
        target = _REGISTRY[name] = obj
    return target


class ExecutorNames:
    """``--executor``'s choices, read from the registry only when argparse needs them
    (checking a given value, or printing help), so other commands never pay for it."""

    def __contains__(self, name: object) -> bool:
        return name in executor_names()

    def __iter__(self) -> Any:
        return iter(executor_names())

    def __len__(self) -> int:
        return len(executor_names())
