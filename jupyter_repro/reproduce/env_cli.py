"""``jupyter-repro env``: a run's environment lock, and what changed between two.

``jupyter-repro env RUN_ID`` prints the run's ``requirements.lock.txt`` (``--json``: its
``environment.json``); ``jupyter-repro env diff RUN_A [RUN_B]`` lists the packages added,
removed and changed from RUN_A to RUN_B, or to the current environment when RUN_B is left
out (this interpreter's, or ``--python PATH``'s).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

from ..errors import ReproError
from ..provenance.names import ENVIRONMENT_JSON

_URI_HELP = (
    "MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///<project>/mlruns/mlflow.db)"
)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``env`` subcommand to the umbrella parser."""
    p = subparsers.add_parser(
        "env",
        help="print a run's environment lock, or diff two runs' environments",
        description="`env RUN_ID` prints the run's lock (a pinned requirements file that "
        "`uv pip sync` and `pip install -r` accept). `env diff RUN_A [RUN_B]` lists packages "
        "added, removed and changed from RUN_A to RUN_B (default: the current environment). "
        "Exit 0 (diff: no difference), 1 (diff: differences), 2 bad input.",
    )
    p.add_argument("args", nargs="+", metavar="RUN_ID | diff RUN_A [RUN_B]")
    p.add_argument("--tracking-uri", default=None, help=_URI_HELP)
    p.add_argument("--json", action="store_true", help="print JSON (the environment, or the diff)")
    p.add_argument(
        "--python",
        metavar="PATH",
        default=None,
        help="diff against this interpreter's environment instead of the current one",
    )
    p.set_defaults(func=env_command)


def run_environment(run_id: str, uri: str) -> dict[str, Any]:
    """The ``environment.json`` a run logged.

    Raises:
        ReproError: no such run, or it logged no environment.
    """
    import os

    from mlflow.tracking import MlflowClient

    from ..provenance.store import retry_locked

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    client = MlflowClient(uri)
    try:
        retry_locked(client.get_run, run_id)
    except Exception as exc:
        if "not found" in str(exc).lower() or "RESOURCE_DOES_NOT_EXIST" in str(exc):
            raise ReproError(f"no MLflow run {run_id} in {uri}") from None
        raise
    with tempfile.TemporaryDirectory(prefix="jrepro-env-") as tmp:
        try:
            path = client.download_artifacts(run_id, ENVIRONMENT_JSON, tmp)
        except Exception:
            raise ReproError(f"run {run_id} logged no environment.json") from None
        return json.loads(Path(path).read_text())


def _entries(env: dict[str, Any]) -> dict[str, dict[str, Any]]:
    from ..provenance.env import canonical_name

    if env.get("distributions") is not None:
        return {d["name"]: d for d in env["distributions"]}
    return {
        canonical_name(n): {"name": canonical_name(n), "version": v, "origin": "index"}
        for n, v in (env.get("packages") or {}).items()
    }


def _describe(d: dict[str, Any] | None) -> str | None:
    if d is None:
        return None
    origin = d.get("origin", "index")
    if origin == "index":
        return str(d.get("version"))
    where = d.get("url") or ""
    if origin == "vcs" and d.get("commit_id"):
        where += "@" + d["commit_id"][:12]
    return f"{d.get('version')} ({origin} {where})".rstrip()


def env_differences(a: dict[str, Any], b: dict[str, Any]) -> list[dict[str, Any]]:
    """Python and packages that differ from environment ``a`` to ``b``.

    Each item: ``package`` (canonical name, or ``python``), ``change`` (``added``,
    ``removed``, ``changed``), ``a`` and ``b`` (version, with the origin when it is not an
    index; None where absent). A package whose version is the same but whose origin
    changed (an index release replaced by an editable checkout) is ``changed``.
    """
    out: list[dict[str, Any]] = []
    if a.get("python_version") != b.get("python_version"):
        out.append(
            {
                "package": "python",
                "change": "changed",
                "a": a.get("python_version"),
                "b": b.get("python_version"),
            }
        )
    ea, eb = _entries(a), _entries(b)
    for name in sorted(set(ea) | set(eb)):
        da, db = ea.get(name), eb.get(name)
        if da is None or db is None:
            change = "added" if da is None else "removed"
        else:
            keys = ("version", "origin", "url", "commit_id")
            if all(da.get(k) == db.get(k) for k in keys):
                continue
            change = "changed"
        out.append({"package": name, "change": change, "a": _describe(da), "b": _describe(db)})
    return out


def format_differences(label_a: str, label_b: str, diffs: list[dict[str, Any]]) -> str:
    """``+ name version`` added, ``- name version`` removed, ``~ name a -> b`` changed."""
    if not diffs:
        return f"{label_a} and {label_b}: same Python and packages"
    counts = {c: sum(d["change"] == c for d in diffs) for c in ("added", "removed", "changed")}
    lines = [
        f"{label_a} -> {label_b}: {counts['added']} added, {counts['removed']} removed, "
        f"{counts['changed']} changed"
    ]
    for d in diffs:
        if d["change"] == "added":
            lines.append(f"  + {d['package']} {d['b']}")
        elif d["change"] == "removed":
            lines.append(f"  - {d['package']} {d['a']}")
        else:
            lines.append(f"  ~ {d['package']} {d['a']} -> {d['b']}")
    return "\n".join(lines)


def env_command(args: argparse.Namespace) -> int:
    """``jupyter-repro env``: print a lock (exit 0) or a diff (exit 0 same, 1 differs)."""
    from ..provenance.env import environment_fingerprint, interpreter_fingerprint, requirements_lock
    from ..provenance.store import resolve_tracking_uri

    uri = resolve_tracking_uri(args.tracking_uri)
    words = list(args.args)
    if words[0] != "diff":
        if len(words) != 1:
            raise ReproError("usage: jupyter-repro env RUN_ID | env diff RUN_A [RUN_B]")
        env = run_environment(words[0], uri)
        print(json.dumps(env, indent=1) if args.json else requirements_lock(env), end="\n")
        return 0
    if len(words) not in (2, 3):
        raise ReproError("usage: jupyter-repro env diff RUN_A [RUN_B]")
    a = run_environment(words[1], uri)
    if len(words) == 3:
        if args.python:
            raise ReproError("--python compares against RUN_A alone: give one run")
        b, label_b = run_environment(words[2], uri), f"run {words[2]}"
    elif args.python:
        try:
            b = interpreter_fingerprint(args.python)
        except RuntimeError as exc:
            raise ReproError(str(exc)) from None
        label_b = f"{args.python}"
    else:
        b, label_b = environment_fingerprint(), "the current environment"
    diffs = env_differences(a, b)
    if args.json:
        print(json.dumps({"a": words[1], "b": label_b, "differences": diffs}, indent=1))
    else:
        print(format_differences(f"run {words[1]}", label_b, diffs))
    return 1 if diffs else 0
