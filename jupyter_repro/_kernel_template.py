# The kernel template process (jupyter_repro.kernels.KernelTemplate): run as
# ``python <this file> <reply fd> <kernel folder>``, never imported (the folder only names
# the template and its kernels in ``ps``).
#
# It imports what every fresh IPython kernel imports before it answers (ipykernel, IPython,
# zmq, tornado, jupyter_client) and nothing else: no user code, no user state, no thread,
# no event loop, no socket. Then it reads launch requests, one JSON line each on stdin,
# and for each forks a child that becomes ``python -m ipykernel_launcher <args>`` exactly
# as a new interpreter would: its own session, cwd, environment, stdin a pipe with no writer,
# stderr to the request's file, ``sys.argv``/``sys.path[0]`` as ``-m`` sets them. The
# child's pid goes back as one line on the reply fd. ``random`` is re-seeded in every
# child by the fork hook CPython registers; the string-hash seed is the template's.
#
# The template reaps its children (SIGCHLD) and exits at EOF on stdin: when the process
# that started it ends, however it ends.
import sys

# this file's folder: nothing of jupyter_repro may shadow what follows, or show in a kernel
sys.path_importer_cache.pop(sys.path.pop(0), None)
sys.path_importer_cache.pop(sys.argv[0], None)  # the interpreter looked at the script too

import json  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402

_REPLY_FD = int(sys.argv[1])


def _import_kernel_modules():
    """Import ipykernel; return the environment variables read meanwhile ({name: value
    or None}; "*" when the whole environment was read): a module that reads a variable
    as it is imported keeps the template's value in every forked kernel, so a kernel is
    forked only where its own values are the same (KernelTemplate.fits)."""
    environ = type(os.environ)
    read = {}
    names = ("get", "__getitem__", "__contains__", "__iter__", "__setitem__", "__delitem__")
    saved = {name: getattr(environ, name) for name in names}

    def note(key):
        try:
            read[key] = saved["__getitem__"](os.environ, key)
        except KeyError:
            read[key] = None

    def get(self, key, default=None):
        note(key)
        return saved["get"](self, key, default)

    def getitem(self, key):
        note(key)
        return saved["__getitem__"](self, key)

    def contains(self, key):
        note(key)
        return saved["__contains__"](self, key)

    def iterate(self):
        read["*"] = None
        return saved["__iter__"](self)

    def setitem(self, key, value):  # an import that sets a variable: cannot be forked
        read["*"] = None
        return saved["__setitem__"](self, key, value)

    def delitem(self, key):
        read["*"] = None
        return saved["__delitem__"](self, key)

    environ.get, environ.__getitem__ = get, getitem
    environ.__contains__, environ.__iter__ = contains, iterate
    environ.__setitem__, environ.__delitem__ = setitem, delitem
    try:
        import ipykernel.ipkernel
        import ipykernel.kernelapp
        import ipykernel.zmqshell  # noqa: F401
    finally:
        for name, method in saved.items():
            setattr(environ, name, method)
    return read


_READ = _import_kernel_modules()


def _reap(signum, frame):
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _serve():
    """Fork a child per request; return the request in the child, None at EOF."""
    import threading

    signal.signal(signal.SIGCHLD, _reap)
    out = os.fdopen(_REPLY_FD, "w", buffering=1)
    hello = {"ready": True, "threads": threading.active_count(), "read": _READ, "path": sys.path}
    print(json.dumps(hello), file=out)
    pending = b""
    while True:  # raw reads: nothing of a request stays in a buffer the child inherits
        while b"\n" not in pending:
            chunk = os.read(0, 65536)
            if not chunk:
                return None
            pending += chunk
        line, pending = pending.split(b"\n", 1)
        request = json.loads(line)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            return request
        print(json.dumps({"pid": pid}), file=out)


def _become_kernel(request):
    import runpy

    try:
        template = os.getppid()
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        os.setsid()  # as jupyter_client's launcher (start_new_session)
        # stdin: a pipe whose writer is gone, as jupyter_client's launcher leaves it
        stdin_read, stdin_write = os.pipe()
        os.close(stdin_write)
        os.dup2(stdin_read, 0)
        if request.get("stderr"):
            err = os.open(request["stderr"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            os.dup2(err, 2)
        os.closerange(3, os.sysconf("SC_OPEN_MAX") if hasattr(os, "sysconf") else 1024)
        if request.get("subreaper") or request.get("die"):
            import ctypes

            prctl = ctypes.CDLL(None, use_errno=True).prctl
            if request.get("subreaper"):
                prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
            if request.get("die"):
                prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
                if os.getppid() != template:
                    os._exit(1)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        if "tempfile" in sys.modules:
            sys.modules["tempfile"].tempdir = None  # re-read $TMPDIR
        import time

        time.tzset()
        sys.path.insert(0, os.getcwd())  # what ``python -m`` puts first
        # read by ipykernel as it was imported (here, in the template): this kernel's
        # parent, whose end ends it (ipykernel's ParentPollerUnix)
        from ipykernel.kernelapp import IPKernelApp

        IPKernelApp.class_traits()["parent_handle"].default_value = template
        cache = IPKernelApp.__dict__.get("_static_immutable_initial_values")
        if isinstance(cache, dict) and "parent_handle" in cache:  # traitlets >= 5.10
            cache["parent_handle"] = template
        sys.argv = ["-m", *request["args"]]
        if hasattr(sys, "orig_argv"):  # Python >= 3.10 (a kernelspec may name an older one)
            sys.orig_argv = [sys.executable, "-m", "ipykernel_launcher", *request["args"]]
        main = sys.modules["__main__"].__dict__
        for name in [n for n in main if n != "__builtins__"]:
            del main[name]
    except BaseException:
        import traceback

        traceback.print_exc()
        os._exit(1)
    # as ``python -m ipykernel_launcher``; SystemExit ends the interpreter as usual
    runpy._run_module_as_main("ipykernel_launcher")


_request = _serve()
if _request is not None:
    _become_kernel(_request)
