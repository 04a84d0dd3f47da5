"""The hooks in .pre-commit-hooks.yaml, run by the real pre-commit in a temporary repo."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import make_notebook

ROOT = Path(__file__).resolve().parents[1]
HOOKS = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())


def git(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True)


@pytest.fixture
def repo(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.email", "t@example.com")
    git(repo, "config", "user.name", "t")
    return repo


def pre_commit(repo: Path, *args: str, home: Path) -> subprocess.CompletedProcess:
    bindir = str(Path(sys.executable).parent)
    env = {**os.environ, "PRE_COMMIT_HOME": str(home), "PATH": f"{bindir}:{os.environ['PATH']}"}
    exe = shutil.which("pre-commit", path=env["PATH"])
    assert exe, "pre-commit is not installed"
    return subprocess.run(
        [exe, *args], cwd=repo, capture_output=True, text=True, env=env, timeout=900
    )


def local_config(repo: Path) -> None:
    """A config with our hook definitions as `repo: local` hooks, using the installed CLI.

    Everything pre-commit reads from .pre-commit-hooks.yaml (entry, args, types) is used
    as is; only the installation is skipped (`language: system`), so the test needs no
    network. test_hooks_install_from_the_repository covers the installation itself.
    """
    hooks = [{**hook, "language": "system"} for hook in HOOKS]
    (repo / ".pre-commit-config.yaml").write_text(
        yaml.safe_dump({"repos": [{"repo": "local", "hooks": hooks}]})
    )


def stage_notebooks(repo: Path) -> None:
    (repo / "nbs" / "data").mkdir(parents=True)
    (repo / "nbs" / "data" / "small.csv").write_text("a,b\n1,2\n")
    make_notebook(
        repo / "nbs" / "load.ipynb",
        "import csv\nrows = list(csv.DictReader(open('data/small.csv')))",
        "print(len(rows))",
    )
    git(repo, "add", "-A")


def test_both_hooks_pass_on_a_good_notebook_from_the_repo_root(repo, tmp_path):
    local_config(repo)
    stage_notebooks(repo)  # F05: relative data path, hook runs from the repo root
    proc = pre_commit(repo, "run", "--all-files", home=tmp_path / "pc")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "nb-smoke (notebooks run top to bottom" in proc.stdout
    assert "nb-smoke lint" in proc.stdout
    assert proc.stdout.count("Passed") == 2


def test_hooks_block_a_notebook_that_fails_and_lint_warns_on_hidden_state(repo, tmp_path):
    local_config(repo)
    make_notebook(repo / "bad.ipynb", ("print(threshold)", [], 1))
    git(repo, "add", "-A")
    proc = pre_commit(repo, "run", "--all-files", home=tmp_path / "pc")
    assert proc.returncode == 1
    assert "NameError: name 'threshold' is not defined" in proc.stdout
    assert "hidden_state" in proc.stdout
    lint_only = pre_commit(repo, "run", "nb-smoke-lint", "--all-files", home=tmp_path / "pc")
    assert lint_only.returncode == 0, "lint findings are warnings unless --strict"


@pytest.mark.slow
def test_hooks_install_from_the_repository(repo, tmp_path):
    """pre-commit try-repo installs this checkout into its own virtualenv, as users get it."""
    stage_notebooks(repo)
    # A committed copy of the installable project: works whether or not the checkout
    # under test is a git repository, and includes uncommitted edits.
    hook_repo = tmp_path / "hook-repo"
    hook_repo.mkdir()
    for name in ("pyproject.toml", "README.md", ".pre-commit-hooks.yaml"):
        shutil.copy2(ROOT / name, hook_repo / name)
    shutil.copytree(
        ROOT / "jupyter_repro",
        hook_repo / "jupyter_repro",
        ignore=shutil.ignore_patterns("__pycache__", "labextension"),
    )
    git(hook_repo, "init", "-q", "-b", "main")
    git(hook_repo, "add", "-A")
    git(hook_repo, "-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-qm", "x")
    proc = pre_commit(
        repo, "try-repo", str(hook_repo), "nb-smoke-lint", "--all-files", home=tmp_path / "pc"
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "nb-smoke lint" in proc.stdout and "Passed" in proc.stdout


def test_hooks_read_the_repositorys_tool_nb_smoke_config(repo, tmp_path):
    local_config(repo)
    make_notebook(repo / "nbs" / "warned.ipynb", ("print(threshold)", [], 1))
    (repo / "pyproject.toml").write_text(
        '[project]\nname = "p"\n\n[tool.nb-smoke]\nstrict = true\nlint-only = true\n'
    )
    git(repo, "add", "-A")
    strict = pre_commit(repo, "run", "nb-smoke-lint", "--all-files", home=tmp_path / "pc")
    assert strict.returncode == 1, "strict = true from pyproject.toml makes the warning block"
    assert "hidden_state" in strict.stdout and "warnings are failures" in strict.stdout
    (repo / "pyproject.toml").write_text(
        '[project]\nname = "p"\n\n[tool.nb-smoke]\nstrict = true\nignore = ["hidden_state"]\n'
        "lint-only = true\n"
    )
    git(repo, "add", "-A")
    ignored = pre_commit(repo, "run", "nb-smoke-lint", "--all-files", home=tmp_path / "pc")
    assert ignored.returncode == 0, ignored.stdout + ignored.stderr
