"""Issue 15 items 1, 3, 6: run data is input from other people, saved outputs are not
copied anywhere, and no password is printed or stored.

One real batch run (real git repository, real sqlite MLflow store, real kernel) of a
notebook whose working copy holds a secret in a stale saved output and a cell whose id is
a path; then ``jupyter-repro reproduce`` against crafted run tags on that store.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import git
import nbformat
import pytest
from batch_support import (
    PNG_1PX,
    batch,
    client,
    gc,
    make_notebook,
    ready_store,
    running_mlflow_server,
    runs_of,
    wait_for,
)
from helpers import free_port, run_cli

pytestmark = pytest.mark.slow

SECRET = "sk-live-7f3a9c41d2"
ESCAPING_ID = "../../../escaped-by-cell-id"


def _notebook(saved_secret: bool) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    params = nbformat.v4.new_code_cell("x = 1")
    params.metadata["tags"] = ["parameters"]
    show = nbformat.v4.new_code_cell("print('fresh output', x)")
    if saved_secret:  # printed once while exploring, saved, never committed
        show.outputs = [nbformat.v4.new_output("stream", name="stdout", text=f"token={SECRET}\n")]
        show.execution_count = 7
    plot = nbformat.v4.new_code_cell(
        "from IPython.display import Image, display\nimport base64\n"
        f"display(Image(data=base64.b64decode({PNG_1PX!r}), format='png'))"
    )
    nb.cells = [params, show, plot]
    return nb


def _write_raw(nb: nbformat.NotebookNode, path: Path, plot_id: str) -> None:
    """Write ``nb`` with the third cell's id set to ``plot_id`` verbatim (nbformat would
    refuse an id that is not ``[a-zA-Z0-9-_]+``; a crafted file simply has it)."""
    data = json.loads(nbformat.writes(nb))
    data["cells"][2]["id"] = plot_id
    path.write_text(json.dumps(data, indent=1))


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    root = tmp_path_factory.mktemp("harden")
    repo = git.Repo.init(root / "proj", initial_branch="main")
    with repo.config_writer() as cw:
        cw.set_value("user", "name", "T").set_value("user", "email", "t@example.com")
    nbs = root / "proj" / "nbs"
    nbs.mkdir()
    notebook = nbs / "victim.ipynb"
    _write_raw(_notebook(saved_secret=False), notebook, "plot")
    repo.index.add(["nbs/victim.ipynb"])
    repo.index.commit("notebook")
    _write_raw(_notebook(saved_secret=True), notebook, ESCAPING_ID)
    uri = ready_store(root / "store")
    report = root / "batch.json"
    proc = batch(notebook, "-p", "x", "2", "--json", report, cwd=nbs, uri=uri)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (run,) = runs_of(uri, "victim")
    return root, uri, run.info.run_id, proc


def _files_under(folder: Path):
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if d != ".git"]
        for name in filenames:
            yield Path(dirpath) / name


def test_a_secret_in_a_stale_saved_output_reaches_no_artifact_runs_or_diff(logged):
    root, _uri, run_id, proc = logged
    notebook = root / "proj" / "nbs" / "victim.ipynb"
    searched = [p for p in _files_under(root) if p != notebook]
    artifacts = [p for p in searched if f"/{run_id}/artifacts/" in str(p)]
    names = {p.relative_to(p.parents[1]).as_posix() for p in artifacts}
    assert {"notebook/" + p.name for p in artifacts if p.parent.name == "notebook"} <= names
    assert any(p.name == "nbdiff.txt" for p in artifacts)  # the diff was searched too
    assert any(p.suffix == ".html" and p.parent.name == "notebook" for p in artifacts)
    assert any("runs" in p.parts for p in searched)  # and the executed notebook in runs/
    leaked = [str(p) for p in searched if SECRET.encode() in p.read_bytes()]
    assert leaked == [], leaked
    assert SECRET not in proc.stdout + proc.stderr
    # the executed notebook names its input by path, not by a copy of it
    (executed,) = [p for p in artifacts if p.suffix == ".ipynb"]
    meta = json.loads(executed.read_text())["metadata"]["papermill"]
    assert meta["input_path"] == str(notebook)
    # the diff still says the outputs changed, without their content
    diff = next(p for p in artifacts if p.name == "nbdiff.txt").read_text()
    assert "cell 1: outputs changed" in diff


def test_a_cell_id_cannot_place_an_image_outside_the_artifact_folder(logged):
    root, _uri, run_id, _ = logged
    escaped = [p for p in _files_under(root.parent) if "escaped-by-cell-id" in p.name]
    images = [p for p in escaped if p.parent.name == "images"]
    assert escaped == images and len(images) == 1, escaped
    assert f"/{run_id}/artifacts/outputs/images/" in str(images[0])
    assert ".." not in images[0].name and "/" not in images[0].name
    manifest = json.loads((images[0].parents[1] / "manifest.json").read_text())
    assert any(e.get("file") == f"outputs/images/{images[0].name}" for e in manifest)


@pytest.fixture
def crafted(logged):
    """Set run tags for one test, then put the logged values back."""
    _, uri, run_id, _ = logged
    c = client(uri)
    before = dict(c.get_run(run_id).data.tags)
    changed: list[str] = []

    def set_tags(**tags: str) -> None:
        for key, value in tags.items():
            key = key.replace("__", ".")
            changed.append(key)
            c.set_tag(run_id, key, value)

    yield set_tags
    for key in changed:
        c.set_tag(run_id, key, before[key])


def _victim(folder: Path) -> tuple[Path, bytes]:
    folder.mkdir(parents=True, exist_ok=True)
    victim = folder / "unrelated.ipynb"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print('mine')")])
    victim.write_text(nbformat.writes(nb))
    return victim, victim.read_bytes()


@pytest.mark.parametrize("form", ["absolute", "dotdot"])
def test_reproduce_refuses_a_notebook_tag_that_leaves_its_worktree(logged, crafted, form):
    root, uri, run_id, _ = logged
    victim, content = _victim(root / f"elsewhere-{form}")
    # absolute, or relative to the temporary worktree: /tmp/jrepro-reproduce-XXX/tree/../..
    name = str(victim) if form == "absolute" else "../" * 12 + str(victim).lstrip("/")
    crafted(mlflow__source__name=name)
    proc = run_cli(
        "jupyter-repro",
        "reproduce",
        run_id,
        "--tracking-uri",
        uri,
        "--repo",
        root / "proj",
        timeout=240,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert "mlflow.source.name" in line and "outside" in line
    assert victim.read_bytes() == content  # not overwritten, and nothing ran there
    assert not list(victim.parent.glob("*.partial*"))
    worktrees = git.Repo(root / "proj").git.worktree("list").splitlines()
    assert len(worktrees) == 1, worktrees  # the temporary worktree was removed


@pytest.mark.parametrize("run_id", ["../../etc/passwd", "x" * 300, "", "abc def"])
def test_reproduce_a_malformed_run_id_is_one_line_and_exit_2(logged, run_id):
    _, uri, _, _ = logged
    proc = run_cli("jupyter-repro", "reproduce", run_id, "--tracking-uri", uri, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert "run id" in line


def test_an_unreachable_tracking_uri_is_one_line_naming_it_without_its_password(tmp_path):
    nb = make_notebook(tmp_path / "n.ipynb", "1")
    uri = f"http://alice:pw-{SECRET}@127.0.0.1:{free_port()}/"
    for args in (["batch", nb, "--no-progress"], ["gc"], ["reproduce", "a" * 32]):
        proc = run_cli("jupyter-repro", *args, "--tracking-uri", uri, cwd=tmp_path, timeout=60)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert SECRET not in proc.stdout + proc.stderr
        (line,) = proc.stderr.strip().splitlines()
        assert "alice:***@127.0.0.1" in line and "no MLflow tracking server" in line


@pytest.fixture
def mlflow_server(tmp_path):
    """A real ``mlflow server`` (no authentication: it ignores the credentials sent)."""
    with running_mlflow_server(tmp_path) as url:
        yield int(url.rsplit(":", 1)[1])


def test_batch_summary_json_and_gc_never_show_the_tracking_uri_password(tmp_path, mlflow_server):
    nb = make_notebook(tmp_path / "n.ipynb", ("x = 1", ["parameters"]), "print(x)")
    uri = f"http://alice:pw-{SECRET}@127.0.0.1:{mlflow_server}"
    report = tmp_path / "report.json"
    proc = batch(nb, "--tracking-uri", uri, "--json", report, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(report.read_text())
    assert data["tracking_uri"] == f"http://alice:***@127.0.0.1:{mlflow_server}"
    assert "alice:***@" in proc.stdout  # the summary names the store, redacted
    swept = gc("--stale-after", "0", "--include-foreign", "--dry-run", uri=uri)
    assert swept.returncode == 0, swept.stdout + swept.stderr
    assert "alice:***@" in swept.stderr
    everything = proc.stdout + proc.stderr + report.read_text() + swept.stdout + swept.stderr
    assert SECRET not in everything
    (run,) = runs_of(f"http://127.0.0.1:{mlflow_server}", "n")
    assert SECRET not in json.dumps(run.to_dictionary())


def _worktrees(repo: Path) -> list[str]:
    return [
        line.split(" ", 1)[1]
        for line in git.Repo(repo).git.worktree("list", "--porcelain").splitlines()
        if line.startswith("worktree ")
    ]


def test_a_sigkilled_reproduce_leaves_a_worktree_that_the_next_one_removes(logged):
    """Issue 15 item 4 (reproduce): kill -9 mid-run, then run again."""
    from helpers import cli

    root, uri, run_id, _ = logged
    proj = root / "proj"
    args = [cli("jupyter-repro"), "reproduce", run_id, "--tracking-uri", uri, "--repo", proj]
    victim = subprocess.Popen(
        list(map(str, args)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    try:
        stale = wait_for(
            lambda: [w for w in _worktrees(proj) if "jrepro-reproduce-" in w]
            or (victim.poll() is not None and ["exited"]),
            240,
            "reproduce to add its worktree",
            interval=0.05,
        )
        assert stale != ["exited"], "reproduce finished before it could be killed"
        victim.kill()  # SIGKILL: no clean-up of its own
        victim.wait(timeout=30)
    finally:
        if victim.poll() is None:
            victim.kill()
    (tree,) = stale
    folder = Path(tree).parent
    assert tree in _worktrees(proj) and folder.is_dir(), "the kill left both behind"

    proc = run_cli(
        "jupyter-repro", "reproduce", run_id, "--tracking-uri", uri, "--repo", proj, timeout=400
    )
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr
    assert _worktrees(proj) == [str(proj)], "stale and new worktrees are gone"
    assert not folder.exists(), "the killed run's temporary folder is gone"
    assert "left by a killed reproduce" in proc.stdout
