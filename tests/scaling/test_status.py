"""`voicescale status`: a finished, an interrupted and a running sweep, a sweep directory from
before sweep.json, and the command line. The driver's files (sweep.json, progress.json, the
runs directory's lock) are written here by hand: no Ray, no MLflow, no training."""

from __future__ import annotations

import argparse
import json
import os
import socket
import time
from pathlib import Path

import pytest

from scaling.status import SweepStatus, add_status_parser, sweep_status
from store.outcome import TrialOutcome, write_outcome
from store.records import ResultRow
from store.runs_lock import LOCK_NAME, lock_holder, runs_dir_lock
from training.config import DataBudget, SweepConfig, SweepGrid, TrialConfig, config_hash, to_dict

NOW = time.time()
SIM = {"xs": 0.60, "s": 0.70}
XS64, S64, XS128, S128, XS256, S256 = (
    f"{size}-u{u}-seed0" for u in (64, 128, 256) for size in ("xs", "s")
)


def make_sweep(max_concurrent: int | None = None) -> SweepConfig:
    """Six trials: xs and s at 64, 128 and 256 utterances (budget-major, as the grid runs)."""
    grid = SweepGrid(
        model_sizes=("xs", "s"),
        data_budgets=tuple(DataBudget(utterances=u) for u in (64, 128, 256)),
        seeds=(0,),
        baseline=False,
    )
    return SweepConfig(name="st", grid=grid, max_concurrent_trials=max_concurrent)


def trials(sweep: SweepConfig) -> dict[str, TrialConfig]:
    return {t.name: t for t in sweep.trials()}


def done_row(sweep_dir: Path, trial: TrialConfig, status: str = "done", **extra) -> ResultRow:
    """A finished trial's row: train time ∝ its budget, its export on disk, an MLflow run."""
    u = trial.data.budget.utterances
    export = sweep_dir / "trials" / trial.name / "export"
    export.mkdir(parents=True, exist_ok=True)
    sim = SIM[trial.family] + u / 10_000
    values = dict(
        trial=trial.name,
        model_size=trial.family,
        params=1000 if trial.family == "xs" else 4000,
        data_utterances=u,
        seed=0,
        steps=20,
        train_flops=1e9 * u,
        val_loss=1.0,
        sim=sim,
        sim_ci=(sim - 0.01, sim + 0.01),
        wer=0.1,
        status=status,
        checkpoint=f"trials/{trial.name}/export",
        mlflow_run_id=f"run-{trial.name}",
        train_seconds=float(u),
        eval_seconds=5.0,
        wall_seconds=u + 10.0,
        budget=trial.data.budget.label,
        config_hash=config_hash(trial),
        finished_at=NOW - 500,
    )
    return ResultRow(**{**values, **extra})


def write_sweep(
    runs: Path, sweep: SweepConfig, rows: list[ResultRow], *, started_at: float = NOW - 200
) -> Path:
    """runs/<sweep>/ with sweep.json and results.jsonl, as the driver leaves them."""
    sweep_dir = runs / sweep.name
    sweep_dir.mkdir(parents=True, exist_ok=True)
    record = {"config": to_dict(sweep), "started_at": started_at, "pid": 1, "host": "h"}
    (sweep_dir / "sweep.json").write_text(json.dumps(record))
    write_rows(sweep_dir, rows)
    return sweep_dir


def write_rows(sweep_dir: Path, rows: list[ResultRow]) -> None:
    (sweep_dir / "results.jsonl").write_text("".join(json.dumps(r.to_json()) + "\n" for r in rows))


def write_progress(sweep_dir: Path, trial: str, *, started: float, step: int, steps: int) -> None:
    directory = sweep_dir / "trials" / trial
    directory.mkdir(parents=True, exist_ok=True)
    progress = {
        "trial": trial,
        "started_at": started,
        "updated_at": started + 10,
        "step": step,
        "steps": steps,
        "val_loss": None,
        "train_loss": 1.5,
    }
    (directory / "progress.json").write_text(json.dumps(progress))


def four_done(sweep_dir: Path, sweep: SweepConfig) -> list[ResultRow]:
    """The 64- and 128-utterance trials done: two timed budgets per family."""
    by_name = trials(sweep)
    return [done_row(sweep_dir, by_name[n]) for n in (XS64, S64, XS128, S128)]


def by_trial(status: SweepStatus) -> dict[str, object]:
    return {t.trial: t for t in status.trials}


# ---------------------------------------------------------------------------------------------
# The three states


def test_finished_sweep_has_nothing_left_and_names_its_champion(tmp_path: Path) -> None:
    sweep = make_sweep()
    sweep_dir = tmp_path / "runs" / sweep.name
    by_name = trials(sweep)
    rows = [done_row(sweep_dir, t) for t in by_name.values() if t.name != XS256]
    rows.append(done_row(sweep_dir, by_name[XS256], status="diverged", sim=None, sim_ci=None))
    write_sweep(tmp_path / "runs", sweep, rows)

    status = sweep_status(sweep_dir, now=NOW)

    assert status.state == "finished" and status.plan_known
    assert status.counts == {
        "done": 5,
        "diverged": 1,
        "failed": 0,
        "running": 0,
        "unfinished": 0,
        "pending": 0,
        "planned": 6,
    }
    assert status.trials == [] and status.pending == []
    assert status.left.trials == 0 and status.left.seconds == 0.0 and status.left.why is None
    assert status.spent_seconds == pytest.approx(sum(r.wall_seconds for r in rows))
    assert status.spent_flops == pytest.approx(sum(r.train_flops for r in rows))
    champion = status.champion
    assert (champion.trial, champion.metric) == (S256, "sim")
    assert champion.value == pytest.approx(0.7256)
    assert champion.interval == pytest.approx((0.7156, 0.7356))
    assert not status.lock.held and not status.lock.stale
    text = status.text()
    assert "st" in text and ": finished" in text and "left:  nothing" in text
    assert f"champion: {S256}, sim 0.7256 [0.7156, 0.7356]" in text


def test_finished_with_failures_lists_each_failed_trial_with_its_error(tmp_path: Path) -> None:
    sweep = make_sweep()
    sweep_dir = tmp_path / "runs" / sweep.name
    by_name = trials(sweep)
    rows = [done_row(sweep_dir, t) for t in by_name.values() if t.name != S256]
    error = "Traceback (most recent call last):\n  ...\nRuntimeError: CUDA out of memory\n"
    rows.append(ResultRow(trial=S256, status="failed", error=error, wall_seconds=30.0))
    write_sweep(tmp_path / "runs", sweep, rows)

    status = sweep_status(sweep_dir, metric="wer", now=NOW)

    assert status.state == "finished with failures"
    (failed,) = status.trials
    assert (failed.trial, failed.status, failed.error) == (
        S256,
        "failed",
        "RuntimeError: CUDA out of memory",
    )
    assert status.left.trials == 1 and status.left.seconds > 0  # the retry's cost
    assert status.champion.metric == "wer" and status.champion.trial == XS64  # ties: first
    assert "RuntimeError: CUDA out of memory" in status.text()


def test_interrupted_sweep_lists_the_unfinished_trial_and_estimates_the_rest(
    tmp_path: Path,
) -> None:
    sweep = make_sweep(max_concurrent=3)
    runs = tmp_path / "runs"
    sweep_dir = runs / sweep.name
    write_sweep(runs, sweep, four_done(sweep_dir, sweep))
    write_progress(sweep_dir, XS256, started=NOW - 100, step=12, steps=20)
    dead = {"sweep": "st", "pid": 999_999_999, "host": socket.gethostname(), "started": "x"}
    (runs / LOCK_NAME).write_text(json.dumps(dead))

    status = sweep_status(sweep_dir, now=NOW)

    assert status.state == "interrupted"
    assert (status.counts["done"], status.counts["unfinished"], status.counts["pending"]) == (
        4,
        1,
        1,
    )
    (unfinished,) = status.trials
    assert (unfinished.trial, unfinished.status, unfinished.step, unfinished.steps) == (
        XS256,
        "unfinished",
        12,
        20,
    )
    assert unfinished.age_seconds == pytest.approx(90)
    assert status.pending == [S256]
    assert status.lock.stale and not status.lock.held
    assert any("died holding the lock" in n for n in status.notes)
    left = status.left
    assert left.why is None and left.trials == 2 and left.without_estimate == {}
    # Each family's train seconds are its budget (D^1), plus eval 5 s and other 5 s.
    assert left.seconds == pytest.approx(2 * (256 + 10), rel=1e-6)
    assert left.flops == pytest.approx(2 * 256e9, rel=1e-6)
    assert (left.concurrency, left.concurrency_from) == (3, "max_concurrent_trials")
    assert left.wall_seconds == pytest.approx(266, rel=1e-6)  # the longest trial, not sum / 3
    text = status.text()
    assert f"unfinished {XS256}" in text and "step 12/20" in text and "updated 2 min ago" in text
    assert "1 unfinished, 1 pending (of 6 planned)" in text


def test_running_sweep_shows_its_running_trials_step(tmp_path: Path) -> None:
    sweep = make_sweep()
    runs = tmp_path / "runs"
    sweep_dir = runs / sweep.name
    rows = four_done(sweep_dir, sweep)
    rows[3] = ResultRow(trial=S128, status="failed", error="boom", finished_at=NOW - 150)
    write_sweep(runs, sweep, rows, started_at=NOW - 200)
    write_progress(sweep_dir, XS256, started=NOW - 60, step=5, steps=20)  # this run's
    write_progress(sweep_dir, S128, started=NOW - 100, step=2, steps=20)  # its retry, now
    write_progress(sweep_dir, S256, started=NOW - 5000, step=9, steps=20)  # an earlier run's

    with runs_dir_lock(runs, sweep.name):
        assert lock_holder(runs)[0]
        status = sweep_status(sweep_dir, now=NOW)
    assert lock_holder(runs) == (False, None)

    assert status.state == "running" and status.lock.running
    assert status.lock.holder["pid"] == os.getpid()
    running = by_trial(status)
    assert set(running) == {XS256, S128}
    assert (running[XS256].status, running[XS256].step, running[XS256].steps) == ("running", 5, 20)
    assert running[S128].status == "running"
    assert status.pending == [S256]  # waits to be resumed by this run
    assert status.counts["running"] == 2 and status.counts["failed"] == 0
    assert status.spent_seconds == pytest.approx(sum(r.wall_seconds or 0 for r in rows) + 160)
    left = status.left
    assert left.trials == 3 and left.why is None
    # Family s has one timed budget left (its 128 failed): no estimate for its two trials.
    assert left.without_estimate == {
        S128: "fewer than 2 budgets of family s timed",
        S256: "fewer than 2 budgets of family s timed",
    }
    assert left.seconds == pytest.approx(266 - 60, rel=1e-6)  # less its elapsed time
    assert left.flops == pytest.approx(256e9 * (1 - 5 / 20), rel=1e-6)  # less its steps done
    text = status.text()
    assert f"running (pid {os.getpid()} on" in text
    assert f"running    {XS256}" in text and "step 5/20" in text
    assert "for 1 of 3 trial(s)" in text and f"no estimate for {S128} (fewer than 2" in text


def test_another_sweep_holding_the_runs_directory_is_not_this_one_running(
    tmp_path: Path,
) -> None:
    sweep = make_sweep()
    runs = tmp_path / "runs"
    sweep_dir = write_sweep(runs, sweep, four_done(runs / sweep.name, sweep))
    with runs_dir_lock(runs, "other"):
        status = sweep_status(sweep_dir, now=NOW)
    assert status.state == "interrupted" and status.lock.held and not status.lock.running
    assert any("in use by sweep 'other'" in n for n in status.notes)


# ---------------------------------------------------------------------------------------------
# Older sweep directories, nothing measured, not a sweep


def test_sweep_without_sweep_json_says_the_plan_is_unknown(tmp_path: Path) -> None:
    sweep = make_sweep()
    sweep_dir = tmp_path / "runs" / sweep.name
    sweep_dir.mkdir(parents=True)
    write_rows(sweep_dir, four_done(sweep_dir, sweep))
    (sweep_dir / "trials" / XS256).mkdir(parents=True)  # started; no progress.json then

    status = sweep_status(sweep_dir, now=NOW)

    assert not status.plan_known and status.state == "interrupted"
    assert status.counts["planned"] == 5 and status.counts["unfinished"] == 1
    assert [t.trial for t in status.trials] == [XS256]
    assert "plan is unknown" in (status.left.why or "")
    assert status.champion.trial == S128
    text = status.text()
    assert "(plan unknown)" in text and "left:  no estimate: the plan is unknown" in text


def test_nothing_measured_yet_gives_no_estimate(tmp_path: Path) -> None:
    sweep_dir = write_sweep(tmp_path / "runs", make_sweep(), [])
    status = sweep_status(sweep_dir, now=NOW)
    assert status.state == "interrupted" and status.counts["pending"] == 6
    assert status.left.why == "no trial measured yet"
    assert status.left.concurrency == 2 and status.left.concurrency_from.startswith("assumed")
    assert status.champion.trial is None and status.champion.why == "no trial recorded yet"
    assert "left:  no estimate: no trial measured yet" in status.text()


def test_a_finished_trial_the_driver_did_not_record_is_unfinished(tmp_path: Path) -> None:
    sweep = make_sweep()
    runs = tmp_path / "runs"
    sweep_dir = write_sweep(runs, sweep, four_done(runs / sweep.name, sweep))
    write_outcome(sweep_dir / "trials" / XS256 / "outcome.json", TrialOutcome(XS256, "done"))
    error = TrialOutcome(S256, "failed", error="ValueError: no\nOSError: disk full")
    write_outcome(sweep_dir / "trials" / S256 / "outcome.json", error)

    status = sweep_status(sweep_dir, now=NOW)

    assert status.state == "interrupted"
    xs, s = status.trials
    assert (xs.trial, xs.status, xs.note) == (
        XS256,
        "unfinished",
        "finished (outcome.json) but not recorded: the next run records it",
    )
    assert (s.trial, s.status, s.error) == (S256, "unfinished", "OSError: disk full")


def test_a_torn_last_row_is_left_out_with_a_note(tmp_path: Path) -> None:
    sweep = make_sweep()
    runs = tmp_path / "runs"
    sweep_dir = write_sweep(runs, sweep, four_done(runs / sweep.name, sweep))
    with (sweep_dir / "results.jsonl").open("a") as f:
        f.write('{"trial": "xs-u256-seed0", "sta')  # a write under way
    before = sorted(p.name for p in sweep_dir.iterdir())

    status = sweep_status(sweep_dir, now=NOW)

    assert status.counts["done"] == 4 and status.counts["pending"] == 2
    assert [n for n in status.notes if "torn" in n] == [
        f"{sweep_dir / 'results.jsonl'}: its last line is torn (being written, or cut off); "
        "left out"
    ]
    assert sorted(p.name for p in sweep_dir.iterdir()) == before  # read only


# ---------------------------------------------------------------------------------------------
# Command line


def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="voicescale")
    add_status_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.handler(args)


def test_json_output_parses_with_stable_keys(tmp_path: Path, capsys) -> None:
    sweep = make_sweep()
    runs = tmp_path / "runs"
    sweep_dir = write_sweep(runs, sweep, four_done(runs / sweep.name, sweep))
    write_progress(sweep_dir, XS256, started=NOW - 100, step=12, steps=20)

    assert run_cli(["status", str(sweep_dir), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)

    assert list(data) == [
        "sweep",
        "path",
        "state",
        "plan_known",
        "counts",
        "trials",
        "pending",
        "spent_seconds",
        "spent_flops",
        "left",
        "champion",
        "lock",
        "notes",
        "checked_at",
    ]
    assert data["state"] == "interrupted" and data["pending"] == [S256]
    assert data["trials"][0] == {
        "trial": XS256,
        "status": "unfinished",
        "step": 12,
        "steps": 20,
        "updated_at": pytest.approx(NOW - 90),
        # The command line reads the clock: NOW was taken when this module was collected.
        "age_seconds": pytest.approx(time.time() - (NOW - 90), abs=60),
        "error": None,
        "note": None,
    }
    assert set(data["left"]) == {
        "trials",
        "seconds",
        "wall_seconds",
        "flops",
        "concurrency",
        "concurrency_from",
        "without_estimate",
        "why",
    }
    # No cap configured: the four rows ran at the same time, so 4 at once.
    assert (data["left"]["concurrency"], data["left"]["concurrency_from"]) == (
        4,
        "the most trials run at once so far",
    )
    assert set(data["champion"]) == {"metric", "trial", "value", "interval", "why"}
    assert set(data["lock"]) == {"held", "holder", "running", "stale", "notes"}


def test_cli_prints_the_human_block_and_exits_0(tmp_path: Path, capsys) -> None:
    sweep_dir = write_sweep(tmp_path / "runs", make_sweep(), [])
    assert run_cli(["status", str(sweep_dir)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("sweep st (") and "0 done" in out and "6 pending" in out


def test_cli_exits_2_naming_a_directory_that_is_not_a_sweep(tmp_path: Path, capsys) -> None:
    missing = tmp_path / "runs" / "nope"
    assert run_cli(["status", str(missing)]) == 2
    err = capsys.readouterr().err
    assert str(missing) in err and "not a sweep directory" in err


def test_cli_exits_2_on_a_broken_results_file(tmp_path: Path, capsys) -> None:
    sweep_dir = write_sweep(tmp_path / "runs", make_sweep(), [])
    (sweep_dir / "results.jsonl").write_text('{"trial": "a"}\n')
    assert run_cli(["status", str(sweep_dir)]) == 2
    assert "results.jsonl:1: a row needs 'trial' and 'status'" in capsys.readouterr().err
