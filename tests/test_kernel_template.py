"""Kernels forked from a template (jupyter_repro.kernels.KernelTemplate, issue 19): what
a notebook can observe in one is what it observes in a kernel started as a new
interpreter, apart from the string-hash seed, which the template's forks share.

Real kernels, real templates; every probe runs in both kinds and is compared.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import psutil
import pytest
from batch_support import pid_running, wait_for
from jupyter_core.utils import run_sync

from jupyter_repro import kernels

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")

#: What a cell can observe about its process and interpreter, as one JSON line.
PROBE = r"""
import sys, os, json, threading, locale, signal, tempfile, random, re, stat
def fd_kinds():  # what kinds of file descriptors are open (their number varies with zmq)
    if not os.path.isdir('/proc/self/fd'):
        return None
    kinds = set()
    for fd in os.listdir('/proc/self/fd'):
        try:
            link = os.readlink('/proc/self/fd/' + fd)
            kinds.add(re.sub(r'[0-9]+', 'N', link) if ':' in link else 'file')
        except OSError:
            pass
    return sorted(kinds)
print(json.dumps({
    'argv0': sys.argv[0], 'argv_rest': sys.argv[2:], 'orig_argv': sys.orig_argv[:3],
    'executable': sys.executable, 'path': sys.path, 'cwd': os.getcwd(),
    'flags': repr(sys.flags), 'modules': sorted(sys.modules),
    'threads': sorted(t.name.split(' (')[0].rstrip('-0123456789') for t in threading.enumerate()),
    'env_keys': sorted(k for k in os.environ if k != 'JPY_PARENT_PID'),
    'run_var': os.environ.get('RUN_VAR'), 'tmp': tempfile.gettempdir(),
    'own_session': os.getsid(0) == os.getpid(), 'stdin': sys.stdin.read(),
    'encoding': [sys.stdout.encoding, sys.getfilesystemencoding()],
    'locale': locale.getlocale(), 'main': sorted(k for k in vars(sys.modules['__main__'])
                                                 if not k.startswith('_')),
    'signals': {n: str(signal.getsignal(getattr(signal, n)))
                for n in ('SIGINT', 'SIGTERM', 'SIGCHLD', 'SIGPIPE', 'SIGHUP')},
    'parent_pid_env': os.environ.get('JPY_PARENT_PID') == str(os.getppid()),
    'umask': os.umask(0o22), 'fds': fd_kinds(), 'stdin_kind': stat.S_IFMT(os.fstat(0).st_mode),
    'importer_cache': sorted(k for k in sys.path_importer_cache if 'jupyter_repro' in k),
    'random': random.random(), 'hash': hash('jupyter_repro'),
}))
"""


def _observe(pool: kernels.KernelPool, cwd: Path, late: dict[str, str]) -> dict:
    taken = pool.take("python3", str(cwd), {}, late)
    km = taken.km
    kc = km.client()
    kc.start_channels()
    try:
        run_sync(kc.wait_for_ready)(timeout=120)
        out: list[str] = []

        def hook(msg: dict) -> None:
            content = msg["content"]
            out.append(content.get("text", "") or "".join(content.get("traceback", [])))

        run_sync(kc.execute_interactive)(PROBE, output_hook=hook, timeout=120)
        seen = json.loads("".join(out))
        seen["pid"] = km.pid
        seen["parent"] = psutil.Process(km.pid).ppid()
        return seen
    finally:
        kc.stop_channels()
        kernels.discard(km)


@pytest.fixture
def observed(tmp_path):
    """Two kernels of each kind, in the same folder, each with its own RUN_VAR."""
    (tmp_path / "nb").mkdir()
    seen = {}
    for fork in (False, True):
        pool = kernels.KernelPool(kernels.KernelFolder(), warm=False, fork=fork)
        try:
            seen[fork] = [_observe(pool, tmp_path / "nb", {"RUN_VAR": f"run {i}"}) for i in (0, 1)]
            seen[fork, "templates"] = [t.proc.pid for t in pool._templates.values()]
        finally:
            pool.close()
    return seen


def test_a_forked_kernel_observes_what_a_new_interpreter_observes(observed, tmp_path):
    new, forked = observed[False], observed[True]
    # it really was forked, from the one template; the others really were not
    (template,) = observed[True, "templates"]
    assert [s["parent"] for s in forked] == [template, template]
    assert all(s["parent"] == os.getpid() for s in new)
    same = [
        "argv0",
        "orig_argv",
        "executable",
        "path",
        "cwd",
        "flags",
        "modules",
        "threads",
        "env_keys",
        "tmp",
        "own_session",
        "stdin",
        "encoding",
        "locale",
        "main",
        "signals",
        "parent_pid_env",
        "umask",
        "fds",
        "stdin_kind",
        "importer_cache",
    ]
    for key in same:
        assert forked[0][key] == new[0][key], key
    assert forked[0]["cwd"] == str(tmp_path / "nb")
    assert forked[0]["own_session"] and forked[0]["parent_pid_env"]
    assert "Thread" in forked[0]["threads"]  # ipykernel's parent poller runs
    assert forked[0]["stdin"] == ""
    # each run's own variables, and its own random numbers
    assert [s["run_var"] for s in forked] == ["run 0", "run 1"]
    assert forked[0]["random"] != forked[1]["random"]
    assert forked[0]["argv_rest"] != forked[1]["argv_rest"]  # its own connection file


@pytest.mark.skipif("PYTHONHASHSEED" in os.environ, reason="a fixed seed for every interpreter")
def test_forks_of_one_template_share_the_string_hash_seed_new_interpreters_do_not(observed):
    """The documented difference (docs/batch.md): the seed is fixed at interpreter start."""
    new, forked = observed[False], observed[True]
    assert forked[0]["hash"] == forked[1]["hash"]
    assert new[0]["hash"] != new[1]["hash"]  # 2**-64 chance of a false failure


@pytest.mark.parametrize("name", ["LD_LIBRARY_PATH", "HOME", "MALLOC_ARENA_MAX", "SOME_VAR"])
def test_any_variable_the_run_does_not_own_starts_a_new_interpreter(tmp_path, name):
    """The kernel's environment differs from the template's in a variable read as a
    process starts (the loader's, libc's, the user site's), or in any variable that is
    not the run's own (a kernelspec's ``env``): a new interpreter, not a fork. A variable
    the run owns (given for this run, not read at start) is forked with."""
    pool = kernels.KernelPool(kernels.KernelFolder(), warm=False, fork=True)
    try:
        km = pool.take("python3", str(tmp_path), {}, {name: str(tmp_path)}).km
        template = next(iter(pool._templates.values()))
        try:
            forked = psutil.Process(km.pid).ppid() == template.proc.pid
            assert forked == (name == "SOME_VAR"), (name, forked)
        finally:
            kernels.discard(km)
        # the same variable from outside the run (the worker's or a kernelspec's env)
        assert not template.fits(
            [template.python, "-m", "ipykernel_launcher", "-f", "x.json"],
            {**os.environ, name: str(tmp_path)},
        )
    finally:
        pool.close()


def test_a_template_whose_site_packages_changed_is_replaced(tmp_path):
    """A package installed while a batch runs (site-packages changes): a new interpreter
    would see it, a fork of the old template would not, so the template is replaced."""
    pool = kernels.KernelPool(kernels.KernelFolder(), warm=False, fork=True)
    try:
        km = pool.take("python3", str(tmp_path), {}, {}).km
        first = next(iter(pool._templates.values()))
        kernels.discard(km)
        assert first._path_times, "the template's site-packages folders were not recorded"
        folder = next(iter(first._path_times))
        before = os.stat(folder)
        os.utime(folder, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000))
        try:
            km = pool.take("python3", str(tmp_path), {}, {}).km
            second = next(iter(pool._templates.values()))
            try:
                assert second is not first
                assert psutil.Process(km.pid).ppid() == second.proc.pid
                assert first.proc.poll() is not None  # the old template is gone
            finally:
                kernels.discard(km)
        finally:
            os.utime(folder, ns=(before.st_atime_ns, before.st_mtime_ns))
    finally:
        pool.close()


def test_a_kernel_whose_start_up_variables_differ_is_started_as_a_new_interpreter(tmp_path):
    """PYTHONPATH (read once, at interpreter start) differs from the template's: the
    kernel is a new process, and its ``sys.path`` has the folder."""
    extra = tmp_path / "lib"
    extra.mkdir()
    (extra / "only_here.py").write_text("WHERE = 'lib'\n")
    pool = kernels.KernelPool(kernels.KernelFolder(), warm=False, fork=True)
    try:
        km = pool.take("python3", str(tmp_path), {"PYTHONPATH": str(extra)}, {}).km
        try:
            assert psutil.Process(km.pid).ppid() == os.getpid()
            kc = km.client()
            kc.start_channels()
            run_sync(kc.wait_for_ready)(timeout=120)
            out: list[str] = []
            run_sync(kc.execute_interactive)(
                "import only_here; print(only_here.WHERE)",
                output_hook=lambda m: out.append(m["content"].get("text", "")),
                timeout=60,
            )
            kc.stop_channels()
            assert "".join(out).strip() == "lib"
        finally:
            kernels.discard(km)
        # a kernel whose start-up variables are the template's is forked
        km = pool.take("python3", str(tmp_path), {}, {}).km
        try:
            template = next(iter(pool._templates.values()))
            assert psutil.Process(km.pid).ppid() == template.proc.pid
        finally:
            kernels.discard(km)
    finally:
        pool.close()


def test_a_variable_the_templates_imports_read_decides_too(tmp_path):
    """ipykernel's modules read some variables as they are imported (reported by the
    template): a kernel whose value differs is started as a new interpreter."""
    pool = kernels.KernelPool(kernels.KernelFolder(), warm=False, fork=True)
    try:
        km = pool.take("python3", str(tmp_path), {}, {}).km
        template = next(iter(pool._templates.values()))
        kernels.discard(km)
        read = template._hello()["read"]
        assert "TERM" in read and "JPY_PARENT_PID" in read
        km = pool.take("python3", str(tmp_path), {"TERM": "not-" + str(read["TERM"])}, {}).km
        try:
            assert psutil.Process(km.pid).ppid() == os.getpid()
        finally:
            kernels.discard(km)
    finally:
        pool.close()


@pytest.mark.parametrize("die", [True, False], ids=["die_with_owner", "parent_poller"])
def test_a_forked_kernel_ends_when_its_template_is_killed(tmp_path, die):
    """With ``die_with_owner`` the kernel is SIGKILLed at once (PR_SET_PDEATHSIG);
    without it, ipykernel's parent poller sees its parent gone and exits."""
    if die and not sys.platform.startswith("linux"):
        pytest.skip("PR_SET_PDEATHSIG is Linux only")
    pool = kernels.KernelPool(kernels.KernelFolder(), warm=False, fork=True, die_with_owner=die)
    try:
        km = pool.take("python3", str(tmp_path), {}, {}).km
        template = next(iter(pool._templates.values()))
        kc = km.client()
        kc.start_channels()
        run_sync(kc.wait_for_ready)(timeout=120)  # booted: its poller runs
        kc.stop_channels()
        os.kill(template.proc.pid, signal.SIGKILL)
        wait_for(lambda: not pid_running(km.pid), 30, "the forked kernel to end with its template")
        assert km.provisioner.process.poll() is not None
        kernels.discard(km)
    finally:
        pool.close()


def test_the_template_ends_with_its_owner_even_after_kill_9(tmp_path):
    """A process holding a pool is SIGKILLed: its template sees stdin close and exits,
    and its forked kernel (``die_with_owner``) dies with it."""
    import subprocess

    code = (
        "import sys, time\n"
        "from jupyter_repro import kernels\n"
        "pool = kernels.KernelPool(kernels.KernelFolder(parent=sys.argv[1]), warm=False,"
        " fork=True, die_with_owner=True)\n"
        "km = pool.take('python3', sys.argv[1], {}, {}).km\n"
        "t = next(iter(pool._templates.values()))\n"
        "print(km.pid, t.proc.pid, flush=True)\n"
        "time.sleep(300)\n"
    )
    owner = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        kernel, template = map(int, owner.stdout.readline().split())
        owner.kill()
        owner.wait(timeout=30)
        wait_for(lambda: not pid_running(template), 30, "the template to end with its owner")
        wait_for(lambda: not pid_running(kernel), 30, "the kernel to end with its owner")
    finally:
        if owner.poll() is None:
            owner.kill()


def test_a_kernel_folder_whose_owner_was_killed_is_removed_by_the_next(tmp_path):
    """A process with a kernel folder (a dask worker, nb-smoke's worker) is SIGKILLed: the
    folder, connection file and sockets stay; the next folder made beside it removes them."""
    import subprocess

    code = (
        "import sys, time\n"
        "from jupyter_repro import kernels\n"
        "print(kernels.KernelFolder(parent=sys.argv[1]).path, flush=True)\n"
        "time.sleep(300)\n"
    )
    owner = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        left = Path(owner.stdout.readline().strip())
        (left / "k-00000000.json").write_text("{}")
        owner.kill()
        owner.wait(timeout=30)
        assert left.exists()
        live = kernels.KernelFolder(parent=str(tmp_path))  # its own owner is alive: kept
        again = kernels.KernelFolder(parent=str(tmp_path))
        assert not left.exists()
        assert Path(live.path).exists() and Path(again.path).exists()
        live.remove()
        again.remove()
    finally:
        if owner.poll() is None:
            owner.kill()
