"""``jupyter-repro tune`` as a function: Optuna chooses the parameter sets, batch runs them.

Ask-and-tell: the ``tune`` process asks the study for a trial, turns the space's values
into a batch run spec (validated against the parameters cell like any ``-p``), starts the
run on the executor, and tells the study the outcome when the run ends. At most ``jobs``
trials are in flight. The trial and its MLflow run point at each other (trial user
attributes ``mlflow_run_id``/``mlflow_run_url``; run tags ``jupyter_repro.tune.*``), and
the study gets a parent MLflow run whose children are the trials.

Outcomes (trial state / MLflow run status):

- the notebook ran and recorded the metric: COMPLETE / FINISHED;
- ``record`` raised :class:`jupyter_repro.TrialPruned`: PRUNED / FINISHED, tag
  ``jupyter_repro.tune.trial_state = PRUNED`` and the step in the status reason;
- the notebook raised, timed out, or did not record the metric: FAIL / FAILED with the
  cell and error;
- Ctrl-C / SIGTERM: FAIL / KILLED; after SIGKILL, ``jupyter-repro gc`` ends both.

Nothing is left RUNNING in either store on any of these paths: every trial asked is told
exactly once, in a ``finally``.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import json
import math
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..batch.runner import BatchOptions
from ..errors import ReproError
from ..provenance import names as N
from ..provenance.names import TRIAL_OWNER_ATTR as OWNER_ATTR
from ..provenance.names import TRIAL_REASON_ATTR as REASON_ATTR
from ..provenance.names import TRIAL_RUN_ID_ATTR as RUN_ID_ATTR
from ..provenance.names import TRIAL_RUN_URL_ATTR as RUN_URL_ATTR
from . import channel
from .space import SearchSpace, load_space


@dataclass(frozen=True)
class TuneOptions:
    """Every knob of ``jupyter-repro tune``; defaults live here and nowhere else.

    Attributes:
        space: the ``--space`` file (``.yaml`` or ``.py``, see :mod:`.space`).
        trials: how many trials this invocation runs (an existing study keeps its own).
        metric: name of the value the notebook records (``record`` or ``mlflow.log_metric``).
        direction: ``minimize`` or ``maximize``.
        jobs: trials in flight at once, on any executor (with dask and no scheduler also
            the LocalCluster's workers).
        study: Optuna study name (default: the notebook's stem); reused if it exists.
        storage: Optuna RDB URL (default: ``optuna.db`` beside the MLflow sqlite store).
        sampler: ``tpe``, ``random`` or ``grid`` (grid needs a YAML space of finite axes).
        pruner: ``median`` or ``none``; ``pruner_startup`` is MedianPruner's
            ``n_startup_trials`` (complete trials before it prunes anything).
        seed: the sampler's seed (None: Optuna's random seed).
        timeout: seconds for the whole study: no trial starts after it (Optuna's meaning).
        notify_command: shell command run at the end with the study's result.
        mlflow_ui: base URL of the MLflow UI used in ``mlflow_run_url`` for non-http stores.
        dashboard_url: base URL of optuna-dashboard, for the runs' links to their trials.
        run: how each trial's run is made, exactly as for ``batch`` (executor, kernel,
            store, experiment, output folder, data, per-trial ``timeout``, heartbeats);
            its ``jobs`` is not used (``jobs`` above is).
    """

    space: str
    trials: int
    metric: str
    direction: str = "minimize"
    jobs: int = 1
    study: str | None = None
    storage: str | None = None
    sampler: str = "tpe"
    pruner: str = "median"
    pruner_startup: int = 5
    seed: int | None = None
    timeout: float | None = None
    notify_command: str | None = None
    mlflow_ui: str = "http://127.0.0.1:5000"
    dashboard_url: str = "http://127.0.0.1:8080"
    run: BatchOptions = field(default_factory=lambda: BatchOptions(progress=False))


@dataclass
class TrialOutcome:
    """One trial as the summary shows it."""

    number: int
    state: str  # COMPLETE, PRUNED, FAIL
    value: float | None
    params: dict[str, Any]
    run_id: str | None
    run_status: str | None
    reason: str = ""
    duration: float = 0.0


@dataclass
class TuneReport:
    """The end of a ``tune``: its trials, the study's best, where everything is."""

    study: str
    storage: str  # without credentials
    experiment: str
    tracking_uri: str
    direction: str
    metric: str
    parent_run_id: str | None = None
    trials: list[TrialOutcome] = field(default_factory=list)
    best: TrialOutcome | None = None
    interrupted: int = 0
    warnings: list[str] = field(default_factory=list)
    wall_seconds: float = 0.0

    @property
    def exit_code(self) -> int:
        """0 at least one trial COMPLETE; 1 none; 128+signal when interrupted."""
        if self.interrupted:
            return 128 + self.interrupted
        return 0 if any(t.state == "COMPLETE" for t in self.trials) else 1

    def to_dict(self) -> dict[str, Any]:
        """The machine-readable result (``--json`` and ``--notify-command``'s stdin)."""
        from dataclasses import asdict

        from ..provenance.mlflow_log import format_param

        def trial(t: TrialOutcome) -> dict[str, Any]:
            item = asdict(t)
            item["params"] = {k: format_param(v) for k, v in t.params.items()}
            return item

        counts: dict[str, int] = {}
        for t in self.trials:
            counts[t.state] = counts.get(t.state, 0) + 1
        return {
            "study": self.study,
            "storage": self.storage,
            "experiment": self.experiment,
            "tracking_uri": self.tracking_uri,
            "direction": self.direction,
            "metric": self.metric,
            "parent_run_id": self.parent_run_id,
            "exit_code": self.exit_code,
            "interrupted_by": signal.Signals(self.interrupted).name if self.interrupted else None,
            "counts": counts,
            "best": trial(self.best) if self.best else None,
            "trials": [trial(t) for t in self.trials],
            "warnings": self.warnings,
            "wall_seconds": round(self.wall_seconds, 3),
        }


class _Stop(BaseException):
    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(signal.Signals(signum).name)


def _sampler(options: TuneOptions, space: SearchSpace) -> Any:
    import optuna

    if options.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=options.seed)
    if options.sampler == "random":
        return optuna.samplers.RandomSampler(seed=options.seed)
    if options.sampler == "grid":
        return optuna.samplers.GridSampler(space.grid(), seed=options.seed)
    raise ReproError(f"--sampler must be tpe, random or grid, not {options.sampler!r}")


def run_url(base: str, tracking_uri: str, experiment_id: str, run_id: str) -> str:
    """Where a run is seen in the MLflow UI: the tracking server itself for http(s)
    stores, else ``base`` (where ``mlflow ui`` serves a local store)."""
    root = tracking_uri if tracking_uri.startswith(("http://", "https://")) else base
    return f"{root.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"


def dashboard_url(base: str, study_id: int, number: int | None = None) -> str:
    """Where optuna-dashboard (served at ``base``) shows a study, or one of its trials:
    its own routes ``/dashboard/studies/<study id>`` and ``.../trials?numbers=<number>``."""
    study = f"{base.rstrip('/')}/dashboard/studies/{study_id}"
    return study if number is None else f"{study}/trials?numbers={number}"


def check_space(space: SearchSpace, notebook: str | Path, nb: Any) -> list[str]:
    """Every name the space can produce must be a parameter of the notebook.

    Returns:
        Warnings (a value whose type differs from its default's type).

    Raises:
        ReproError / ParameterError: an unknown name, or no parameters cell.
    """
    from ..parameters import ParameterError, notebook_parameters, validate_parameters

    names = space.names()
    known = notebook_parameters(nb)
    unknown = sorted(n for n in names if n not in known)
    if unknown or not known:
        message = (
            f"the space {space.source} names "
            f"{'parameters' if len(unknown) > 1 else 'parameter'} "
            f"{', '.join(repr(n) for n in unknown)} that the parameters cell does not "
            f"define (it defines: {', '.join(sorted(known)) or 'none'})"
            if unknown
            else "has no cell tagged 'parameters' to inject the space's values into"
        )
        raise ParameterError(notebook, message, unknown=unknown, known=sorted(known))
    if space.function is None:
        import optuna

        trial = optuna.trial.FixedTrial(
            {d.name: d.choices[0] if d.kind == "categorical" else d.low for d in space.dimensions}
        )
        return validate_parameters(notebook, nb, space.suggest(trial))
    return []


def run_tune(notebook: str | Path, options: TuneOptions, echo: Any = None) -> TuneReport:
    """Run an Optuna study over ``notebook``'s parameters; each trial a batch run.

    Args:
        echo: a callable taking one line (warnings, progress); default stderr.

    Raises:
        ReproError: bad input (space, notebook, options, storage), before any trial.
    """
    started = time.perf_counter()
    say = echo or (lambda line: print(line, file=sys.stderr, flush=True))
    from ..provenance.store import quiet_mlflow, resolve_tracking_uri
    from .adapter import check_notebook, start_runs
    from .storage import open_storage, public_url, resolve_storage

    quiet_mlflow()
    path = Path(notebook)
    if options.trials < 1:
        raise ReproError(f"--trials must be at least 1, not {options.trials}")
    if options.direction not in ("minimize", "maximize"):
        raise ReproError(f"--direction must be minimize or maximize, not {options.direction!r}")
    if options.pruner not in ("median", "none"):
        raise ReproError(f"--pruner must be median or none, not {options.pruner!r}")
    if options.jobs < 1:
        raise ReproError(f"-j must be at least 1, not {options.jobs}")
    for name, value in (("--timeout", options.timeout), ("--trial-timeout", options.run.timeout)):
        if value is not None and value <= 0:
            raise ReproError(f"{name} must be positive, not {value:g}")
    batch_options = dataclasses.replace(options.run, jobs=None, progress=False)
    # Everything a user can get wrong is checked before a store is touched.
    nb, kernel, warnings = check_notebook(path, batch_options)
    space = load_space(options.space)
    sampler = _sampler(options, space)
    warnings += check_space(space, path, nb)
    uri = resolve_tracking_uri(batch_options.tracking_uri, path.parent)
    storage_url = resolve_storage(options.storage, uri, path.parent)
    study_name = options.study or path.stem
    hb = max(1, round(batch_options.heartbeat_interval))
    storage = open_storage(storage_url, heartbeat_interval=hb, grace=max(60, 4 * hb))
    for line in warnings:
        say(f"warning: {line}")

    import optuna

    pruner_spec = f"median:{options.pruner_startup}" if options.pruner == "median" else "none"
    study = optuna.create_study(
        storage=storage,
        study_name=study_name,
        direction=options.direction,
        sampler=sampler,
        pruner=channel.make_pruner(pruner_spec),
        load_if_exists=True,
    )
    if study.direction.name.lower() != options.direction:
        raise ReproError(
            f"study '{study_name}' in {public_url(storage_url)} was created to "
            f"{study.direction.name.lower()}; --direction {options.direction} cannot change it"
        )
    optuna.storages.fail_stale_trials(study)  # trials of an earlier tune killed mid-run
    jobs = min(options.jobs, options.trials)
    runs = start_runs(path, batch_options, nb, kernel, jobs, say)
    public = public_url(storage_url)
    report = TuneReport(
        study_name,
        public,
        runs.experiment,
        uri,
        options.direction,
        options.metric,
        warnings=warnings,
    )
    env = {"storage": storage_url, "pruner": pruner_spec}
    tuner = _Tuner(options, space, study, storage, runs, report, say, env)
    try:
        tuner.run()
    finally:
        report.wall_seconds = time.perf_counter() - started
    return report


class _Tuner:
    """The ask-run-tell loop of one ``tune`` and its clean endings."""

    def __init__(
        self,
        options: TuneOptions,
        space: SearchSpace,
        study: Any,
        storage: Any,
        runs: Any,
        report: TuneReport,
        say: Any,
        channel_env: dict[str, str],
    ) -> None:
        self.options, self.space, self.study, self.storage = options, space, study, storage
        self.channel_env = channel_env  # storage URL (with credentials) and pruner spec
        self.runs, self.report, self.say = runs, report, say
        self.inflight: dict[cf.Future, tuple[Any, Any, float]] = {}  # fut -> trial, spec, t0
        self.parent_id: str | None = None
        self.jobs = min(options.jobs, options.trials)
        self.asked: Any = None  # a trial asked but not yet in flight (told FAIL on a stop)
        self._beating = threading.Event()
        self._warming = threading.Thread(target=self._warm_plots, name="jrepro-plots", daemon=True)

    # --- the study's parent MLflow run ---------------------------------------------

    def _open_parent(self) -> None:
        from ..provenance.gc import heartbeat_tags
        from ..provenance.mlflow_log import open_run

        o, r = self.options, self.runs
        tags = {
            **heartbeat_tags(),
            N.TUNE_PARENT: "true",
            N.TUNE_STUDY: self.study.study_name,
            N.TUNE_STORAGE: self.report.storage,
            N.BATCH_ID: r.batch_id,
            N.TUNE_DASHBOARD_URL: dashboard_url(o.dashboard_url, self.study._study_id),
            N.TUNE_TAG + "metric": o.metric,
            N.TUNE_TAG + "direction": o.direction,
            N.TUNE_TAG + "sampler": o.sampler,
            N.TUNE_TAG + "pruner": o.pruner,
        }
        self.parent_id = open_run(
            r.uri,
            r.experiment_id,
            f"{self.study.study_name}-{r.stamp}",
            {},
            {},
            r.provenance,
            tags,
        )
        self.report.parent_run_id = self.parent_id

    def _close_parent(self, status: str, reason: str) -> None:
        from ..provenance.mlflow_log import end_run
        from ..provenance.store import retry_locked

        if self.parent_id is None:
            return
        from mlflow.entities import Metric, Param
        from mlflow.tracking import MlflowClient

        client = MlflowClient(self.runs.uri)
        best = self.report.best
        try:
            params = [Param("n_trials", str(len(self.report.trials)))]
            metrics = []
            if best is not None:
                from ..provenance.mlflow_log import format_param

                params += [
                    Param(f"best.{k}", format_param(v)[:6000]) for k, v in best.params.items()
                ]
                params.append(Param("best.trial", str(best.number)))
                metrics.append(
                    Metric(f"best_{self.options.metric}", best.value, int(time.time() * 1000), 0)
                )
            retry_locked(client.log_batch, self.parent_id, metrics=metrics, params=params)
            self._log_plots(client)
        finally:
            end_run(self.runs.uri, self.parent_id, status, reason)

    def _log_plots(self, client: Any) -> None:
        """Optimization history and parameter importances (Optuna's matplotlib plots)."""
        import tempfile

        from ..provenance.store import retry_locked

        if self._warming.is_alive():  # the imports started with the study (_warm_plots)
            self._warming.join(timeout=120)
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
            from optuna.visualization import matplotlib as vis
        except ImportError:
            self.report.warnings.append("matplotlib is not installed: no study plots logged")
            return
        import warnings

        with tempfile.TemporaryDirectory(prefix="jrepro-study-") as tmp:
            for name, plot in (
                ("optimization_history", vis.plot_optimization_history),
                ("param_importances", vis.plot_param_importances),
            ):
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        ax = plot(self.study)
                    ax.figure.savefig(Path(tmp) / f"{name}.png", dpi=100, bbox_inches="tight")
                    plt.close(ax.figure)
                except Exception as exc:  # e.g. importances need two complete trials
                    line = f"{name} plot not made: {type(exc).__name__}: {exc}"
                    self.report.warnings.append(line.splitlines()[0][:300])
            self.study_json(Path(tmp) / "study.json")
            retry_locked(client.log_artifacts, self.parent_id, tmp, "study")

    def study_json(self, target: Path) -> None:
        """Write the report as JSON (an artifact of the parent run)."""
        target.write_text(json.dumps(self.report.to_dict(), indent=1, default=str))

    @staticmethod
    def _warm_plots() -> None:
        """Import what the study's plots need (matplotlib, Optuna's importance evaluators,
        which import scikit-learn and SciPy) while the first trials run: seconds of CPU
        that would otherwise come after the last trial, in a process that mostly waits."""
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot
            import optuna.importance  # noqa: F401
            from optuna.visualization import matplotlib as _vis  # noqa: F401
        except Exception:  # _log_plots imports again and says what is missing
            return

    # --- optuna heartbeats for in-flight trials ------------------------------------

    def _heartbeat_loop(self) -> None:
        interval = max(1, round(self.options.run.heartbeat_interval))
        while not self._beating.wait(interval):
            for trial, _spec, _t0 in list(self.inflight.values()):
                try:
                    self.storage.record_heartbeat(trial._trial_id)
                except Exception:  # a missed beat only makes the trial look older
                    continue

    # --- the loop ------------------------------------------------------------------

    def _start_trial(self) -> bool:
        """Ask for one trial and start its run; False when the sampler has nothing left."""
        import optuna

        from ..parameters import validate_parameters
        from .adapter import this_process

        trial = self.asked = self.study.ask()
        self.storage.record_heartbeat(trial._trial_id)
        t0 = time.time()
        try:
            params = self.space.suggest(trial)
            validate_parameters(self.runs.path, self.runs.nb, params)
        except Exception as exc:  # a space.py that raised, or a name the probe never saw
            reason = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
            trial.set_user_attr(REASON_ATTR, reason)
            _tell(self.study, trial, None, optuna.trial.TrialState.FAIL)
            self.report.trials.append(
                TrialOutcome(trial.number, "FAIL", None, dict(trial.params), None, None, reason)
            )
            self.asked = None
            self.say(f"trial {trial.number}: FAIL ({reason})")
            return True
        trial.set_user_attr(OWNER_ATTR, list(this_process()))
        tags = {
            N.TUNE_STUDY: self.study.study_name,
            N.TUNE_STORAGE: self.report.storage,
            N.TUNE_TRIAL: str(trial.number),
            N.TUNE_TRIAL_ID: str(trial._trial_id),
            N.MLFLOW_PARENT_RUN_ID: self.parent_id or "",
        }
        link = dashboard_url(self.options.dashboard_url, self.study._study_id, trial.number)
        tags[N.TUNE_DASHBOARD_URL] = link
        tags[N.MLFLOW_NOTE] = (
            f"Trial {trial.number} of Optuna study `{self.study.study_name}` "
            f"(storage `{self.report.storage}`): [open it in optuna-dashboard]({link})"
        )
        env = channel.kernel_env(
            self.channel_env["storage"],
            self.study.study_name,
            self.options.metric,
            self.channel_env["pruner"],
            trial._trial_id,
        )
        spec = self.runs.spec(trial.number, params, tags, env)
        trial.set_user_attr(N.TRIAL_RUN_NAME_ATTR, spec.run_name)
        try:
            future = self.runs.submit(spec)
        except Exception as exc:  # the pool broke (a worker died) or the cluster is gone
            first = (str(exc).strip().splitlines() or [""])[0][:300]
            reason = f"the executor cannot start trials: {type(exc).__name__}: {first}"
            trial.set_user_attr(REASON_ATTR, reason)
            _tell(self.study, trial, None, optuna.trial.TrialState.FAIL)
            self.asked = None
            self._record(TrialOutcome(trial.number, "FAIL", None, params, None, None, reason))
            self.report.warnings.append(f"{reason}; no further trials started")
            return False
        self.inflight[future] = (trial, spec, t0)
        self.asked = None
        return True

    def _finish_trial(self, trial: Any, spec: Any, t0: float, result: Any) -> TrialOutcome:
        """Tell the study how the trial's run ended; align the run's status and tags."""
        import optuna

        from ..provenance.mlflow_log import end_run, set_tags

        TS = optuna.trial.TrialState
        o, r = self.options, self.runs
        run_id, status, reason = result.run_id, result.status, result.reason
        told = self.storage.get_trial(trial._trial_id)
        if told.state.is_finished():  # told already (an error came right after the tell)
            return TrialOutcome(
                trial.number,
                told.state.name,
                told.value,
                dict(spec.params),
                run_id,
                status,
                told.user_attrs.get(REASON_ATTR, ""),
                time.time() - t0,
            )
        value = None
        if status == "FINISHED":
            # The value MLflow shows for the run (its latest: highest step, then newest),
            # whether ``record`` or the notebook's own ``mlflow.log_metric`` logged it.
            value = _mlflow_metric(r.uri, run_id, o.metric) if run_id else None
            if value is None:
                value = result.metrics.get(o.metric)
        if run_id:
            trial.set_user_attr(RUN_ID_ATTR, run_id)
            trial.set_user_attr(RUN_URL_ATTR, run_url(o.mlflow_ui, r.uri, r.experiment_id, run_id))
        if status == "FINISHED" and value is not None and math.isfinite(value):
            state = TS.COMPLETE
        elif status == "FAILED" and "raised TrialPruned" in reason:
            state = TS.PRUNED
            reason = "pruned by Optuna: " + reason.split("raised TrialPruned:", 1)[1].strip()
            status = "FINISHED"
        else:
            state = TS.FAIL
            if status == "FINISHED":
                status = "FAILED"
                reason = (
                    f"the notebook did not record metric '{o.metric}' "
                    "(jupyter_repro.record or mlflow.log_metric)"
                    if value is None
                    else f"metric '{o.metric}' is {value}: not a finite number"
                )
        if state is not TS.COMPLETE and reason:
            trial.set_user_attr(REASON_ATTR, reason[:2000])
        frozen = _tell(self.study, trial, value if state is TS.COMPLETE else None, state)
        if run_id:
            try:
                set_tags(r.uri, run_id, {N.TUNE_STATE: state.name})
                if status != result.status:  # pruned, or finished without the metric
                    end_run(r.uri, run_id, status, reason)
            except Exception as exc:  # the trial's state stands; say what is missing
                self.report.warnings.append(f"run {run_id}: tags not updated: {exc}"[:300])
        return TrialOutcome(
            trial.number,
            state.name,
            frozen.value if state is not TS.FAIL else None,
            dict(spec.params),
            run_id,
            status if run_id else None,
            reason,
            time.time() - t0,
        )

    def _record(self, outcome: TrialOutcome) -> None:
        self.report.trials.append(outcome)
        value = "" if outcome.value is None else f" {self.options.metric}={outcome.value:.6g}"
        why = f" ({outcome.reason[:120]})" if outcome.reason else ""
        self.say(f"trial {outcome.number}: {outcome.state}{value}{why}")

    def run(self) -> None:
        """Run up to ``options.trials`` trials; every trial asked is told, whatever happens."""
        import optuna

        from .adapter import RunResult, close_orphans

        o, r = self.options, self.runs
        deadline = time.monotonic() + o.timeout if o.timeout else None

        def on_signal(signum: int, frame: Any) -> None:
            raise _Stop(signum)

        previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        beat = threading.Thread(target=self._heartbeat_loop, name="jrepro-trial-hb", daemon=True)
        started = 0
        exhausted = False
        status, why = "FINISHED", ""
        try:
            from ..provenance.gc import Heartbeat

            self._warming.start()
            self._open_parent()
            beat.start()
            with Heartbeat(r.uri, self.parent_id, o.run.heartbeat_interval):
                try:
                    while True:
                        while (
                            len(self.inflight) < self.jobs
                            and started < o.trials
                            and not exhausted
                            and (deadline is None or time.monotonic() < deadline)
                        ):
                            started += 1
                            exhausted = not self._start_trial()
                            if o.sampler == "grid" and _grid_done(self.study):
                                exhausted = True
                        if not self.inflight:
                            break
                        done, _ = cf.wait(
                            list(self.inflight), timeout=1.0, return_when=cf.FIRST_COMPLETED
                        )
                        for fut in done:
                            trial, spec, t0 = self.inflight[fut]
                            result = _result_of(fut, spec)
                            outcome = self._finish_trial(trial, spec, t0, result)
                            del self.inflight[fut]
                            self._record(outcome)
                except _Stop as stop:
                    self.report.interrupted = stop.signum
                    status, why = "KILLED", f"tune interrupted ({stop})"
                    self.say(f"jupyter-repro tune: {stop}: stopping {len(self.inflight)} trial(s)")
                    for s in previous:
                        signal.signal(s, signal.SIG_IGN)
                    r.executor.stop()
                    r.executor.cancel_pending()
                    cf.wait(list(self.inflight), timeout=o.run.stop_grace)
                    r.executor.kill()
                finally:
                    self._beating.set()
                    if self.asked is not None:  # stopped between ask and submit
                        trial, self.asked = self.asked, None
                        trial.set_user_attr(REASON_ATTR, why or "tune stopped")
                        _tell(self.study, trial, None, optuna.trial.TrialState.FAIL)
                    for fut, (trial, spec, t0) in list(self.inflight.items()):
                        if fut.done() and not fut.cancelled():
                            result = _result_of(fut, spec)
                        else:
                            result = RunResult.not_started(spec, why or "tune stopped")
                        del self.inflight[fut]
                        self._record(self._finish_trial(trial, spec, t0, result))
                    if self.report.interrupted:
                        close_orphans(r.uri, r.experiment_id, r.batch_id, "KILLED")
                    else:
                        close_orphans(r.uri, r.experiment_id, r.batch_id, "FAILED")
                        r.executor.shutdown()
                    self._set_best()
        except BaseException as exc:
            if status == "FINISHED":
                status, why = "FAILED", f"tune failed: {type(exc).__name__}: {exc}"[:500]
            raise
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
            self._close_parent(status, why)
            self._notify()

    def _set_best(self) -> None:
        complete = [t for t in self.report.trials if t.state == "COMPLETE"]
        try:
            best = self.study.best_trial  # over the whole study, earlier tunes included
        except ValueError:
            best = None
        if best is None:
            self.report.best = None
            return
        mine = {t.number: t for t in complete}
        self.report.best = mine.get(best.number) or TrialOutcome(
            best.number,
            best.state.name,
            best.value,
            dict(best.params),
            best.user_attrs.get(RUN_ID_ATTR),
            "FINISHED",
        )

    def _notify(self) -> None:
        """Run ``--notify-command`` with the result: JSON on stdin, facts in the environment."""
        cmd = self.options.notify_command
        if not cmd:
            return
        import subprocess

        rep = self.report
        env = {
            **os.environ,
            "JUPYTER_REPRO_STUDY": rep.study,
            "JUPYTER_REPRO_STUDY_STORAGE": rep.storage,
            "JUPYTER_REPRO_EXIT_CODE": str(rep.exit_code),
            "JUPYTER_REPRO_BEST_VALUE": "" if rep.best is None else repr(rep.best.value),
            "JUPYTER_REPRO_BEST_TRIAL": "" if rep.best is None else str(rep.best.number),
            "JUPYTER_REPRO_PARENT_RUN_ID": rep.parent_run_id or "",
        }
        for key in channel.ENV_NAMES:
            env.pop(key, None)  # the storage URL may hold a password
        try:
            done = subprocess.run(
                cmd,
                shell=True,
                input=json.dumps(rep.to_dict(), default=str),
                text=True,
                env=env,
                timeout=120,
            )
            if done.returncode:
                rep.warnings.append(f"--notify-command exited with {done.returncode}")
        except (OSError, subprocess.TimeoutExpired) as exc:
            rep.warnings.append(f"--notify-command failed: {exc}")


def _tell(study: Any, trial: Any, value: float | None, state: Any) -> Any:
    """``study.tell`` for ask-and-tell outside ``Study.optimize``.

    ``GridSampler.after_trial`` calls ``study.stop()`` once the grid is covered, which
    raises RuntimeError outside ``optimize``; Optuna stores the trial's state anyway (in
    a ``finally``), so that error only means "the grid is done" (:func:`_grid_done`).
    """
    try:
        return study.tell(trial, value, state=state, skip_if_finished=True)
    except RuntimeError as exc:
        if "Study.stop" not in str(exc):
            raise
        return study._storage.get_trial(trial._trial_id)


def _grid_done(study: Any) -> bool:
    sampler = study.sampler
    return hasattr(sampler, "is_exhausted") and sampler.is_exhausted(study)


def _mlflow_metric(uri: str, run_id: str, name: str) -> float | None:
    """The latest value of metric ``name`` the notebook logged itself (``mlflow.log_metric``)."""
    from mlflow.tracking import MlflowClient

    from ..provenance.store import retry_locked

    try:
        run = retry_locked(MlflowClient(uri).get_run, run_id)
    except Exception:
        return None
    return run.data.metrics.get(name)


def _result_of(fut: cf.Future, spec: Any) -> Any:
    """The run's result, or a FAILED/KILLED result saying why there is none."""
    from .adapter import RunResult

    try:
        return fut.result()
    except cf.CancelledError:
        return RunResult.not_started(spec, "tune interrupted before this trial started")
    except Exception as exc:  # the worker died or logging failed
        text = str(exc).strip().splitlines()
        return RunResult(
            spec.index,
            spec.run_name,
            spec.params,
            "FAILED",
            None,
            0.0,
            f"{type(exc).__name__}: {text[0] if text else ''}",
        )


def format_summary(report: TuneReport) -> str:
    """The end-of-study table: trial, state, value, parameters, run id; then the best."""
    from ..provenance.mlflow_log import format_param

    rows = [("trial", "state", report.metric, "parameters", "time", "mlflow run id")]
    for t in sorted(report.trials, key=lambda t: t.number):
        params = ", ".join(f"{k}={format_param(v)}" for k, v in t.params.items())
        rows.append(
            (
                str(t.number),
                t.state,
                "-" if t.value is None else f"{t.value:.6g}",
                params[:60],
                f"{t.duration:.1f}s",
                t.run_id or "-",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    for t in sorted(report.trials, key=lambda t: t.number):
        if t.reason and t.state != "COMPLETE":
            lines.append(f"trial {t.number}: {t.state}: {t.reason}")
    counts = {s: sum(t.state == s for t in report.trials) for s in ("COMPLETE", "PRUNED", "FAIL")}
    lines.append(
        f"{len(report.trials)} trial(s): {counts['COMPLETE']} complete, {counts['PRUNED']} "
        f"pruned, {counts['FAIL']} failed; study '{report.study}' in {report.storage}"
    )
    if report.best is not None:
        params = ", ".join(f"{k}={format_param(v)}" for k, v in report.best.params.items())
        lines.append(
            f"best: trial {report.best.number}, {report.metric}={report.best.value:.6g} "
            f"({report.direction}), {params}; run {report.best.run_id or '-'}"
        )
    lines.append(
        f"study run {report.parent_run_id or '-'} in experiment '{report.experiment}' "
        f"({report.tracking_uri})"
    )
    return "\n".join(lines)
