"""The environment lock and the fresh-env plan (issue 17), without building anything:
origins from real PEP 610 files, requirements lines, diffs, uv's errors, the cache dir."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from jupyter_repro.errors import ReproError
from jupyter_repro.provenance.env import (
    environment_fingerprint,
    interpreter_fingerprint,
    requirement_line,
    requirements_lock,
)
from jupyter_repro.reproduce.env_cli import env_differences, format_differences
from jupyter_repro.reproduce.fresh_env import (
    CACHE_ENV_VAR,
    env_cache_root,
    lock_hash,
    plan_requirements,
    resolve_python,
    uv_failure,
)

ENV = {
    "python_version": "3.11.7",
    "python_implementation": "CPython",
    "platform": "Linux-x86_64",
    "machine": "x86_64",
    "sys_platform": "linux",
}


def test_this_environment_records_its_editable_install_of_the_project():
    env = environment_fingerprint()
    (me,) = [d for d in env["distributions"] if d["name"] == "jupyter-repro"]
    assert me["origin"] == "editable" and me["url"].startswith("file://")
    assert Path(me["url"][len("file://") :]).joinpath("pyproject.toml").exists()
    mlflow = next(d for d in env["distributions"] if d["name"] == "mlflow")
    assert mlflow["origin"] == "index" and mlflow["version"] == env["packages"]["mlflow"]
    assert env["lock_format"] == 2 and env["python_version"].count(".") == 2
    text = json.dumps(env)
    assert "MLFLOW_TRACKING_URI" not in text and "PATH=" not in text


def test_another_interpreter_is_fingerprinted_in_its_own_process():
    same = interpreter_fingerprint(sys.executable)
    assert same is environment_fingerprint()
    with pytest.raises(RuntimeError, match="cannot inspect"):
        interpreter_fingerprint("/nonexistent/python3")


@pytest.mark.parametrize(
    ("dist", "line"),
    [
        ({"name": "six", "version": "1.16.0", "origin": "index"}, "six==1.16.0"),
        (
            {"name": "mypkg", "version": "0.1", "origin": "editable", "url": "file:///src/mypkg"},
            "-e file:///src/mypkg",
        ),
        (
            {"name": "mypkg", "version": "0.1", "origin": "local", "url": "file:///src/mypkg"},
            "mypkg @ file:///src/mypkg",
        ),
        (
            {
                "name": "lib",
                "version": "2.0",
                "origin": "vcs",
                "vcs": "git",
                "url": "https://example.org/lib.git",
                "commit_id": "abc123",
                "subdirectory": "py",
            },
            "lib @ git+https://example.org/lib.git@abc123#subdirectory=py",
        ),
        (
            {
                "name": "w",
                "version": "1",
                "origin": "archive",
                "url": "file:///w-1-py3-none-any.whl",
            },
            "w @ file:///w-1-py3-none-any.whl",
        ),
    ],
)
def test_requirement_lines_follow_each_origin(dist, line):
    assert requirement_line(dist) == line


def test_a_lock_of_an_old_run_pins_versions_and_says_so():
    text = requirements_lock({**ENV, "packages": {"Six": "1.16.0", "numpy": "2.0.0"}})
    body = [ln for ln in text.splitlines() if not ln.startswith("#")]
    assert body == ["numpy==2.0.0", "six==1.16.0"]
    assert "logged before origins were recorded" in text and "# python 3.11.7" in text
    assert "pinned by version only" in text


def test_archive_hashes_are_kept_as_comments():
    dist = {
        "name": "w",
        "version": "1",
        "origin": "archive",
        "url": "https://files.example/w.whl",
        "hashes": {"sha256": "ab" * 32},
    }
    text = requirements_lock({**ENV, "distributions": [dist]})
    assert f"w @ https://files.example/w.whl  # sha256:{'ab' * 32}" in text


def test_a_local_package_inside_the_repository_comes_from_the_commit(tmp_path):
    repo, tree = tmp_path / "repo", tmp_path / "tree"
    (repo / "src" / "mine").mkdir(parents=True)
    (tree / "src" / "mine").mkdir(parents=True)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    env = {
        **ENV,
        "distributions": [
            {"name": "six", "version": "1.16.0", "origin": "index"},
            {"name": "mine", "version": "0.1", "origin": "editable", "url": (repo / "src" / "mine").as_uri()},
            {"name": "other", "version": "1", "origin": "local", "url": outside.as_uri()},
        ],
    }  # fmt: skip
    install, key, notes = plan_requirements("R", env, repo, tree, "c0ffee" * 6)
    assert install == [
        "six==1.16.0",
        f"mine @ {(tree / 'src' / 'mine').as_uri()}",
        f"other @ {outside.as_uri()}",
    ]
    assert key[1] == f"mine @ repo:{'c0ffee' * 6}/src/mine"  # no temporary path in the hash
    assert "installed from the run's commit c0ffeec0ffee" in notes[0]
    assert f"installed from {outside} as it is now" in notes[1]
    # the same lock at another commit is another environment
    _, key2, _ = plan_requirements("R", env, repo, tree, "beef" * 10)
    assert lock_hash("3.11.7", env, key) != lock_hash("3.11.7", env, key2)
    assert lock_hash("3.11.7", env, key) == lock_hash("3.11.2", env, key)  # same minor


def test_a_local_package_whose_path_is_gone_cannot_be_rebuilt(tmp_path):
    gone = tmp_path / "gone"
    env = {
        **ENV,
        "distributions": [{"name": "g", "version": "1", "origin": "local", "url": gone.as_uri()}],
    }
    with pytest.raises(ReproError, match=f"g was installed from {gone}, which is gone"):
        plan_requirements("R", env)


def test_uv_errors_become_one_line_naming_the_package():
    err = (
        "error: No solution found when resolving dependencies\n  cause: Because there is no "
        "version of tabulate==0.0.99 and you require tabulate==0.0.99, we can conclude..."
    )
    assert "tabulate==0.0.99 is not on the package index any more" in str(uv_failure("R", err))
    err = "  cause: Because nopkg-xyz was not found in the package registry and you require"
    assert "nopkg-xyz is not on the package index" in str(uv_failure("R", err))
    msg = str(uv_failure("R", "Resolved\nerror: Failed to fetch: `https://x`\n"))
    assert "uv could not rebuild" in msg and "Failed to fetch" in msg and "\n" not in msg


def test_the_cache_dir_follows_the_override_then_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv(CACHE_ENV_VAR, str(tmp_path / "mine"))
    assert env_cache_root() == tmp_path / "mine"
    monkeypatch.delenv(CACHE_ENV_VAR)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    if sys.platform.startswith("linux"):
        assert env_cache_root() == tmp_path / "xdg" / "jupyter-repro" / "envs"


def test_python_of_the_logged_minor_is_this_one_and_another_is_refused():
    mine = ".".join(map(str, sys.version_info[:3]))
    assert resolve_python("R", mine) == (sys.executable, mine)
    assert resolve_python("R", mine, sys.executable)[0] == sys.executable
    with pytest.raises(ReproError, match=rf"ran on Python 2\.7\.18; --python .* is Python {mine}"):
        resolve_python("R", "2.7.18", sys.executable)
    with pytest.raises(ReproError, match="cannot run it"):
        resolve_python("R", mine, "/nonexistent/python")


def test_env_differences_list_added_removed_changed_and_origin_changes():
    a = {
        **ENV,
        "distributions": [
            {"name": "six", "version": "1.16.0", "origin": "index"},
            {"name": "gone", "version": "1", "origin": "index"},
            {"name": "mine", "version": "0.1", "origin": "index"},
        ],
    }
    b = {
        **ENV,
        "python_version": "3.11.9",
        "distributions": [
            {"name": "six", "version": "1.17.0", "origin": "index"},
            {"name": "new", "version": "2", "origin": "index"},
            {"name": "mine", "version": "0.1", "origin": "editable", "url": "file:///src/mine"},
        ],
    }
    diffs = env_differences(a, b)
    assert [(d["package"], d["change"]) for d in diffs] == [
        ("python", "changed"),
        ("gone", "removed"),
        ("mine", "changed"),
        ("new", "added"),
        ("six", "changed"),
    ]
    text = format_differences("run A", "run B", diffs)
    assert "1 added, 1 removed, 3 changed" in text
    assert "  ~ mine 0.1 -> 0.1 (editable file:///src/mine)" in text
    assert "  - gone 1" in text and "  + new 2" in text
    old = {**ENV, "packages": {"six": "1.16.0"}}  # a run logged before origins
    assert env_differences(old, {**ENV, "packages": {"six": "1.16.0"}}) == []
    assert format_differences("a", "b", []) == "a and b: same Python and packages"


def _spec(root: Path, name: str, argv0: str) -> None:
    folder = root / "kernels" / name
    folder.mkdir(parents=True)
    argv = [argv0, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (folder / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": name}))


def test_the_kernels_interpreter_is_the_one_its_kernelspec_starts(monkeypatch, tmp_path):
    from jupyter_repro.provenance.env import kernel_environment, kernel_python

    _spec(tmp_path, "plain", "python")
    _spec(tmp_path, "wrapper", "/opt/bin/conda-run-wrapper")
    _spec(tmp_path, "gone", "/nonexistent/venv/bin/python")
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path))
    assert kernel_python("plain") == sys.executable  # as jupyter_client resolves it
    assert kernel_python("wrapper") is None
    assert kernel_python("no-such-kernel") is None
    assert kernel_environment("plain")["source"] == "kernel"
    fallback = kernel_environment("gone")  # cannot be inspected: this process's, and why
    assert fallback["source"] == "process" and "cannot inspect" in fallback["source_note"]
    assert fallback["packages"] == environment_fingerprint()["packages"]


@pytest.mark.parametrize(
    "dist",
    [
        {"name": "six", "version": "1.16.0\n--index-url https://evil.example/simple"},
        {"name": "six\n-r /etc/passwd", "version": "1.16.0"},
        {"name": "--extra-index-url=https://evil.example", "version": "1"},
        {"name": "six", "version": "1", "origin": "archive", "url": "https://x/six.whl\n-e ."},
        {
            "name": "six",
            "version": "1",
            "origin": "vcs",
            "url": "https://x/six",
            "commit_id": "a b",
        },
        {"version": "1"},
        "six==1",
    ],
)
def test_a_lock_line_from_run_data_cannot_inject_installer_options(dist):
    """The lock comes from the tracking store (possibly a shared server): a name, version or
    URL holding a newline or starting with ``-`` would add ``--index-url``/``-r`` lines to
    the requirements file uv installs from. One line naming the run, never installed."""
    env = {**ENV, "distributions": [{"name": "ok", "version": "1"}, dist]}
    with pytest.raises(ReproError, match=r"^run R: environment.json: .*cannot be rebuilt"):
        plan_requirements("R", env)


@pytest.mark.parametrize(
    "content",
    [b"{not json", b"[1, 2]", b'{"distributions": [{"version": "1"}]}', b'{"distributions": 3}'],
)
def test_env_of_a_run_with_a_damaged_environment_json_is_one_line_and_exit_2(
    tmp_path, capsys, content
):
    """A run's environment.json comes from the store (possibly a shared server): damaged,
    ``env`` and ``env diff`` say so in one line naming the run, no traceback."""
    from batch_support import client, ready_store

    from jupyter_repro.cli import main

    uri = ready_store(tmp_path)
    c = client(uri)
    run_id = c.create_run(c.create_experiment("env")).info.run_id
    (tmp_path / "environment.json").write_bytes(content)
    c.log_artifact(run_id, str(tmp_path / "environment.json"))
    for argv in (["env", run_id], ["env", "diff", run_id]):
        capsys.readouterr()
        assert main([*argv, "--tracking-uri", uri]) == 2, argv
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"jupyter-repro: error: run {run_id}: environment.json"), err
        assert "\n" not in err


def test_reproduce_reads_and_writes_run_metadata_names_from_the_one_module():
    """Issue 16: tag names are defined once (provenance/names.py); the reproduction's
    environment tag (issue 17) is one of them, and rerun spells none itself."""
    import inspect

    from jupyter_repro.provenance import names
    from jupyter_repro.reproduce import rerun

    assert rerun.ENV_TAG == names.REPRODUCE_ENV == "jupyter_repro.reproduce.env"
    assert (rerun.REPRODUCES_TAG, rerun.VERDICT_TAG) == (names.REPRODUCES, names.REPRODUCE_VERDICT)
    assert 'TAG + "' not in inspect.getsource(rerun)
