"""Turn a run into an MLflow run with all five coordinates.

``open_run`` creates the run before the notebook executes (so the kernel can log to it
through ``MLFLOW_RUN_ID`` and a heartbeat can be kept); ``close_run`` logs what the run
produced and sets its final status; ``log_run`` does both for a run that has already
happened (nb-smoke). Every call is retried on sqlite's "database is locked".

What is logged (names are stable; ``docs/batch.md`` lists them):

- params: every injected parameter, plus the parameters cell's defaults that were not
  overridden; tag ``jupyter_repro.params.defaults`` names the latter.
- metrics: values recorded with :func:`jupyter_repro.record` (step + timestamp kept).
- tags: ``mlflow.source.*`` (git commit/branch/repoURL, name, type NOTEBOOK), the dirty
  flag, the notebook's path/sha256/git status, the toolkit version, failure facts.
- artifacts: ``notebook/`` executed ``.ipynb`` + ``.html``; ``diff/`` nbdime diff as
  ``nbdiff.json``/``nbdiff.txt``/``nbdiff.html``; ``outputs/`` images and
  ``manifest.json`` of output hashes; ``environment.json`` (python, platform, every
  distribution with its version and origin) and ``requirements.lock.txt`` (the same as a
  pinned requirements file, :func:`~.env.requirements_lock`); ``data.json``; ``error.json``.
- inputs: each ``--data`` path as an MLflow dataset with its digest.
- searchable output hashes: tag ``jupyter_repro.outputs`` (then ``jupyter_repro.outputs.1``,
  ``.2``... when one tag would be too long) holds the first :data:`OUTPUT_HASH_PREFIX` hex
  digits of every output's sha256, space-separated, so ``jupyter-repro locate`` finds the
  run of a file with one ``LIKE`` query instead of downloading every run's manifest.
"""

from __future__ import annotations

import base64
import hashlib
import json
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..fileio import safe_name
from ..notebook import cell_tags
from ..uris import redact_text
from . import names
from .data import DataInput
from .env import environment_fingerprint, requirements_lock
from .git import OUTSIDE_REPO, GitInfo, git_info
from .nbdiff import NotebookDiff, diff_against_head, render_html
from .store import retry_locked

TAG = names.PREFIX  # kept for callers of the old name; new code uses names.*
IMAGE_MIMETYPES = {
    "image/png": "png",
    "image/jpeg": "jpg",
    "image/svg+xml": "svg",
    "image/gif": "gif",
}
#: Hex digits of each output's sha256 kept in the searchable ``jupyter_repro.outputs`` tags.
OUTPUT_HASH_PREFIX = 32
#: Characters per ``jupyter_repro.outputs`` tag: under MLflow's tag value limit
#: (8000 since MLflow 2.x, 5000 before; servers of either age accept it).
OUTPUT_TAG_CHARS = 4000
OUTPUTS_TAG = names.OUTPUTS
LOCK_ARTIFACT = names.REQUIREMENTS_LOCK


def output_hash_tags(manifest: list[dict[str, Any]]) -> dict[str, str]:
    """The searchable output-hash tags of a run: ``jupyter_repro.outputs``, ``.1``, ...

    Each value is space-separated sha256 prefixes (each output once, manifest order),
    cut into chunks of at most :data:`OUTPUT_TAG_CHARS` characters.
    """
    prefixes = list(dict.fromkeys(e["sha256"][:OUTPUT_HASH_PREFIX] for e in manifest))
    chunks: list[list[str]] = [[]]
    per_chunk = OUTPUT_TAG_CHARS // (OUTPUT_HASH_PREFIX + 1)
    for prefix in prefixes:
        if len(chunks[-1]) >= per_chunk:
            chunks.append([])
        chunks[-1].append(prefix)
    return {
        (OUTPUTS_TAG if i == 0 else f"{OUTPUTS_TAG}.{i}"): " ".join(chunk)
        for i, chunk in enumerate(chunks)
    }


@dataclass
class Provenance:
    """The coordinates shared by every run of one notebook in one batch (computed once).

    Attributes:
        notebook_path: absolute path of the source notebook.
        notebook_sha256: hash of its bytes on disk.
        git: the code coordinate from git.
        diff: the notebook's diff against HEAD.
        environment: :func:`~jupyter_repro.provenance.env.environment_fingerprint`.
        data: the declared inputs with their digests.
    """

    notebook_path: str
    notebook_sha256: str
    git: GitInfo
    diff: NotebookDiff
    environment: dict[str, Any]
    data: list[DataInput] = field(default_factory=list)

    def tags(self) -> dict[str, str]:
        """MLflow tags for the code coordinate (standard ``mlflow.source.*`` + ours)."""
        from .. import __version__

        g = self.git
        tags = {
            "mlflow.source.type": "NOTEBOOK",
            names.MLFLOW_SOURCE_NAME: g.notebook_relpath or self.notebook_path,
            names.NOTEBOOK_PATH: self.notebook_path,
            names.NOTEBOOK_SHA256: self.notebook_sha256,
            names.NOTEBOOK_GIT_STATUS: g.notebook_status,
            names.SOURCES_MATCH_HEAD: str(self.diff.sources_match_head).lower(),
            names.GIT_DIRTY: str(g.dirty).lower() if g.repo_root else "unknown",
            names.VERSION: __version__,
        }
        if g.commit:
            tags["mlflow.source.git.commit"] = g.commit
        if g.branch:
            tags["mlflow.source.git.branch"] = g.branch
        if g.repo_url:
            tags["mlflow.source.git.repoURL"] = g.repo_url
        labels = [item.name for item in self.data]
        for item in self.data:
            # two inputs with one file name (a/train.csv, b/train.csv) keep both digests
            key = item.name if labels.count(item.name) == 1 else data_label(item)
            tags[names.data_tag(key)] = item.sha256
        return tags


def data_label(item: DataInput) -> str:
    """``<parent folder>/<name>`` of an input: its name when another input shares it."""
    path = Path(item.path)
    return f"{path.parent.name}/{path.name}" if path.parent.name else path.name


def collect_provenance(
    notebook_path: str | Path, data: list[DataInput] | None = None
) -> Provenance:
    """Compute the code, environment and data coordinates of ``notebook_path`` once."""
    from ..notebook import read_notebook

    path = Path(notebook_path).resolve()
    info = git_info(path)
    current = read_notebook(path)
    head_nb = None
    if info.head_text is not None:
        head_nb = _parse_head(path, info.head_text)
    hint = OUTSIDE_REPO if info.notebook_status == OUTSIDE_REPO else ""
    diff = diff_against_head(head_nb, current, hint)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    # head_text is large and every run carries this object: keep only what is needed
    slim = GitInfo(**{**asdict(info), "head_text": None})
    return Provenance(str(path), sha, slim, diff, environment_fingerprint(), list(data or []))


def _parse_head(path: Path, text: str) -> dict | None:
    import nbformat

    try:
        if path.suffix.lower() in (".py", ".md"):
            import jupytext

            return jupytext.reads(text, fmt="md" if path.suffix.lower() == ".md" else "py:percent")
        return nbformat.reads(text, as_version=4)
    except Exception:  # HEAD holds something that is not a notebook: treat as all new
        return None


@dataclass
class FinishedRun:
    """What one run produced, as the logger needs it.

    Attributes:
        status: ``FINISHED``, ``FAILED`` or ``KILLED``.
        executed: the executed (possibly partial) notebook, or None if it never started.
        output_path: where the executed notebook was written, if anywhere.
        reason: one line saying why the run failed or was killed ("" when finished).
        error: failing cell facts: ``cell_index`` (in the source notebook), ``cell_id``,
            ``ename``, ``evalue``, ``traceback`` (list of lines).
        kernel_stderr: what the kernel wrote to stderr (logged as ``kernel_stderr.txt``).
        kernel_forked: the last kernel was forked from a template (True), started as a
            new interpreter (False), or none started (None); tag ``jupyter_repro.kernel.forked``.
    """

    run_name: str
    status: str
    executed: Any = None
    output_path: str | None = None
    reason: str = ""
    error: dict[str, Any] = field(default_factory=dict)
    start_ms: int = 0
    end_ms: int = 0
    kernel_stderr: str = ""
    kernel_forked: bool | None = None


def format_param(value: Any) -> str:
    """How a parameter value appears in MLflow: strings as is, anything else as the Python
    source the notebook received (:func:`jupyter_repro.parameters.python_literal`).

    So ``lr = 1e-3`` is ``0.001``, ``layers = [16, 16]`` is ``[16, 16]``, a tuple
    ``(3, 4)`` and ``{0: 1.0}`` keep their types' spelling (field case G05).
    """
    from ..parameters import python_literal

    if isinstance(value, str):
        return value
    try:
        return python_literal(value)
    except Exception:
        return repr(value)


def _client(uri: str) -> Any:
    from .store import client

    return client(uri)


def open_run(
    uri: str,
    experiment_id: str,
    run_name: str,
    params: dict[str, Any],
    defaults: dict[str, str],
    provenance: Provenance,
    extra_tags: dict[str, str] | None = None,
) -> str:
    """Create the MLflow run (status RUNNING) with params and tags; return its id.

    Args:
        params: the injected values.
        defaults: parameters-cell names not overridden, with their default as written.
    """
    from mlflow.entities import Param

    client = _client(uri)
    tags = {**provenance.tags(), **(extra_tags or {}), "mlflow.runName": run_name}
    if defaults:
        tags[names.PARAMS_DEFAULTS] = ",".join(sorted(defaults))
    run = retry_locked(client.create_run, experiment_id, tags=tags, run_name=run_name)
    run_id = run.info.run_id
    all_params = {**{k: v[:6000] for k, v in defaults.items()}}
    all_params.update({k: format_param(v)[:6000] for k, v in params.items()})
    if all_params:
        retry_locked(client.log_batch, run_id, params=[Param(k, v) for k, v in all_params.items()])
    return run_id


def end_run(uri: str, run_id: str, status: str, reason: str) -> None:
    """End a run now as ``status`` (``FINISHED``, ``FAILED``, ``KILLED``), recording why
    in ``jupyter_repro.status`` / ``jupyter_repro.status_reason``.

    Used wherever a run is closed by someone other than its own worker's normal path
    (orphans of a batch, a dead worker's attempt, ``gc``, a run whose logging failed);
    the status is set even if writing the reason fails.
    """
    from mlflow.entities import RunTag

    client = _client(uri)
    try:
        retry_locked(
            client.log_batch,
            run_id,
            tags=[
                RunTag(names.STATUS, str(status)),
                RunTag(names.STATUS_REASON, redact_text(reason)[:5000]),
            ],
        )
    finally:
        retry_locked(client.set_terminated, run_id, str(status), int(time.time() * 1000))


def set_tags(uri: str, run_id: str, tags: dict[str, str]) -> None:
    """Set several tags in one call (used by heartbeats)."""
    from mlflow.entities import RunTag

    retry_locked(_client(uri).log_batch, run_id, tags=[RunTag(k, v) for k, v in tags.items()])


def close_run(
    uri: str,
    run_id: str,
    finished: FinishedRun,
    provenance: Provenance,
    before_status: Callable[[FinishedRun], None] | None = None,
) -> None:
    """Log what the run produced (metrics, failure facts, artifacts, datasets) and end it.

    ``before_status`` (when given) is called after the metrics, tags, artifacts and
    datasets are logged: a batch worker waits there for the run's kernel to exit (its
    exit overlapped the logging so far) and fills ``finished.kernel_stderr``, logged
    after it. The status tags and the final status are written last, after the kernel
    has exited, so a notebook's own ``mlflow.start_run()`` (ended FINISHED by MLflow's
    exit hook, MLflow issue #3932) can never turn a failed run into a finished one.
    """
    from mlflow.entities import Metric, RunTag

    from ..metrics import read_metrics

    client = _client(uri)
    # first what the run produced (metrics, failure facts, output hashes): they survive
    # an artifact upload that fails
    metrics = read_metrics(finished.executed) if finished.executed is not None else []
    tags: dict[str, str] = {}
    if finished.kernel_forked is not None:
        tags[names.KERNEL_FORKED] = "true" if finished.kernel_forked else "false"
    for key in ("cell_index", "cell_id", "ename", "evalue"):
        if finished.error.get(key) is not None:
            tags[names.ERROR_PREFIX + key] = str(finished.error[key])[:5000]
    if finished.executed is not None:
        tags.update(output_hash_tags(output_manifest(finished.executed)))
    batch_metrics = [Metric(m.name, m.value, m.timestamp, m.step) for m in metrics]
    for start in range(0, max(len(batch_metrics), 1), 900):
        retry_locked(
            client.log_batch,
            run_id,
            metrics=batch_metrics[start : start + 900],
            tags=[RunTag(k, v) for k, v in tags.items()] if start == 0 else [],
        )
    with tempfile.TemporaryDirectory(prefix="jrepro-art-") as tmp:
        write_artifacts(Path(tmp), finished, provenance)
        retry_locked(client.log_artifacts, run_id, tmp)
    if provenance.data:
        _log_datasets(client, run_id, provenance.data)
    if before_status is not None:
        before_status(finished)
        if finished.kernel_stderr:
            with tempfile.TemporaryDirectory(prefix="jrepro-art-") as tmp:
                _write(Path(tmp) / names.KERNEL_STDERR, finished.kernel_stderr)
                retry_locked(client.log_artifacts, run_id, tmp)
    # last, once the kernel has exited: the status
    status = {names.STATUS: str(finished.status)}
    if finished.reason:
        status[names.STATUS_REASON] = redact_text(finished.reason)[:5000]
    retry_locked(client.log_batch, run_id, tags=[RunTag(k, v) for k, v in status.items()])
    end = finished.end_ms or int(time.time() * 1000)
    retry_locked(client.set_terminated, run_id, str(finished.status), end)


def _log_datasets(client: Any, run_id: str, data: list[DataInput]) -> None:
    from mlflow.entities import Dataset, DatasetInput, InputTag

    inputs = [
        DatasetInput(
            Dataset(
                name=item.name,
                digest=item.sha256[:32],
                source_type="local",
                source=json.dumps({"uri": Path(item.path).as_uri()}),
                profile=json.dumps(
                    {"sha256": item.sha256, "files": item.files, "bytes": item.size}
                ),
            ),
            tags=[InputTag("mlflow.data.context", "input")],
        )
        for item in data
    ]
    for attempt in range(5):
        try:
            retry_locked(client.log_inputs, run_id, datasets=inputs)
            return
        except Exception as exc:
            # MLflow looks a dataset up and then inserts it: two runs closing at once
            # with the same input race, and the loser gets a UNIQUE constraint error
            # (sqlite directly, or BAD_REQUEST from a server). By now it exists: retry.
            text = str(exc)
            if attempt == 4 or ("IntegrityError" not in text and "UNIQUE" not in text):
                raise
            time.sleep(0.2 * (attempt + 1))


def log_run(
    uri: str,
    experiment_id: str,
    finished: FinishedRun,
    provenance: Provenance,
    params: dict[str, Any] | None = None,
    defaults: dict[str, str] | None = None,
    extra_tags: dict[str, str] | None = None,
) -> str:
    """Log a run that has already happened (open + close in one); return the run id."""
    run_id = open_run(
        uri, experiment_id, finished.run_name, params or {}, defaults or {}, provenance, extra_tags
    )
    close_run(uri, run_id, finished, provenance)
    return run_id


# --- artifacts ------------------------------------------------------------------------

_HTML_EXPORTER = None
_HTML_LOCK = threading.Lock()


def html_exporter() -> Any:
    """nbconvert's HTML exporter, built and warmed once per process: importing nbconvert
    and compiling its templates at the first render cost about 0.7 s of CPU. Thread-safe:
    a caller waits for a warm-up under way (:func:`warm_html_in_background`)."""
    global _HTML_EXPORTER
    with _HTML_LOCK:
        if _HTML_EXPORTER is None:
            import nbformat
            from nbconvert import HTMLExporter

            exporter = HTMLExporter()
            exporter.from_notebook_node(nbformat.v4.new_notebook())  # compiles the templates
            _HTML_EXPORTER = exporter
    return _HTML_EXPORTER


_HTML_WARMING: threading.Thread | None = None


def warm_html_in_background() -> None:
    """Build the HTML exporter in a daemon thread, once per process: a batch worker calls
    this when its first run's kernel answered, so the work overlaps the run (which mostly
    waits for its kernel) instead of delaying the first run's start."""
    global _HTML_WARMING
    with _HTML_LOCK:
        if _HTML_WARMING is not None or _HTML_EXPORTER is not None:
            return
        _HTML_WARMING = threading.Thread(target=html_exporter, name="html-warm-up", daemon=True)
    _HTML_WARMING.start()


def _html(nb: Any) -> str:
    """HTML render of a notebook (characters nbformat rejects in a cell id, e.g. the
    ``/`` of a crafted ``../x``, are rendered as ``_``, so such an id costs no artifact)."""
    import copy
    import re

    import nbformat

    nb = nbformat.from_dict(copy.deepcopy(dict(nb)))
    for cell in nb.cells:
        if "id" in cell:
            cell["id"] = re.sub(r"[^A-Za-z0-9_-]", "_", str(cell["id"]))[:64] or "cell"
    exporter = html_exporter()
    with warnings.catch_warnings():  # recorded metrics have no HTML form, by design
        warnings.simplefilter("ignore", UserWarning)
        body, _ = exporter.from_notebook_node(nb)
    return body


def _write(path: Path, text: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")


#: Cells papermill adds to an executed notebook that are not in the source notebook.
ADDED_CELL_TAGS = ("injected-parameters", "papermill-error-cell-tag")


def is_added_cell(cell: Any) -> bool:
    """Whether ``cell`` is one papermill added (:data:`ADDED_CELL_TAGS`), not a source cell."""
    return any(tag in ADDED_CELL_TAGS for tag in cell_tags(cell))


def source_cell_index(nb: Any, index: int) -> int:
    """Map a cell index of the executed notebook to the source notebook's index.

    papermill inserts an ``injected-parameters`` cell and, on failure, error-marker
    cells; cells after them shift.
    """
    added = 0
    for cell in nb.get("cells", [])[:index]:
        if is_added_cell(cell):
            added += 1
    return index - added


def output_manifest(nb: Any, image_dir: Path | None = None) -> list[dict[str, Any]]:
    """sha256 of every output (images hashed as their decoded bytes), saving images.

    Images are saved as ``cell-<index>-<id>-<n>.<ext>`` (index in the source notebook),
    so the file a user holds hashes to the same digest as its manifest entry. ``<id>`` is
    the cell id made a safe file-name component (:func:`~jupyter_repro.fileio.safe_name`:
    a crafted id such as ``../../x`` cannot place a file outside ``image_dir``).
    """
    entries: list[dict[str, Any]] = []
    for index, cell in enumerate(nb.get("cells", [])):
        if cell.get("cell_type") != "code":
            continue
        src_index = source_cell_index(nb, index)
        # the id is data from the notebook's author: only as a safe file-name component
        cell_id = safe_name(str(cell.get("id") or ""), "noid")
        n_image = 0
        for o_index, output in enumerate(cell.get("outputs", [])):
            kind = output.get("output_type")
            items: list[tuple[str, bytes]] = []
            if kind == "stream":
                text = output.get("text", "")
                items.append(("text/" + str(output.get("name")), "".join(text).encode()))
            elif kind == "error":
                items.append(("error", f"{output.get('ename')}: {output.get('evalue')}".encode()))
            else:
                for mime, value in (output.get("data") or {}).items():
                    if mime in IMAGE_MIMETYPES and mime != "image/svg+xml":
                        raw = base64.b64decode("".join(value) if isinstance(value, list) else value)
                    elif isinstance(value, (dict, list)) and not mime.startswith("text/"):
                        raw = json.dumps(value, sort_keys=True).encode()
                    else:
                        raw = ("".join(value) if isinstance(value, list) else str(value)).encode()
                    items.append((mime, raw))
            for mime, raw in items:
                entry = {
                    "cell_index": src_index,
                    "cell_id": cell.get("id"),
                    "output_index": o_index,
                    "mimetype": mime,
                    "sha256": hashlib.sha256(raw).hexdigest(),
                }
                if mime in IMAGE_MIMETYPES:
                    name = f"cell-{src_index:03d}-{cell_id}-{n_image}.{IMAGE_MIMETYPES[mime]}"
                    n_image += 1
                    entry["file"] = f"{names.OUTPUT_IMAGES_DIR}/{name}"
                    if image_dir is not None:
                        _write(image_dir / name, raw)
                entries.append(entry)
    return entries


def write_artifacts(folder: Path, finished: FinishedRun, provenance: Provenance) -> None:
    """Lay out a run's artifacts in ``folder`` (see the module docstring)."""
    import nbformat

    stem = Path(provenance.notebook_path).stem
    if finished.executed is not None:
        nb = finished.executed
        name = finished.run_name  # a name from elsewhere must not be a path
        if not name or "/" in name or "\\" in name or name.startswith("."):
            name = safe_name(name, "notebook")
        _write(
            folder / names.NOTEBOOK_DIR / f"{name}.ipynb",
            nbformat.writes(nbformat.from_dict(nb)),
        )
        try:
            _write(folder / names.NOTEBOOK_DIR / f"{name}.html", _html(nb))
        except Exception as exc:  # a render failure must not lose the run
            _write(folder / names.HTML_RENDER_ERROR, f"{type(exc).__name__}: {exc}\n")
        manifest = output_manifest(nb, folder / names.OUTPUT_IMAGES_DIR)
        _write(folder / names.OUTPUT_MANIFEST, json.dumps(manifest, indent=1))
    diff = provenance.diff
    _write(folder / names.NBDIFF_JSON, json.dumps(diff.summary(), indent=1, default=str))
    _write(folder / names.NBDIFF_TXT, diff.text)
    _write(folder / names.NBDIFF_HTML, render_html(diff, f"{stem}: diff against HEAD"))
    _write(folder / names.ENVIRONMENT_JSON, json.dumps(provenance.environment, indent=1))
    _write(folder / LOCK_ARTIFACT, requirements_lock(provenance.environment))
    if finished.kernel_stderr:
        _write(folder / names.KERNEL_STDERR, finished.kernel_stderr)
    if provenance.data:
        _write(folder / names.DATA_JSON, json.dumps([asdict(d) for d in provenance.data], indent=1))
    if finished.status != names.RunStatus.FINISHED:
        _write(
            folder / names.ERROR_JSON,
            json.dumps(
                {"status": finished.status, "reason": finished.reason, **finished.error},
                indent=1,
                default=str,
            ),
        )


def log_finished_notebook(
    notebook_path: str | Path,
    executed: Any,
    status: str,
    *,
    reason: str = "",
    error: dict[str, Any] | None = None,
    params: dict[str, Any] | None = None,
    tracking_uri: str | None = None,
    experiment: str | None = None,
    run_name: str | None = None,
    data: list[DataInput] | None = None,
    extra_tags: dict[str, str] | None = None,
) -> str:
    """Log a notebook run that already happened (e.g. an nb-smoke run) as one MLflow run.

    Same coordinates and layout as a batch run: the store is resolved and created the
    same way (``--tracking-uri``, ``MLFLOW_TRACKING_URI``, the project's sqlite store),
    the parameters cell's defaults are logged and marked, the final status is set last.

    Args:
        executed: the executed notebook (or None if it never ran).
        status: ``FINISHED``, ``FAILED`` or ``KILLED``.

    Returns:
        The MLflow run id.
    """
    from ..notebook import read_notebook
    from ..parameters import notebook_parameters
    from .store import prepare_experiment, resolve_tracking_uri

    path = Path(notebook_path)
    params = dict(params or {})
    uri = resolve_tracking_uri(tracking_uri, path.parent)
    experiment_id = prepare_experiment(uri, experiment or path.stem)
    provenance = collect_provenance(path, data)
    known = notebook_parameters(read_notebook(path))
    defaults = {
        n: format_param(i.default) if i.has_literal_default else i.default_source
        for n, i in known.items()
        if n not in params
    }
    now = int(time.time() * 1000)
    finished = FinishedRun(
        run_name or f"{path.stem}-{time.strftime('%Y%m%d-%H%M%S')}",
        status,
        executed,
        None,
        reason,
        dict(error or {}),
        now,
        now,
    )
    return log_run(uri, experiment_id, finished, provenance, params, defaults, extra_tags)
