"""``jupyter-repro locate FILE``: which MLflow runs produced this file?

The file is hashed (sha256 of its bytes, as the run's ``outputs/manifest.json`` hashes
images and other outputs), and the runs are found with one MLflow search per output-hash
tag (``tags.`jupyter_repro.outputs` LIKE '%<prefix>%'``): no run's artifacts are
downloaded to search. Only the matching runs' small artifacts (manifest, environment,
diff summary, data) are read to print their five coordinates.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ReproError
from ..provenance import names
from ..provenance.mlflow_log import OUTPUT_HASH_PREFIX, OUTPUTS_TAG
from ..provenance.store import retry_locked

#: Most overflow tags (``jupyter_repro.outputs.N``) looked at: 121 hashes each.
MAX_TAG_CHUNKS = 1000


@dataclass
class Match:
    """One run whose outputs include the file, with its five coordinates."""

    run_id: str
    run_name: str
    experiment: str
    status: str
    code: dict[str, Any] = field(default_factory=dict)
    data: list[dict[str, Any]] = field(default_factory=list)
    params: dict[str, str] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)
    execution: list[dict[str, Any]] = field(default_factory=list)
    has_manifest: bool = True


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes.

    Raises:
        ReproError: the file does not exist or cannot be read.
    """
    p = Path(path)
    try:
        return hashlib.sha256(p.read_bytes()).hexdigest()
    except OSError as exc:
        raise ReproError(f"{p}: cannot read: {exc.strerror or exc}") from None


def experiment_ids(client: Any, names: list[str] | None) -> dict[str, str]:
    """``{experiment id: name}`` of the named experiments, or of every active one.

    Raises:
        ReproError: a named experiment does not exist.
    """
    if names:
        found = {}
        for name in names:
            exp = retry_locked(client.get_experiment_by_name, name)
            if exp is None:
                raise ReproError(f"no MLflow experiment named {name!r}")
            found[exp.experiment_id] = exp.name
        return found
    return {e.experiment_id: e.name for e in retry_locked(client.search_experiments)}


def search_by_hash(client: Any, ids: list[str], sha256: str) -> list[Any]:
    """Runs of experiments ``ids`` whose output-hash tags contain ``sha256``'s prefix."""
    prefix = sha256[:OUTPUT_HASH_PREFIX].lower()
    runs: dict[str, Any] = {}
    for chunk in range(MAX_TAG_CHUNKS):
        key = OUTPUTS_TAG if chunk == 0 else f"{OUTPUTS_TAG}.{chunk}"
        if chunk and not _search(client, ids, f"tags.`{key}` LIKE '%'", 1):
            break  # no run has this many outputs
        for run in _search(client, ids, f"tags.`{key}` LIKE '%{prefix}%'", None):
            runs.setdefault(run.info.run_id, run)
    return sorted(runs.values(), key=lambda r: -(r.info.start_time or 0))


def _search(client: Any, ids: list[str], filter_string: str, limit: int | None) -> list[Any]:
    if not ids:
        return []
    if limit is not None:
        return list(
            retry_locked(client.search_runs, ids, filter_string=filter_string, max_results=limit)
        )
    out: list[Any] = []
    token = None
    while True:
        page = retry_locked(
            client.search_runs, ids, filter_string=filter_string, max_results=1000, page_token=token
        )
        out.extend(page)
        token = page.token
        if not token:
            return out


def read_json_artifact(client: Any, run_id: str, path: str) -> Any:
    """One JSON artifact of a run, or None when the run has none by that name."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    with tempfile.TemporaryDirectory(prefix="jrepro-locate-") as tmp:
        try:
            local = client.download_artifacts(run_id, path, tmp)
        except Exception:  # absent (older run, failed before logging)
            return None
        try:
            return json.loads(Path(local).read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError):  # run data: anyone may have written it
            return None


def coordinates(client: Any, run: Any, experiment: str, sha256: str | None = None) -> Match:
    """The five coordinates of ``run``; ``execution`` lists the outputs hashing to ``sha256``."""
    tags = run.data.tags
    run_id = run.info.run_id
    diff = read_json_artifact(client, run_id, names.NBDIFF_JSON) or {}
    code = {
        "commit": tags.get("mlflow.source.git.commit"),
        "branch": tags.get("mlflow.source.git.branch"),
        "repo_url": tags.get("mlflow.source.git.repoURL"),
        "notebook": tags.get(names.MLFLOW_SOURCE_NAME),
        "notebook_path": tags.get(names.NOTEBOOK_PATH),
        "git_dirty": tags.get(names.GIT_DIRTY),
        "notebook_git_status": tags.get(names.NOTEBOOK_GIT_STATUS),
        "diff_status": diff.get("status"),
        "source_changed_cells": diff.get("source_changed_cells"),
        "added_cells": diff.get("added_cells"),
        "removed_cells": diff.get("removed_cells"),
    }
    data = read_json_artifact(client, run_id, names.DATA_JSON) or [
        {"name": names.data_name(k), "sha256": v}
        for k, v in sorted(tags.items())
        if names.data_name(k) is not None
    ]
    for item in data:
        item.setdefault("name", Path(item.get("path", "")).name)
    env = read_json_artifact(client, run_id, names.ENVIRONMENT_JSON) or {}
    environment = {
        k: env.get(k) for k in ("python_version", "python_implementation", "platform")
    } | {"packages": len(env.get("packages") or {})}
    execution = []
    manifest = None
    if sha256 is not None:
        manifest = read_json_artifact(client, run_id, names.OUTPUT_MANIFEST)
        execution = [e for e in manifest or [] if e.get("sha256") == sha256]
    return Match(
        run_id,
        run.info.run_name or "",
        experiment,
        run.info.status,
        code,
        data,
        dict(sorted(run.data.params.items())),
        environment,
        execution,
        manifest is not None,
    )


def locate(
    file: str | Path, uri: str, experiments: list[str] | None = None
) -> tuple[str, list[Match]]:
    """Find the runs whose outputs include ``file``; returns (its sha256, matches).

    A run whose tag matched only by prefix but whose manifest has no exact entry for the
    full digest is dropped (a manifest-less run is kept: its tag is the evidence).
    """
    from mlflow.tracking import MlflowClient

    sha = file_sha256(file)
    client = MlflowClient(uri)
    ids = experiment_ids(client, experiments)
    matches = []
    for run in search_by_hash(client, list(ids), sha):
        match = coordinates(client, run, ids.get(run.info.experiment_id, ""), sha)
        if (
            match.execution
            or read_json_artifact(client, run.info.run_id, names.OUTPUT_MANIFEST) is None
        ):
            matches.append(match)
    return sha, matches


def format_match(m: Match) -> str:
    """A person's view of one match: the five coordinates, one block each."""
    c = m.code
    lines = [f"run {m.run_id}  {m.run_name}  (experiment '{m.experiment}', {m.status})"]
    dirty = c.get("git_dirty")
    diff = c.get("diff_status") or "no diff recorded"
    changed = c.get("source_changed_cells")
    extra = f", source changed in cells {changed}" if changed else ""
    lines.append(
        f"  code:        {c.get('notebook')} at commit {(c.get('commit') or 'none')[:12]}"
        f" (branch {c.get('branch') or '-'}; tree dirty: {dirty}; notebook vs HEAD: {diff}{extra})"
    )
    if m.data:
        for item in m.data:
            lines.append(
                f"  data:        {item.get('name')}  sha256 {item.get('sha256', '')[:16]}..."
            )
    else:
        lines.append("  data:        (no declared inputs)")
    params = ", ".join(f"{k}={v}" for k, v in m.params.items()) or "(none)"
    lines.append(f"  parameters:  {params}")
    e = m.environment
    lines.append(
        f"  environment: {e.get('python_implementation') or '?'} {e.get('python_version') or '?'}"
        f" on {e.get('platform') or '?'}, {e.get('packages', 0)} packages (environment.json)"
    )
    for entry in m.execution or [{}]:
        if not entry:
            lines.append("  execution:   (no manifest entry)")
            continue
        where = f"cell {entry.get('cell_index')} (id {entry.get('cell_id')})"
        what = f"output {entry.get('output_index')}, {entry.get('mimetype')}"
        file = f", artifact {entry['file']}" if entry.get("file") else ""
        lines.append(f"  execution:   {where}, {what}{file}")
    return "\n".join(lines)


def matches_json(file: str | Path, sha: str, matches: list[Match]) -> dict[str, Any]:
    """The ``--json`` form."""
    return {"file": str(file), "sha256": sha, "runs": [asdict(m) for m in matches]}
