"""``jupyter-repro reproduce RUN_ID``: run a logged run again and say whether it reproduces.

1. The run's commit is checked out into a temporary git worktree (the user's own work
   tree is never touched), and the notebook *as it ran* is put in place: the logged
   executed notebook without papermill's added cells and without outputs, so edits that
   were uncommitted at the time are included.
2. Every declared data input is hashed again; an input whose digest changed (or that is
   gone) is named, and nothing runs unless ``allow_data_drift``.
3. The notebook runs through the batch code path (:func:`~jupyter_repro.batch.runner.run_batch`:
   fresh kernel, same parameters, same experiment), so the attempt is itself a full
   MLflow run, tagged ``jupyter_repro.reproduces=<original run id>``.
4. Metrics are compared with tolerances, outputs with nbval's rules
   (:func:`~jupyter_repro.outputs.compare_cell_outputs`), and the packages whose versions
   differ from the logged environment are listed (the environment the re-run's kernel
   had, as its own run logged it).

With ``fresh_env`` the kernel runs in the logged environment rebuilt by
:mod:`.fresh_env` (an isolated venv made with uv from the run's lock, cached by lock
hash) instead of the user's current one.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ReproError
from ..fileio import confined
from ..provenance import names
from ..provenance.mlflow_log import is_added_cell
from ..provenance.store import retry_locked
from . import worktrees

#: ``jupyter_repro.record`` returns the metric it recorded; shown as a cell's last
#: expression its repr carries the recording time, which is not part of the result.
RECORD_SANITIZERS = ((r"'timestamp': \d+", "'timestamp': TIME"),)
REPRODUCES_TAG = names.REPRODUCES
#: MLflow's own rule for a run id (``mlflow.utils.validation._RUN_ID_REGEX``).
RUN_ID_PATTERN = re.compile(r"[a-zA-Z0-9][\w\-]{0,255}")


def check_run_id(run_id: str) -> None:
    """Raise :class:`ReproError` (exit 2) unless ``run_id`` has the shape of an MLflow
    run id (:data:`RUN_ID_PATTERN`); checked before any store is opened."""
    if not RUN_ID_PATTERN.fullmatch(run_id or ""):
        shown = run_id if len(run_id) <= 60 else run_id[:60] + "..."
        raise ReproError(
            f"run id {shown!r} is malformed: an MLflow run id is letters, digits, _ and - "
            "(usually 32 hex digits)"
        )


VERDICT_TAG = names.REPRODUCE_VERDICT
#: ``current`` (the user's environment) or ``fresh:<lock hash>`` (``--fresh-env``).
ENV_TAG = names.REPRODUCE_ENV


@dataclass(frozen=True)
class Tolerances:
    """Metric tolerances: ``|new - old| <= atol + rtol * |old|``; ``per_metric`` rtol wins."""

    rtol: float = 1e-9
    atol: float = 0.0
    per_metric: dict[str, float] = field(default_factory=dict)

    def close(self, name: str, old: float, new: float) -> bool:
        if math.isnan(old) and math.isnan(new):
            return True
        rtol = self.per_metric.get(name, self.rtol)
        return abs(new - old) <= self.atol + rtol * abs(old)


@dataclass
class DataCheck:
    """One declared input: its name, path, the logged digest and today's (None: gone)."""

    name: str
    path: str
    logged_sha256: str
    current_sha256: str | None

    @property
    def changed(self) -> bool:
        return self.current_sha256 != self.logged_sha256


@dataclass
class ReproReport:
    """What ``reproduce`` found; ``verdict`` is ``reproduced``, ``differs`` or ``data changed``."""

    run_id: str
    verdict: str = "differs"
    new_run_id: str | None = None
    commit: str | None = None
    notebook: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    data: list[DataCheck] = field(default_factory=list)
    status: tuple[str, str] = ("", "")  # (logged, new)
    metric_differences: list[dict[str, Any]] = field(default_factory=list)
    output_differences: list[dict[str, Any]] = field(default_factory=list)
    package_differences: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: where the re-run's kernel ran: ``kind`` ``current`` or ``fresh``; for ``fresh`` also
    #: ``path``, ``lock_hash``, ``reused`` and ``seconds`` (to build or find it)
    environment: dict[str, Any] = field(default_factory=lambda: {"kind": "current"})

    @property
    def exit_code(self) -> int:
        return 0 if self.verdict == "reproduced" else 1

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["status"] = {"logged": self.status[0], "new": self.status[1]}
        d["exit_code"] = self.exit_code
        return d


def _run_json(path: Path, kind: type, run_id: str) -> Any:
    """A JSON artifact of a run, which is data from whoever can write to the run: one
    :class:`ReproError` line when it is not JSON of the expected ``kind``."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, RecursionError, OSError):
        value = None
    if not isinstance(value, kind):
        raise ReproError(f"run {run_id}: artifact {path.name} is not a JSON {kind.__name__}")
    return value


def _download(client: Any, run_id: str, path: str, dest: Path) -> Path | None:
    try:
        return Path(client.download_artifacts(run_id, path, str(dest)))
    except Exception:
        return None


def source_notebook(executed: Any) -> Any:
    """The notebook as it ran: papermill's added cells, outputs and run metadata removed."""
    import nbformat

    nb = nbformat.from_dict(json.loads(json.dumps(executed)))
    cells = []
    for cell in nb.cells:
        if is_added_cell(cell):
            continue
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        cells.append(cell)
    nb.cells = cells
    nb.metadata.pop("papermill", None)
    return nb


def code_cells(nb: Any) -> list[Any]:
    """Code cells of the source notebook (papermill's added cells left out), in order."""
    return [c for c in nb.get("cells", []) if c.get("cell_type") == "code" and not is_added_cell(c)]


def compare_metrics(
    old: dict[str, float], new: dict[str, float], tol: Tolerances
) -> list[dict[str, Any]]:
    """Metrics that are missing, new, or outside the tolerance."""
    out = []
    for name in sorted(set(old) | set(new)):
        a, b = old.get(name), new.get(name)
        if a is None or b is None or not tol.close(name, a, b):
            out.append({"metric": name, "logged": a, "new": b})
    return out


def compare_outputs(old_nb: Any, new_nb: Any, sanitizers: Any) -> list[dict[str, Any]]:
    """Cells whose outputs differ (nbval's rules, images by hash), by source cell index."""
    from ..outputs import cell_comparison_mode, compare_cell_outputs

    old_cells, new_cells = code_cells(old_nb), code_cells(new_nb)
    all_old = [c for c in old_nb.get("cells", []) if not _added(c)]
    index_of = {id(c): i for i, c in enumerate(all_old)}
    diffs = []
    if len(old_cells) != len(new_cells):
        return [
            {
                "cell_index": None,
                "summary": f"{len(old_cells)} code cells logged, {len(new_cells)} now",
            }
        ]
    for old, new in zip(old_cells, new_cells, strict=True):
        if cell_comparison_mode(old) != "compare":
            continue
        diff = compare_cell_outputs(
            index_of[id(old)], _comparable(old), _comparable(new), sanitizers,
            labels=("logged", "reproduced"),
        )  # fmt: skip
        if diff is not None:
            diffs.append(diff.to_json())
    return diffs


def _comparable(cell: Any) -> list[dict[str, Any]]:
    """A cell's outputs, a recorded metric's ``text/plain`` repr dropped: it shows the
    recording time; the metric itself is compared through its own MIME type."""
    from ..metrics import METRIC_MIMETYPE

    outputs = []
    for out in cell.get("outputs", []):
        data = out.get("data") or {}
        if METRIC_MIMETYPE in data and "text/plain" in data:
            out = {**out, "data": {k: v for k, v in data.items() if k != "text/plain"}}
        outputs.append(out)
    return outputs


def _added(cell: Any) -> bool:
    return is_added_cell(cell)


def package_differences(logged: dict[str, Any], current: dict[str, Any]) -> list[dict[str, Any]]:
    """Packages (and python) whose version differs between two environment fingerprints."""
    out = []
    if logged.get("python_version") != current.get("python_version"):
        out.append(
            {
                "package": "python",
                "logged": logged.get("python_version"),
                "now": current.get("python_version"),
            }
        )
    a, b = logged.get("packages") or {}, current.get("packages") or {}
    for name in sorted(set(a) | set(b)):
        if a.get(name) != b.get(name):
            out.append({"package": name, "logged": a.get(name), "now": b.get(name)})
    return out


def check_data(items: list[dict[str, Any]]) -> list[DataCheck]:
    """Hash each logged input again at its logged path."""
    from ..provenance.data import digest_input

    checks = []
    for item in items:
        path = item["path"]
        try:
            now = digest_input(path).sha256
        except ReproError:
            now = None
        checks.append(DataCheck(Path(path).name, path, item["sha256"], now))
    return checks


def _logged_params(executed: Any, run: Any) -> dict[str, Any]:
    """The injected parameters, typed: papermill keeps them in the notebook's metadata."""
    from ..parameters import parse_value

    pm = (executed.get("metadata") or {}).get("papermill") or {}
    if isinstance(pm.get("parameters"), dict):
        return dict(pm["parameters"])
    defaults = set(filter(None, run.data.tags.get(names.PARAMS_DEFAULTS, "").split(",")))
    return {k: parse_value(v) for k, v in run.data.params.items() if k not in defaults}


def reproduce(
    run_id: str,
    uri: str,
    tol: Tolerances = Tolerances(),
    allow_data_drift: bool = False,
    repo: str | Path | None = None,
    sanitize_with: str | None = None,
    timeout: float | None = None,
    echo: Any = None,
    fresh_env: bool = False,
    python: str | None = None,
    rebuild: bool = False,
) -> ReproReport:
    """Re-run MLflow run ``run_id`` from its commit and compare; see the module docstring.

    Args:
        fresh_env: run the kernel in the logged environment rebuilt with uv
            (:func:`~.fresh_env.prepare_env`) instead of the current one.
        python: the interpreter to rebuild with (``--python``; default: one of the logged
            minor version found on this machine).
        rebuild: with ``fresh_env``, build the environment anew even if it is cached.

    Raises:
        ReproError: the run does not exist, has no commit or notebook, or the repository
            does not have the commit; with ``fresh_env``: another Python minor version,
            a package version no longer on the index, a local package whose path is gone.
    """
    import git
    import nbformat
    from mlflow.tracking import MlflowClient

    from ..batch.runner import BatchOptions, run_batch
    from ..outputs import load_sanitizers
    from ..provenance.env import environment_fingerprint

    check_run_id(run_id)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    client = MlflowClient(uri)
    try:
        run = retry_locked(client.get_run, run_id)
    except Exception as exc:
        if "not found" in str(exc).lower() or "RESOURCE_DOES_NOT_EXIST" in str(exc):
            raise ReproError(f"no MLflow run {run_id} in {uri}") from None
        raise
    tags = run.data.tags
    commit = tags.get("mlflow.source.git.commit")
    relpath = tags.get("mlflow.source.name")
    nb_path = tags.get(names.NOTEBOOK_PATH)
    if not commit or not relpath or not nb_path:
        raise ReproError(
            f"run {run_id} has no git commit recorded (notebook outside a repository?)"
        )
    root = (
        Path(repo)
        if repo
        else Path(nb_path[: -len(relpath)] if nb_path.endswith(relpath) else nb_path)
    )
    experiment = retry_locked(client.get_experiment, run.info.experiment_id).name
    report = ReproReport(run_id, commit=commit, notebook=relpath)
    report.status = (run.info.status, "")
    sanitizers = [*load_sanitizers(sanitize_with), *RECORD_SANITIZERS]

    with tempfile.TemporaryDirectory(prefix=worktrees.PREFIX) as tmp_name:
        tmp = Path(tmp_name)
        worktrees.claim(tmp)  # a SIGKILLed reproduce's folder is removed by the next one
        art = tmp / "artifacts"
        art.mkdir()
        listing = [f.path for f in retry_locked(client.list_artifacts, run_id, names.NOTEBOOK_DIR)]
        executed_name = next((p for p in listing if p.endswith(".ipynb")), None)
        if executed_name is None:
            raise ReproError(f"run {run_id} has no logged notebook (it never started?)")
        confined(art, executed_name, "artifact name")
        executed_file = _download(client, run_id, executed_name, art)
        if executed_file is None:
            raise ReproError(f"run {run_id}: cannot download its notebook {executed_name}")
        executed = nbformat.read(str(executed_file), as_version=4)
        data_file = _download(client, run_id, names.DATA_JSON, art)
        data_items = _run_json(data_file, list, run_id) if data_file else []
        if not all(isinstance(d, dict) and isinstance(d.get("path"), str) for d in data_items):
            raise ReproError(f"run {run_id}: data.json is not a list of inputs with paths")
        env_file = _download(client, run_id, names.ENVIRONMENT_JSON, art)
        logged_env = _run_json(env_file, dict, run_id) if env_file else {}
        report.params = _logged_params(executed, run)
        if fresh_env:
            from .fresh_env import resolve_python

            if not logged_env.get("python_version"):
                raise ReproError(f"run {run_id} has no logged environment: nothing to rebuild")
            # checked before anything is built or checked out: one line, exit 2
            python = resolve_python(run_id, logged_env["python_version"], python)[0]

        report.data = check_data(data_items)
        changed = [d for d in report.data if d.changed]
        if changed and not allow_data_drift:
            report.verdict = "data changed"
            return report

        try:
            repository = git.Repo(root, search_parent_directories=True)
        except (git.InvalidGitRepositoryError, git.NoSuchPathError):
            raise ReproError(f"{root}: not a git repository (use --repo PATH)") from None
        with repository:
            for what in worktrees.clean_stale(repository):
                report.notes.append(f"removed {what} left by a killed reproduce")
            try:
                repository.commit(commit)
            except (ValueError, git.BadName):
                raise ReproError(
                    f"{root}: has no commit {commit[:12]} (fetch it, or --repo)"
                ) from None
            tree = tmp / "tree"
            repository.git.worktree("add", "--detach", str(tree), commit)
            try:
                # the run's tags are data from whoever can write to the run: a path that
                # leaves the worktree would overwrite (and run) a file elsewhere
                notebook = confined(
                    tree, Path(relpath).with_suffix(".ipynb"), "run tag mlflow.source.name"
                )
                notebook.parent.mkdir(parents=True, exist_ok=True)
                nbformat.write(source_notebook(executed), str(notebook))
                data_paths = []
                for item in data_items:
                    original = Path(item["path"])
                    try:
                        inside = confined(
                            tree,
                            original.relative_to(Path(repository.working_tree_dir).resolve()),
                            "data.json input path",
                        )
                    except ValueError:
                        data_paths.append(str(original))
                        continue
                    if not inside.exists() and original.exists():  # untracked data: link it
                        inside.parent.mkdir(parents=True, exist_ok=True)
                        inside.symlink_to(original, target_is_directory=original.is_dir())
                    data_paths.append(str(inside if inside.exists() else original))
                kernel = None
                if fresh_env:
                    from .fresh_env import prepare_env

                    fresh = prepare_env(
                        run_id,
                        logged_env,
                        python,
                        repo_root=Path(repository.working_tree_dir),
                        tree=tree,
                        commit=commit,
                        rebuild=rebuild,
                        echo=echo,
                    )
                    kernel = fresh.kernel_name
                    report.notes.extend(fresh.notes)
                    report.environment = {
                        "kind": "fresh",
                        "path": str(fresh.path),
                        "lock_hash": fresh.lock_hash,
                        "reused": fresh.reused,
                        "seconds": round(fresh.seconds, 3),
                    }
                    # the kernelspec lives in the venv; the batch's workers find it here
                    saved_path = os.environ.get("JUPYTER_PATH")
                    os.environ["JUPYTER_PATH"] = os.pathsep.join(
                        filter(None, [str(fresh.jupyter_path), saved_path])
                    )
                options = BatchOptions(
                    experiment=experiment,
                    kernel=kernel,
                    tracking_uri=uri,
                    output_dir=str(tmp / "runs"),
                    data=tuple(data_paths),
                    allow_unknown=True,
                    timeout=timeout,
                    progress=False,
                )
                try:
                    batch = run_batch(notebook, [report.params], options, echo=echo)
                finally:
                    if fresh_env:
                        if saved_path is None:
                            os.environ.pop("JUPYTER_PATH", None)
                        else:
                            os.environ["JUPYTER_PATH"] = saved_path
                if batch.interrupted:  # Ctrl-C / SIGTERM: no verdict, the CLI exits 130/143
                    import signal

                    from ..errors import Terminated

                    raise (
                        Terminated() if batch.interrupted == signal.SIGTERM else KeyboardInterrupt()
                    )
                result = batch.results[0]
                report.new_run_id = result.run_id
                report.status = (run.info.status, result.status)
                if result.reason:
                    report.notes.append(f"re-run {result.status}: {result.reason}")
                new_nb = (
                    nbformat.read(result.output_path, as_version=4) if result.output_path else None
                )
            finally:
                repository.git.worktree("remove", "--force", str(tree))

    if report.new_run_id:
        new_run = retry_locked(client.get_run, report.new_run_id)
        report.metric_differences = compare_metrics(run.data.metrics, new_run.data.metrics, tol)
    # the environment the re-run's kernel had, as its run logged it (else this process's)
    new_env = None
    if report.new_run_id:
        with tempfile.TemporaryDirectory(prefix="jrepro-reproduce-env-") as tmp_name:
            env_file = _download(client, report.new_run_id, names.ENVIRONMENT_JSON, Path(tmp_name))
            new_env = json.loads(env_file.read_text()) if env_file else None
    if logged_env and (new_env or not fresh_env):
        # without the re-run's own record, this process's environment stands in for the
        # current one; never for a fresh environment, which this process is not
        report.package_differences = package_differences(
            logged_env, new_env or environment_fingerprint()
        )
    if new_nb is not None:
        report.output_differences = compare_outputs(executed, new_nb, sanitizers)
    if report.status[0] != report.status[1]:
        report.notes.append(f"status: logged {report.status[0]}, now {report.status[1]}")
    same = (
        report.status[0] == report.status[1]
        and not report.metric_differences
        and not report.output_differences
        and not changed
    )
    report.verdict = "reproduced" if same else "differs"
    if report.new_run_id:
        from mlflow.entities import RunTag

        retry_locked(
            client.log_batch,
            report.new_run_id,
            tags=[
                RunTag(REPRODUCES_TAG, run_id),
                RunTag(VERDICT_TAG, report.verdict),
                RunTag(
                    ENV_TAG,
                    "fresh:" + report.environment["lock_hash"]
                    if report.environment["kind"] == "fresh"
                    else "current",
                ),
            ],
        )
    return report


def format_report(r: ReproReport) -> str:
    """The terminal report: verdict first, then each kind of difference."""
    lines = []
    if r.verdict == "data changed":
        lines.append(f"run {r.run_id}: not re-run: data changed since the run")
        for d in r.data:
            if d.changed:
                now = d.current_sha256[:16] + "..." if d.current_sha256 else "missing"
                lines.append(
                    f"  input '{d.name}' ({d.path}): logged sha256 {d.logged_sha256[:16]}..., now {now}"
                )
        lines.append("  (--allow-data-drift runs it anyway)")
    else:
        lines.append(
            f"{r.verdict}: run {r.run_id} ({r.notebook} at {(r.commit or '')[:12]}) "
            f"re-run as {r.new_run_id}"
        )
        for d in r.data:
            mark = "CHANGED" if d.changed else "same"
            lines.append(f"  data {d.name}: {mark} (sha256 {d.logged_sha256[:16]}...)")
        env = r.environment
        if env.get("kind") == "fresh":
            how = "reused" if env.get("reused") else f"built in {env.get('seconds', 0):.1f}s"
            lines.append(f"  environment: rebuilt from the run's lock at {env.get('path')} ({how})")
        for note in r.notes:
            lines.append(f"  {note}")
        for m in r.metric_differences:
            lines.append(f"  metric {m['metric']}: logged {m['logged']!r}, now {m['new']!r}")
        for o in r.output_differences:
            lines.append(f"  cell {o['cell_index']} output differs: {o['summary']}")
            for line in (o.get("text_diff") or "").splitlines()[:20]:
                lines.append(f"    {line}")
            for img in o.get("images", []):
                a = (img["reference_sha256"] or "none")[:16]
                b = (img["fresh_sha256"] or "none")[:16]
                lines.append(f"    image {img['position']} ({img['mimetype']}): {a} -> {b}")
        if r.verdict == "reproduced":
            lines.append("  metrics and outputs match the logged run")
    if r.package_differences:
        lines.append(
            f"  packages that differ from the logged environment ({len(r.package_differences)}):"
        )
        for p in r.package_differences[:40]:
            lines.append(f"    {p['package']}: logged {p['logged'] or '-'}, now {p['now'] or '-'}")
        if len(r.package_differences) > 40:
            lines.append(f"    ... and {len(r.package_differences) - 40} more (--json lists all)")
    else:
        lines.append("  packages: same versions as the logged environment")
    return "\n".join(lines)
