"""The fault drills: each breaks one thing for real and checks that nothing was lost.

Every drill runs the real CLI on the smoke corpus with tiny trials, in its own directory, and
returns a `DrillResult` whose checks say what held. The tests run each drill and assert its
checks; `make drills` runs them all and prints the table.
"""

from __future__ import annotations

import json
import math
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cluster.drills.harness import (
    KILL_CHECKPOINT_EVERY,
    KILL_TRIAL,
    TRIAL,
    DrillResult,
    SweepProcess,
    books_check,
    checkpoints,
    count_rows,
    count_runs,
    descendants_named,
    has_checkpoint,
    mlflow_runs,
    mlflow_server,
    rows,
    run_sweep,
    session_pids,
    sqlite_uri,
    wait_for,
)
from cluster.tracking import CLOSED_TAG

__all__ = ["DRILLS", "KILL_TRIAL", "diverge", "kills", "node_loss", "outage", "tamper", "torn"]

# Drills break the machinery, not the judges: no quality judge (DNSMOS costs ~1.5 s a clip).
QUICK_EVAL = [
    "trial.eval.sentences_per_speaker=1",
    "trial.eval.bootstrap=20",
    "trial.eval.quality=[]",
]


def _sweep(name: str, *overrides: str, baseline: bool = False) -> list[str]:
    return [f"name={name}", *KILL_TRIAL, f"grid.baseline={str(baseline).lower()}", *overrides]


def reference_loss(work: Path) -> float:
    """val_loss of the drill trial trained without interruption (run once, then cached)."""
    cached = work / "reference.json"
    if cached.exists():
        return json.loads(cached.read_text())["val_loss"]
    runs = work / "reference"
    code, log = run_sweep(runs, _sweep("reference"))
    if code != 0:
        raise RuntimeError(f"the clean reference run failed ({code}): {log[-3000:]}")
    value = rows(runs, "reference")[TRIAL]["val_loss"]
    cached.write_text(json.dumps({"val_loss": value}))
    return value


# ---------------------------------------------------------------------------------------------
# SIGKILL of a training worker and of the driver; a second sweep on a busy runs directory


def kills(work: Path) -> DrillResult:
    result = DrillResult(
        "kill -9 worker + driver",
        "SIGKILL a RayTrainWorker mid-trial; start a 2nd sweep on the runs dir; SIGKILL the "
        "driver mid-trial; rerun with its Ray leftovers still alive",
    )
    reference = reference_loss(work)
    runs, name = work / "kills", "kills"
    sweep = SweepProcess(runs, _sweep(name, baseline=True))
    try:
        wait_for(has_checkpoint(runs, name, KILL_CHECKPOINT_EVERY), 300, "the first checkpoint")
        workers = descendants_named(sweep.pid, "RayTrainWorker")
        result.check("found the trial's RayTrainWorker process", len(workers) == 1, workers)
        for pid in workers:
            os.kill(pid, signal.SIGKILL)
        refused_after = _second_sweep_is_refused(result, runs, name, sweep.pid)
        later = int(checkpoints(runs, name)[-1][4:]) + KILL_CHECKPOINT_EVERY
        wait_for(has_checkpoint(runs, name, later), 300, f"checkpoint {later} after the restart")
        result.rows_before = count_rows(runs, name)
        result.runs_before = count_runs(sqlite_uri(runs), name)
        before = rows(runs, name)
        sweep.kill(signal.SIGKILL)  # the driver, mid-trial; its session's Ray lives on
        leftovers = session_pids(sweep.pid)
        code, log = run_sweep(runs, _sweep(name, baseline=True), log_name="rerun")
    finally:
        sweep.end()
    result.check("the rerun exits 0", code == 0, log[-3000:])
    result.check(
        "the rerun takes over the dead driver's lock",
        "taking over the stale lock" in log,
        log[-2000:],
    )
    closed = [
        r.info.run_name
        for r in mlflow_runs(sqlite_uri(runs), name)
        if "died; closed by" in r.data.tags.get(CLOSED_TAG, "")
    ]
    result.check("the rerun closed the runs the dead driver left RUNNING", closed, closed)
    after = rows(runs, name)
    value = after.get(TRIAL, {}).get("val_loss")
    result.check(
        "val_loss after two kills == uninterrupted run",
        value == reference,
        f"{value!r} vs {reference!r}",
    )
    resumed = after.get(TRIAL, {}).get("resumed_from") or []
    result.check("it resumed from checkpoints both times", len(resumed) == 2, resumed)
    _nothing_lost(result, before, after)
    books_check(result, runs, name, sqlite_uri(runs), trials=2)
    result.outcome = (
        f"2nd sweep refused in {refused_after:.1f} s; resumed twice (from {resumed}), "
        f"val_loss {value} = clean {reference}; rerun exit {code} beside {len(leftovers)} "
        "processes the dead driver left"
    )
    return result


def _second_sweep_is_refused(result: DrillResult, runs: Path, name: str, holder: int) -> float:
    started = time.monotonic()
    code, log = run_sweep(runs, _sweep(name, baseline=True), timeout_s=120, log_name="second")
    seconds = time.monotonic() - started
    result.check(
        "a 2nd sweep on the busy runs dir exits non-zero within 10 s, naming the holder",
        code != 0 and seconds < 10 and f"pid {holder}" in log,
        f"exit {code} after {seconds:.1f} s: {log[-600:]}",
    )
    return seconds


def _nothing_lost(result: DrillResult, before: dict[str, Any], after: dict[str, Any]) -> None:
    changed = [n for n, row in before.items() if after.get(n) != row]
    result.check("rows recorded before the fault are unchanged", not changed, changed)


# ---------------------------------------------------------------------------------------------
# Divergence


def diverge(work: Path, after_checkpoint: bool = True) -> DrillResult:
    """`after_checkpoint`: also a trial that diverges after its first checkpoint (the tests
    check that case at the trial level, in tests/training/test_train_ray.py)."""
    result = DrillResult(
        "divergence",
        "smoke grid with trial.optim.lr=1e6 (before the first checkpoint)"
        + (", and one trial checkpointing every step (after it)" if after_checkpoint else ""),
    )
    runs, name = work / "diverge", "diverge"
    overrides = [f"name={name}", "trial.optim.lr=1e6", *QUICK_EVAL]
    code, log = run_sweep(runs, overrides)
    result.check("the sweep exits 0", code == 0, log[-3000:])
    table = rows(runs, name)
    neural = {n: r for n, r in table.items() if r["kind"] == "neural"}
    result.check(
        "4 neural rows, all diverged",
        len(neural) == 4 and all(r["status"] == "diverged" for r in neural.values()),
        {n: r["status"] for n, r in table.items()},
    )
    _divergence_recorded(result, neural)
    result.check(
        "baseline rows are done",
        [r["status"] for r in table.values() if r["kind"] == "baseline"] == ["done", "done"],
    )
    report = (
        (runs / name / "report.html").read_text() if (runs / name / "report.html").exists() else ""
    )
    result.check(
        "the report lists each diverged trial with its reason",
        all(f"<code>{n}</code> — diverged: non-finite" in report for n in neural),
    )
    fits = _read_json(runs / name / "fits.json").get("val_loss", {})
    result.check(
        "fits leave the diverged trials out (only the baseline family, 4 rows skipped)",
        set(fits.get("families", {})) == {"baseline"} and fits.get("rows_skipped") == 4,
        {k: fits.get(k) for k in ("rows_used", "rows_skipped")},
    )
    before = (runs / name / "results.jsonl").read_bytes()
    result.rows_before, result.runs_before = len(table), count_runs(sqlite_uri(runs), name)
    code, log = run_sweep(runs, overrides, log_name="rerun")
    result.check(
        "a rerun trains nothing and changes nothing",
        code == 0
        and "nothing to train" in log
        and (runs / name / "results.jsonl").read_bytes() == before,
        log[-1500:],
    )
    books_check(result, runs, name, sqlite_uri(runs), trials=6)
    result.outcome = f"{len(neural)} neural rows diverged, exit 0, rerun trained nothing"
    if after_checkpoint:
        result.outcome += f"; after a checkpoint: {_diverge_after_checkpoint(result, work)}"
    return result


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {}


def _divergence_recorded(result: DrillResult, neural: dict[str, dict[str, Any]]) -> None:
    def good(row: dict[str, Any]) -> bool:
        d = row.get("divergence") or {}
        last = d.get("last_finite_train_loss")
        return (
            isinstance(d.get("step"), int)
            and d["step"] >= 2
            and isinstance(last, float)
            and math.isfinite(last)
            and "non-finite" in str(d.get("reason"))
        )

    result.check(
        "each diverged row has the step, the last finite loss and the reason",
        all(good(r) for r in neural.values()),
        {n: r.get("divergence") for n, r in neural.items()},
    )


def _diverge_after_checkpoint(result: DrillResult, work: Path) -> str:
    runs, name = work / "diverge-late", "diverge-late"
    overrides = [
        f"name={name}",
        "trial.optim.lr=1e6",
        "trial.training.checkpoint_every=1",
        "grid.model_sizes=[xs]",
        "grid.data_budgets=[{utterances: 64}]",
        "grid.baseline=false",
        *QUICK_EVAL,
    ]
    code, _log = run_sweep(runs, overrides)
    row = rows(runs, name).get(TRIAL, {})
    step = (row.get("divergence") or {}).get("step")
    saved = checkpoints(runs, name)
    result.check(
        "diverging after a checkpoint is recorded as diverged too",
        code == 0 and row.get("status") == "diverged" and saved and step > 1,
        f"exit {code}, status {row.get('status')}, step {step}, checkpoints {saved}",
    )
    return f"{row.get('status')} at step {step} after checkpoint {saved[:1]}"


# ---------------------------------------------------------------------------------------------
# A torn results.jsonl


def torn(work: Path) -> DrillResult:
    """Needs `diverge` first (it reuses its finished sweep)."""
    result = DrillResult(
        "torn results.jsonl",
        "last row cut off mid-write; then a garbage line in the middle",
    )
    runs, name = work / "diverge", "diverge"
    overrides = [f"name={name}", "trial.optim.lr=1e6", *QUICK_EVAL]
    path = runs / name / "results.jsonl"
    intact = path.read_bytes()
    before = rows(runs, name)
    result.rows_before, result.runs_before = len(before), count_runs(sqlite_uri(runs), name)
    last_line_start = intact.rstrip(b"\n").rfind(b"\n") + 1
    path.write_bytes(intact[: last_line_start + 40])  # a crash 40 bytes into the last row
    code, log = run_sweep(runs, overrides, log_name="torn")
    torn_file = path.with_name("results.jsonl.torn")
    result.check("the sweep exits 0", code == 0, log[-2000:])
    result.check(
        "the torn line is moved to results.jsonl.torn, with a warning naming it",
        torn_file.exists() and str(torn_file) in log,
    )
    result.check("the cut-off trial is recorded again, as it was", rows(runs, name) == before)
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(lines[0] + b"{not json\n" + b"".join(lines[1:]))
    code, log = run_sweep(runs, overrides, log_name="garbage")
    result.check(
        "an invalid line in the middle is an error naming file:line",
        code == 2 and f"{path}:2: not a JSON object" in log,
        log[-1000:],
    )
    path.write_bytes(b"".join(lines))
    books_check(result, runs, name, sqlite_uri(runs), trials=len(before))
    result.outcome = "torn row set aside and re-recorded; a bad middle line stops the sweep"
    return result


# ---------------------------------------------------------------------------------------------
# A tracking server that goes away


def outage(work: Path) -> DrillResult:
    result = DrillResult(
        "tracking outage",
        "mlflow server SIGKILLed mid-trial and restarted; killed again and left down to the end",
    )
    runs, name = work / "outage", "outage"
    overrides = [
        f"name={name}",
        "grid.data_budgets=[{utterances: 64}]",
        "grid.baseline=false",
        "max_concurrent_trials=1",
        *QUICK_EVAL,
    ]
    with mlflow_server(work / "server") as server:
        env = {"MLFLOW_TRACKING_URI": server.uri}
        extra = ["--tracking-grace-s", "5"]  # long enough to see it wait, no longer
        sweep = SweepProcess(runs, overrides, env=env, extra=extra)
        try:
            wait_for(lambda: count_runs(server.uri, name) >= 2, 300, "the first child run")
            server.kill()
            time.sleep(3)
            result.check("training goes on while MLflow is down", sweep.alive())
            wait_for(lambda: count_rows(runs, name) >= 1, 300, "the first row, server down")
            server.start()
            wait_for(lambda: count_runs(server.uri, name) >= 3, 300, "the second child run")
            result.rows_before = count_rows(runs, name)
            result.runs_before = count_runs(server.uri, name)
            server.kill()
            code = sweep.wait(600)
            log = sweep.log()
        finally:
            sweep.end()
        errors = [line for line in log.splitlines() if line.startswith("voicescale: error:")]
        result.check("it ends with exit code 75", code == 75, log[-3000:])
        result.check(
            "... and a one-line error saying MLflow is unreachable",
            len(errors) == 1 and "unreachable" in errors[0] and "Traceback" not in log,
            errors,
        )
        result.check("both trials are in results.jsonl", count_rows(runs, name) == 2)
        server.start()
        code, log = run_sweep(runs, overrides, env=env, log_name="rerun")
        result.check(
            "the rerun trains nothing and exits 0", code == 0 and "nothing to train" in log
        )
        books_check(result, runs, name, server.uri, trials=2)
        result.check("nothing went to a local sqlite store", not (runs / "mlflow.db").exists())
        _artifacts_on_server(result, server.uri, name)
    result.outcome = f"exit 75 while down; rerun reconciled {result.runs_after} runs"
    return result


def _artifacts_on_server(result: DrillResult, uri: str, name: str) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    missing = []
    for run in mlflow_runs(uri, name):
        if run.data.tags.get("voicescale.role") != "trial":
            continue
        files = {a.path for a in client.list_artifacts(run.info.run_id, "checkpoint")}
        metrics = set(run.data.metrics)
        if "checkpoint/model.safetensors" not in files or not {"val_loss", "sim"} <= metrics:
            missing.append(run.info.run_name)
    result.check("every child run has its metrics and checkpoint on the server", not missing)


# ---------------------------------------------------------------------------------------------
# A checkpoint changed on disk


def tamper(work: Path) -> DrillResult:
    result = DrillResult(
        "tampered checkpoint",
        "driver SIGKILLed mid-trial, one byte of every saved DeepSpeed checkpoint flipped",
    )
    runs, name = work / "tamper", "tamper"
    overrides = _sweep(name)
    sweep = SweepProcess(runs, overrides)
    try:
        wait_for(has_checkpoint(runs, name, KILL_CHECKPOINT_EVERY), 300, "the first checkpoint")
        sweep.kill(signal.SIGKILL)
    finally:
        sweep.end()
    targets = sorted(
        (runs / name / "trials" / TRIAL).glob("step*/engine/mp_rank_00_model_states.pt")
    )
    for target in targets:
        data = bytearray(target.read_bytes())
        data[len(data) // 2] ^= 0xFF
        target.write_bytes(bytes(data))
    result.rows_before = count_rows(runs, name)
    result.runs_before = count_runs(sqlite_uri(runs), name)
    code, _log = run_sweep(runs, overrides, extra=["--max-failures", "0"], log_name="rerun")
    row = rows(runs, name).get(TRIAL, {})
    result.check("tampered files exist", bool(targets), targets)
    result.check(
        "resume refuses the checkpoint, naming the file, and the trial is recorded failed",
        code == 1
        and row.get("status") == "failed"
        and "mp_rank_00_model_states.pt" in str(row.get("error"))
        and "sha256" in str(row.get("error")),
        f"exit {code}: {str(row.get('error'))[-800:]}",
    )
    result.rows_after = count_rows(runs, name)
    result.runs_after = count_runs(sqlite_uri(runs), name)
    named = [t.relative_to(runs / name / "trials").as_posix() for t in targets]
    refused = [n for n in named if n in str(row.get("error"))]
    result.outcome = (
        f"resume refused ({', '.join(refused) or 'no file named'}): trial failed, exit {code}"
    )
    return result


# ---------------------------------------------------------------------------------------------
# Losing a node


def node_loss(work: Path) -> DrillResult:
    from cluster.drills.nodes import node_loss as run

    return run(work, reference_loss(work), _sweep("node-loss"))


DRILLS: dict[str, Callable[[Path], DrillResult]] = {
    "diverge": diverge,
    "torn": torn,
    "kills": kills,
    "tamper": tamper,
    "outage": outage,
    "node-loss": node_loss,
}
"""In the order `make drills` runs them (`torn` reuses `diverge`'s sweep)."""
