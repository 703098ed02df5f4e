"""The sweep's console: one line per trial start and end, a counter that never repeats a number,
a table of running trials with their step and ETA, and trial output captured into log files."""

from __future__ import annotations

import io
import re
import subprocess
import sys
import threading
from pathlib import Path

from cluster.console import SweepConsole, end_line
from store.progress import read_progress, write_progress
from store.records import ResultRow
from training.config import SweepConfig, TrialConfig, from_dict


def grid() -> dict[str, TrialConfig]:
    grid = {"model_sizes": ["xs", "s"], "data_budgets": [{"utterances": 64}], "seeds": [0]}
    sweep = from_dict(SweepConfig, {"name": "t", "grid": grid})
    return {t.name: t for t in sweep.trials()}


def row(name: str, status: str = "done", error: str | None = None) -> ResultRow:
    return ResultRow(trial=name, status=status, val_loss=1.25, sim=0.5, wer=0.25, error=error)


def console(
    trials: dict[str, TrialConfig], tmp_path: Path, **kw
) -> tuple[SweepConsole, io.StringIO]:
    out = io.StringIO()
    kw.setdefault("already_final", set())
    return SweepConsole(trials, sweep_dir=tmp_path / "t", stream=out, live=False, **kw), out


def test_one_line_per_start_and_end_and_the_counter_never_repeats(tmp_path: Path) -> None:
    trials = grid()
    names = list(trials)
    con, out = console(trials, tmp_path)
    for name in names:
        con.started(name)
    # Two trials ending at once, from two threads (Tune's callback, the tracking thread).
    threads = [threading.Thread(target=con.finished, args=(row(n),)) for n in names[:2]]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    con.finished(row(names[2], "failed", "Traceback …\nRuntimeError: worker died"))
    con.finished(row(names[2]))  # the failed trial, retried: counted once
    lines = out.getvalue().splitlines()
    starts = [line for line in lines if line.startswith("  start  ")]
    ends = [line for line in lines if line.startswith("[")]
    assert len(starts) == len(names)
    counters = [line.split("]")[0] + "]" for line in ends]
    assert counters == ["[1/3]", "[2/3]", "[3/3]", "[3/3]"]
    assert "    error: RuntimeError: worker died" in lines
    assert all(f"logs: {tmp_path}/t/trials/" in line for line in ends)


def test_trials_already_final_count_towards_the_total(tmp_path: Path) -> None:
    trials = grid()
    first, *rest = trials
    con, out = console(trials, tmp_path, already_final={first, "not-in-this-grid"})
    con.started(rest[0])
    con.finished(row(rest[0]))
    assert out.getvalue().splitlines()[-1].startswith("[2/3] ")


def test_the_table_shows_step_params_and_an_eta_from_the_step_rate(tmp_path: Path) -> None:
    trials = grid()
    name = next(n for n in trials if n.startswith("s-"))
    con, _ = console(trials, tmp_path)
    con.started(name)
    running = con._running[name]
    con.progress(name, {"step": 10, "steps": 110, "params": 55_837, "val_loss": 1.5})
    running.first_report = (100.0, 10)  # 10 steps → 20 s: 2 s a step
    con.progress(name, {"step": 20, "steps": 110, "params": 55_837})
    running.last_report = (120.0, 20)
    table = con._table_text()
    header, values = table.splitlines()[1:3]
    cells = dict(zip(header.split(), values.split(), strict=True))
    assert cells["trial"] == name and cells["size"] == "s" and cells["seed"] == "0"
    assert cells["params"] == "55.8k" and cells["budget"] == "u64"
    assert cells["step"] == "20/110" and cells["val_loss"] == "1.500"
    assert cells["status"] == "training" and cells["eta"] == "3m"  # 90 steps × 2 s
    con.progress(name, {"step": 110, "steps": 110})
    cells = dict(zip(header.split(), con._table_text().splitlines()[2].split(), strict=False))
    assert cells["status"] == "finishing" and cells["eta"] == "(up"  # judging: no ETA


def test_the_live_table_is_erased_before_a_line_and_foreign_prints_survive(
    tmp_path: Path, capsys
) -> None:
    trials = grid()
    name = next(iter(trials))
    out = io.StringIO()
    con = SweepConsole(trials, already_final=set(), sweep_dir=tmp_path, stream=out, live=True)
    with con:
        con.started(name)  # line, then the table drawn under it
        print("a warning from elsewhere")  # goes above: the table is erased first
        con.finished(row(name))
    text = out.getvalue()
    # The table is erased (cursor up, clear) before the foreign print and at exit; the end
    # line comes after the print, when no table is on screen.
    assert text.count("\x1b[J") == 2
    assert capsys.readouterr().out == "a warning from elsewhere\n"
    shown = re.sub(r"\x1b\[\d*[FJ]", "", text)
    end = next(line for line in shown.splitlines() if line.startswith("[1/3]"))
    assert end.endswith("logs: " + str(tmp_path / "trials" / name / "logs"))
    assert text.endswith("\x1b[J")  # no table left behind on exit


def test_end_line_names_the_quality_score_when_measured() -> None:
    scored = ResultRow(trial="x", status="done", sim=0.5, wer=0.25, val_loss=1.0, dnsmos=2.75)
    assert "wer 0.250 dnsmos 2.750 (0 s)" in end_line(scored, 1, 1)
    assert "dnsmos" not in end_line(row("x"), 1, 1)


def test_end_line_without_metrics_uses_dashes() -> None:
    line = end_line(ResultRow(trial="x", status="failed", error="boom"), 1, 2)
    assert "val_loss – sim – wer –" in line and line.endswith("error: boom")


def test_progress_file_keeps_its_start_and_last_numbers(tmp_path: Path) -> None:
    write_progress(tmp_path, "s-u64-seed0")
    started = read_progress(tmp_path)
    assert started is not None and started["step"] is None
    write_progress(tmp_path, "s-u64-seed0", {"step": 10, "steps": 20, "val_loss": float("nan")})
    write_progress(tmp_path, "s-u64-seed0", {"step": 20, "train_loss": 1.2})
    record = read_progress(tmp_path)
    assert record is not None
    assert record["started_at"] == started["started_at"]
    assert (record["step"], record["steps"], record["val_loss"]) == (20, 20, None)
    assert record["train_loss"] == 1.2


CAPTURE = """
import os, subprocess, sys
from training.trial_log import TrialLog, captured_output
log = TrialLog(sys.argv[1], echo=sys.argv[2] == "echo")
for attempt in ("first", "second"):
    with captured_output(log, "rank0"):
        print(f"{attempt}: from python")
        os.write(2, f"{attempt}: from the fd\\n".encode())
        subprocess.run(["sh", "-c", f"echo {attempt}: from a child"], check=True)
print("back on the console")
with captured_output(None, "rank0") as path:
    print(f"no log: {path}")
"""


def run_capture(tmp_path: Path, mode: str) -> tuple[str, str]:
    """The capture in a process of its own: fds 1 and 2 are really its stdout and stderr."""
    done = subprocess.run(
        [sys.executable, "-c", CAPTURE, str(tmp_path / "logs"), mode],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    return done.stdout + done.stderr, (tmp_path / "logs" / "rank0.log").read_text()


def test_captured_output_takes_python_fd_and_child_output_and_appends(tmp_path: Path) -> None:
    console_text, log_text = run_capture(tmp_path, "quiet")
    expected = [
        f"{a}: from {w}" for a in ("first", "second") for w in ("python", "the fd", "a child")
    ]
    assert log_text.splitlines() == expected
    assert console_text.splitlines() == ["back on the console", "no log: None"]


def test_captured_output_echoes_to_the_console_with_verbose(tmp_path: Path) -> None:
    console_text, log_text = run_capture(tmp_path, "echo")
    assert len(log_text.splitlines()) == 6
    assert sorted(console_text.splitlines()[:6]) == sorted(log_text.splitlines())
    assert console_text.splitlines()[6:] == ["back on the console", "no log: None"]
