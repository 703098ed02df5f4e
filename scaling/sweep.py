"""`voicescale sweep`: plan the grid against results.jsonl, run what is pending on Ray Tune,
record every trial in MLflow and results.jsonl, then fit and report.

Re-running the same command is the way to resume: finished trials (`done`, `diverged`) are
skipped, unfinished ones resume from their last checkpoint, failed ones are tried again.

Forecast, then measure: on a grid of ≥ 4 budgets the trials at the cheap budgets run first;
then the sweep fits them, writes a forecast of every other trial (forecast.json and MLflow),
and only then launches those (`scaling.sweep_forecast` has the rules).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from cluster.console import SweepConsole
from scaling.seed_figure import describe_seed_figure
from scaling.sweep_plan import SweepPlan, plan_sweep
from scaling.timing import sweep_timing
from store.lineage import git_commit
from store.paths import SweepPaths
from store.results_file import load_results, load_rows, repair_torn_tail
from training.config import ConfigError, SweepConfig, TrialConfig, config_hash, to_dict

if TYPE_CHECKING:
    from cluster.sweep_runner import SweepRecorder

__all__ = ["SweepPlan", "plan_sweep", "run_sweep"]

EXIT_INTERRUPTED = 130
EXIT_TRACKING_DOWN = 75
"""EX_TEMPFAIL: every trial is in results.jsonl, MLflow is behind; run it again later."""


def format_plan(plan: SweepPlan, *, every_trial: bool = True) -> str:
    """The plan: a header, the phases, then one line per trial (`every_trial`, the dry run
    and `-v`) or the grid's axes and how many trials each action applies to."""
    from scaling.sweep_forecast import phase_note

    lines = [f"sweep {plan.sweep.name}: {len(plan.trials)} trials, {len(plan.pending)} to run"]
    lines.append(f"  {phase_note(plan.sweep)}")
    if not every_trial:
        return "\n".join([*lines, *_plan_summary(plan)])
    lines.append(f"  {'trial':<28} {'kind':<9} {'budget':<10} {'resources':<16} action")
    for t in plan.trials:
        r = t.resources
        res = f"{r.num_workers}×{r.cpus_per_worker:g}cpu" + (
            f"+{r.gpus_per_worker:g}gpu" if r.gpus_per_worker else ""
        )
        lines.append(
            f"  {t.name:<28} {t.kind:<9} {t.data.budget.label:<10} {res:<16} {plan.actions[t.name]}"
        )
    return "\n".join(lines)


def _plan_summary(plan: SweepPlan) -> list[str]:
    grid = plan.sweep.grid
    budgets = [b.label for b in grid.data_budgets]
    axes = (
        f"  grid: sizes {', '.join(grid.model_sizes)} × budgets {budgets[0]}…{budgets[-1]} "
        f"({len(budgets)}) × seeds {', '.join(map(str, grid.seeds))}"
    )
    baselines = sorted({t.family for t in plan.trials if t.kind == "baseline"})
    if baselines:
        axes += f" + baselines {', '.join(baselines)}"
    actions: dict[str, int] = {}
    for trial in plan.trials:
        action = plan.actions[trial.name]
        actions[action] = actions.get(action, 0) + 1
    counts = ", ".join(f"{action}: {n}" for action, n in actions.items())
    return [axes, f"  {counts}  (every trial: --dry-run or -v)"]


def run_sweep(
    sweep: SweepConfig,
    *,
    runs_dir: Path,
    dry_run: bool = False,
    max_failures: int = 2,
    promote: bool = False,
    tracking_grace_s: float = 300.0,
    verbose: bool = False,
) -> int:
    """Run (or resume) `sweep`; returns the process exit code (0; 1 when a trial failed;
    EXIT_INTERRUPTED; EXIT_TRACKING_DOWN when MLflow stayed unreachable at the end, for
    `tracking_grace_s` seconds). `verbose` shows what Ray, Tune, MLflow and every trial's
    processes print; without it they go to log files and the console stays short."""
    from scaling.preflight import format_checks, preflight
    from store.runs_lock import runs_dir_lock

    if not verbose:
        _quiet_libraries()
    # A config that cannot run fails here, before anything starts.
    checks = preflight(sweep, runs_dir, load_judges=dry_run, verbose=verbose)
    failed = [c for c in checks if c.problem]
    if dry_run:
        print(format_plan(plan_sweep(sweep, runs_dir)), flush=True)
        print(format_checks(checks), flush=True)
        return 2 if failed else 0
    if failed:
        raise ConfigError(
            f"sweep {sweep.name} cannot run as configured:\n"
            + "\n".join(f"  {c.name}: {c.problem}" for c in failed)
        )
    with runs_dir_lock(runs_dir, sweep.name) as holder:
        _set_aside_torn_row(SweepPaths(runs_dir / sweep.name))
        plan = plan_sweep(sweep, runs_dir)
        write_sweep_record(plan.paths, sweep, holder)
        print(format_plan(plan, every_trial=verbose), flush=True)
        started = time.perf_counter()
        status = _run(plan, runs_dir, max_failures, tracking_grace_s, verbose)
        if status in (0, EXIT_TRACKING_DOWN):
            _write_report(plan.paths, sweep.cost_per_gpu_hour)
            rows = load_rows(plan.paths.results)
            print("\n".join(describe_seed_figure(rows)), flush=True)
            print(sweep_timing(rows).summary(), flush=True)
        if status == 0 and promote:
            from scaling.promote import promote as promote_best

            promote_best(plan.paths.root, runs_dir=runs_dir)
        print(f"sweep {sweep.name}: {time.perf_counter() - started:.0f} s", flush=True)
    if status != 0:
        return status
    return 1 if _count(plan.paths)["failed"] else 0


def _set_aside_torn_row(paths: SweepPaths) -> None:
    torn = repair_torn_tail(paths.results)
    if torn is not None:
        print(
            f"warning: {paths.results} ended in a torn line (a crash or a full disk mid-write); "
            f"moved it to {torn}; that trial is recorded again",
            file=sys.stderr,
            flush=True,
        )


def write_sweep_record(paths: SweepPaths, sweep: SweepConfig, holder: dict) -> None:
    """`runs/<sweep>/sweep.json`: the resolved config this run plans from, and who runs it
    (what `voicescale status` reads to know the grid)."""
    import json
    import os

    paths.root.mkdir(parents=True, exist_ok=True)
    from cluster.tracking import default_tracking_uri

    record = {
        "config": to_dict(sweep),
        "tracking_uri": default_tracking_uri(paths.root.parent),
        "started_at": time.time(),
        "pid": holder.get("pid"),
        "host": holder.get("host"),
    }
    partial = paths.sweep_record.with_suffix(".json.partial")
    partial.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(partial, paths.sweep_record)


def _quiet_libraries() -> None:
    """INFO chatter of the libraries the driver runs (MLflow's database set-up and system
    metrics monitor, Tune's state files): warnings still show."""
    import logging
    import os

    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # read when mlflow is imported
    for name in ("mlflow", "ray.tune", "ray.train", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _run(plan: SweepPlan, runs_dir: Path, max_failures: int, grace_s: float, verbose: bool) -> int:
    """Everything that needs MLflow: reconcile it with results.jsonl, close what a dead
    driver left open, run the pending trials, close the sweep's run, wait for the backlog."""
    from cluster.sweep_runner import SweepRecorder
    from cluster.tracking import SweepTracker, check_reachable, default_tracking_uri
    from cluster.tracking_queue import TrackingQueue, quick_failing_http

    uri = default_tracking_uri(runs_dir)
    check_reachable(uri)  # before any training: an unreachable server costs nothing
    quick_failing_http()
    plan.paths.root.mkdir(parents=True, exist_ok=True)
    queue = TrackingQueue(SweepTracker(uri, plan.sweep.name, runs_dir))
    trials = {t.name: t for t in plan.trials}
    final = {r.trial for r in load_rows(plan.paths.results) if r.final}
    console = SweepConsole(trials, already_final=final, sweep_dir=plan.paths.root)
    recorder = SweepRecorder(
        plan.paths,
        queue,
        trials,
        on_recorded=console.finished,
        on_started=console.started,
        on_progress=console.progress,
    )
    config, tags, running = to_dict(plan.sweep), _lineage_tags(plan.sweep), bool(plan.pending)
    queue.submit("the sweep's run", lambda t: t.open_parent(config, tags, running=running))
    recorder.reconcile()
    # We hold the runs directory's lock: a run of this sweep still RUNNING lost its driver.
    queue.submit("closing runs left open", lambda t: _report_closed(t.close_stale_runs()))
    status, crashed = 0, True
    try:
        if plan.pending:
            with console:
                status = _run_pending(plan, recorder, max_failures, verbose)
        else:
            print("every trial is already recorded: nothing to train", flush=True)
        crashed = False
    finally:  # even when the driver itself fails: what MLflow is owed is sent, if it can be
        counts = _count(plan.paths, names=list(trials))
        parent_status = (
            "KILLED"
            if counts["missing"] or crashed
            else ("FAILED" if counts["failed"] else "FINISHED")
        )
        summary = {f"trials_{k}": v for k, v in counts.items()}
        queue.submit("closing the sweep's run", lambda t: t.close_parent(parent_status, summary))
        backlog = queue.drain(10.0 if crashed else grace_s)
    if backlog is not None:
        print(f"voicescale: error: {backlog.message(uri)}", file=sys.stderr, flush=True)
        return status or EXIT_TRACKING_DOWN
    return status


def _report_closed(names: list[str]) -> None:
    if names:
        print(
            f"closed {len(names)} MLflow run(s) a dead driver left RUNNING (now KILLED, tagged "
            f"voicescale.closed_reason): {', '.join(names)}",
            flush=True,
        )


def _run_pending(plan: SweepPlan, recorder: SweepRecorder, max_failures: int, verbose: bool) -> int:
    from cluster.ray_runtime import connect
    from cluster.sweep_runner import max_concurrency, run_trials
    from training.corpus.resolve import resolve_corpus

    # Trials that finished but whose driver died before recording them: record only.
    for trial in plan.pending:
        if plan.actions[trial.name] == "record (finished)":
            recorder.finished(trial.name)
    to_run = [t for t in plan.pending if plan.actions[t.name] != "record (finished)"]
    if to_run:
        template = plan.sweep.trial
        corpus_root = resolve_corpus(template.corpus, template.features, progress=True)
        connect(verbose=verbose)
        import ray

        from cluster.storage_check import check_shared_storage
        from cluster.trial_runner import check_launchable

        # Before any training: every node must see the runs directory and the corpus.
        check_shared_storage(plan.paths.root, corpus_root)

        cluster = dict(ray.cluster_resources())
        for trial in to_run:
            check_launchable(trial, cluster_cpus=cluster["CPU"])
        concurrency = max_concurrency(to_run, cluster, plan.sweep.max_concurrent_trials)
        launch = partial(
            run_trials,
            paths=plan.paths,
            corpus_root=corpus_root,
            recorder=recorder,
            concurrency=concurrency,
            max_failures=max_failures,
            verbose=verbose,
        )
        _run_phases(plan, to_run, recorder, launch, verbose)
    missing = _count(plan.paths, names=list(recorder.trials))["missing"]
    if missing:
        print(
            f"interrupted: {missing} of {len(plan.trials)} trials unfinished; run the same "
            "command again to resume them",
            file=sys.stderr,
            flush=True,
        )
        return EXIT_INTERRUPTED
    return 0


def _run_phases(
    plan: SweepPlan,
    to_run: list[TrialConfig],
    recorder: SweepRecorder,
    launch: Callable[[list[TrialConfig]], None],
    verbose: bool = False,
) -> None:
    """The cheap trials, then — once every cheap trial of the grid has a row — the forecast
    of the others, then those (`scaling.sweep_forecast`). An interrupted cheap phase
    launches nothing more: the next run resumes it, and forecasts after it."""
    from scaling.sweep_forecast import forecast_before_launch, split_phases

    cheap, later = split_phases(plan.sweep, to_run)
    if cheap:
        launch(cheap)
    if not later:
        return
    grid_cheap, _ = split_phases(plan.sweep, plan.trials)
    if _count(plan.paths, names=[t.name for t in grid_cheap])["missing"]:
        return
    try:
        forecast_before_launch(plan, later, recorder.queue, table=verbose)
    except Exception as err:  # the forecast informs; it must never hold the trials back
        print(
            f"warning: no forecast made ({type(err).__name__}: {err}); launching the rest",
            file=sys.stderr,
            flush=True,
        )
    launch(later)


def _count(paths: SweepPaths, names: list[str] | None = None) -> dict[str, int]:
    rows = load_results(paths.results)
    statuses = [r.status for r in rows.values()]
    counts = {s: statuses.count(s) for s in ("done", "diverged", "failed")}
    if names is not None:
        counts["missing"] = sum(1 for n in names if n not in rows)
    return counts


def _write_report(paths: SweepPaths, cost_per_gpu_hour: float | None) -> None:
    """Fits and report from results.jsonl; skipped when the report is newer than the results
    (a re-run that trained nothing changes nothing)."""
    from scaling.report import build_report

    report = paths.root / "report.html"
    if not paths.results.exists():
        return
    if report.exists() and report.stat().st_mtime >= paths.results.stat().st_mtime:
        print(f"report up to date: {report}", flush=True)
        return
    print(f"report: {build_report(paths.root, cost_per_gpu_hour=cost_per_gpu_hour)}", flush=True)


def _lineage_tags(sweep: SweepConfig) -> dict[str, str]:
    return {"config_hash": config_hash(sweep), "git_commit": git_commit() or "unknown"}
