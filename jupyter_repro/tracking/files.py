"""Files and folders a cell really used, from Python's audit hooks (PEP 578).

The static analysis sees ``open("in.txt")``; it cannot see ``open(src)`` where ``src`` is
a variable, ``os.makedirs(out)``, ``os.rename(a, b)`` or ``os.listdir(folder)``. An audit
hook sees every such access, whatever built the path: the interpreter raises the events
``open``, ``os.rename`` (also ``os.replace``), ``os.remove`` (also ``os.unlink``),
``os.rmdir``, ``os.mkdir``, ``os.listdir``, ``os.scandir``, ``shutil.copyfile``,
``shutil.copytree``, ``shutil.rmtree``, ``shutil.move`` and ``glob.glob`` before doing
the operation (https://docs.python.org/3/library/audit_events.html).

What a cell did is recorded as names the verdicts already understand (``file:`` +
absolute path, resolved against the working folder at the time of the access):

- reading a file: a read of ``file:<path>``; writing, creating, renaming or removing
  one: a write of it;
- listing a folder (``os.listdir``, ``os.scandir``, ``os.walk``, ``glob``,
  ``Path.iterdir``): a read of ``file:<folder>/`` (the folder's *listing*); creating,
  renaming or removing an entry of a folder: a write of its listing. So a later write
  makes earlier readers of that file, and earlier listers of its folder, stale.

An audit hook cannot be removed, so there is one per process (:func:`install`), and it
is a no-op (one global read) unless a tracked cell is running on the thread that started
it: imports, IPython's history and the record file written between cells are not seen.
Files of the Python installation (``sys.prefix``, site-packages: imports reading
``.pyc`` files) and of ``/proc``, ``/sys``, ``/dev`` are ignored.
"""

from __future__ import annotations

import os
import site
import sys
import threading
from typing import Any

FILE_PREFIX = "file:"

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_DIRECTORY_FLAG = getattr(os, "O_DIRECTORY", 0)


class FileAccess:
    """What one cell did to files and folders, in the order it did it.

    Attributes:
        reads: ``file:`` names read before this cell wrote them (a file it wrote and then
            read back is its own, not an input).
        writes: ``file:`` names written.
        thread: the thread the cell runs on (other threads are not the cell's).
    """

    __slots__ = ("cwd", "reads", "thread", "writes")

    def __init__(self) -> None:
        self.reads: set[str] = set()
        self.writes: set[str] = set()
        self.thread = threading.get_ident()
        self.cwd = os.getcwd()

    def read(self, path: str) -> None:
        if path not in self.writes:
            self.reads.add(path)

    def write(self, path: str) -> None:
        self.writes.add(path)


_current: FileAccess | None = None
_installed = False
_ignored: tuple[str, ...] = ()


def _ignored_roots() -> tuple[str, ...]:
    roots = {sys.prefix, sys.base_prefix, sys.exec_prefix, "/proc", "/sys", "/dev"}
    try:
        roots.update(site.getsitepackages())
        roots.add(site.getusersitepackages())
    except Exception:  # a stripped-down site module
        pass
    return tuple(os.path.join(os.path.realpath(r), "") for r in roots if r)


def install() -> None:
    """Add the process's audit hook once (it stays for the life of the process)."""
    global _installed, _ignored
    if _installed:
        return
    _ignored = _ignored_roots()
    sys.addaudithook(_hook)
    _installed = True


def start() -> FileAccess:
    """Record the file accesses of the calling thread until :func:`stop`."""
    global _current
    install()
    _current = FileAccess()
    return _current


def stop() -> FileAccess | None:
    """Stop recording; the accesses since :func:`start` (None if not started)."""
    global _current
    access, _current = _current, None
    return access


def _name(access: FileAccess, path: Any, listing: bool = False) -> str | None:
    """``file:<absolute path>`` (``file:<folder>/`` for a listing), or None for a path
    that is not one (a file descriptor) or is ignored."""
    if isinstance(path, os.PathLike):
        path = os.fspath(path)
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if not isinstance(path, str) or not path:
        return None
    full = os.path.normpath(os.path.join(access.cwd, path))
    if full.startswith(_ignored):
        return None
    return FILE_PREFIX + (os.path.join(full, "") if listing else full)


def _parent_listing(access: FileAccess, path: Any) -> str | None:
    name = _name(access, path)
    if name is None:
        return None
    return FILE_PREFIX + os.path.join(os.path.dirname(name[len(FILE_PREFIX) :]), "")


def _created(access: FileAccess, path: Any) -> None:
    """A write of ``path`` and, when it did not exist, of its folder's listing."""
    name = _name(access, path)
    if name is None:
        return
    if not os.path.lexists(name[len(FILE_PREFIX) :]):
        listing = _parent_listing(access, path)
        if listing:
            access.write(listing)
    access.write(name)


def _removed(access: FileAccess, path: Any) -> None:
    name = _name(access, path)
    if name is None:
        return
    access.write(name)
    access.write(name.rstrip("/") + "/")  # a folder's listing, when it is one
    listing = _parent_listing(access, path)
    if listing:
        access.write(listing)


def _on_open(access: FileAccess, args: tuple) -> None:
    path, mode, flags = args[0], args[1], args[2] if len(args) > 2 else 0
    if isinstance(mode, str):
        writes = any(ch in mode for ch in "wax+")
        reads = "r" in mode or "+" in mode or not writes
    else:  # os.open: the flags say it
        if flags & _DIRECTORY_FLAG:
            return
        writes = bool(flags & _WRITE_FLAGS)
        reads = not writes or bool(flags & os.O_RDWR)
    name = _name(access, path)
    if name is None or name.endswith((".py", ".pyc", ".so")):
        return
    if reads:
        access.read(name)
    if writes:
        _created(access, path)


def _on_rename(access: FileAccess, args: tuple) -> None:
    if len(args) > 2 and args[2] not in (-1, None):
        return  # relative to a folder descriptor: the path alone says nothing
    _removed(access, args[0])
    _created(access, args[1])


def _on_remove(access: FileAccess, args: tuple) -> None:
    if len(args) > 1 and args[1] not in (-1, None):
        return
    _removed(access, args[0])


def _on_mkdir(access: FileAccess, args: tuple) -> None:
    if len(args) > 2 and args[2] not in (-1, None):
        return
    _created(access, args[0])
    name = _name(access, args[0], listing=True)
    if name:
        access.write(name)


#: where the import system lists the folders of ``sys.path`` from (its finders' caches,
#: ``importlib.metadata``, ``pkgutil``): such a listing is an import, not the cell's input
_IMPORT_CODE = ("<frozen importlib", "<frozen zipimport")
_IMPORT_FILES = tuple(
    os.path.join(os.path.dirname(os.__file__), part)
    for part in ("importlib" + os.sep, "pkgutil.py", "zipimport.py")
)


def _by_import_system() -> bool:
    """Whether the listing being audited was made by the import system (the code that
    called ``os.listdir``/``os.scandir``: three frames up, past the hook and the
    handler). ``import numpy`` lists the working folder, ``''`` on ``sys.path``; taking
    that for the cell's input made every later file created there stale it."""
    try:
        caller = sys._getframe(3).f_code.co_filename
    except ValueError:
        return False
    return caller.startswith(_IMPORT_CODE) or caller.startswith(_IMPORT_FILES)


def _on_list(access: FileAccess, args: tuple) -> None:
    path = args[0] if args else None
    if isinstance(path, int) or _by_import_system():
        return
    name = _name(access, "." if path is None else path, listing=True)
    if name:
        access.read(name)


def _on_glob(access: FileAccess, args: tuple) -> None:
    pattern = args[0] if args else None
    if isinstance(pattern, bytes):
        pattern = os.fsdecode(pattern)
    if not isinstance(pattern, str):
        return
    head = pattern
    while head and any(ch in head for ch in "*?["):
        head = os.path.dirname(head)
    _on_list(access, (head or ".",))


def _on_copy(access: FileAccess, args: tuple) -> None:
    name = _name(access, args[0])
    if name:
        access.read(name)
    _created(access, args[1])


def _on_copytree(access: FileAccess, args: tuple) -> None:
    name = _name(access, args[0], listing=True)
    if name:
        access.read(name)
    _on_mkdir(access, (args[1],))


def _on_chdir(access: FileAccess, args: tuple) -> None:
    if args and isinstance(args[0], (str, bytes, os.PathLike)):
        access.cwd = os.path.normpath(os.path.join(access.cwd, os.fsdecode(args[0])))


_HANDLERS = {
    "os.chdir": _on_chdir,
    "open": _on_open,
    "os.rename": _on_rename,
    "os.remove": _on_remove,
    "os.rmdir": _on_remove,
    "os.mkdir": _on_mkdir,
    "os.listdir": _on_list,
    "os.scandir": _on_list,
    "glob.glob": _on_glob,
    "shutil.copyfile": _on_copy,
    "shutil.copytree": _on_copytree,
    "shutil.rmtree": lambda access, args: _removed(access, args[0]),
    "shutil.move": lambda access, args: (_removed(access, args[0]), _created(access, args[1])),
}


def _hook(event: str, args: tuple) -> None:
    """The audit hook: a no-op unless a tracked cell runs on this thread. It must never
    raise (an exception in an audit hook aborts the operation that raised the event)."""
    access = _current
    if access is None:
        return
    handler = _HANDLERS.get(event)
    if handler is None or threading.get_ident() != access.thread:
        return
    try:
        handler(access, args)
    except Exception:
        pass
