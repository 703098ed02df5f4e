"""What the sweep prints while it runs: a line when a trial starts, a line when it ends (with
its numbers and where its logs are), and — on a terminal — a live table of the running trials,
redrawn in place at the bottom of the screen.

Everything else a trial's processes say goes to its own log files (`training.trial_log`);
`voicescale sweep -v` echoes them here as well. Redirected to a file, the console is the start
and end lines plus, every `quiet_table_s`, one compact table: a log of a long sweep still shows
that it is alive without growing by a table a second.
"""

from __future__ import annotations

import math
import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from store.records import ResultRow
from training.config import TrialConfig

__all__ = ["SweepConsole", "end_line", "format_table"]

LIVE_REFRESH_S = 2.0
QUIET_TABLE_S = 900.0
"""Without a terminal, how often the table of running trials is printed (seconds)."""

COLUMNS = ("trial", "size", "params", "budget", "seed", "step", "val_loss", "status", "eta")


@dataclass
class RunningTrial:
    """What the console knows of a trial that has started and not yet ended."""

    config: TrialConfig
    started_at: float
    step: int | None = None
    steps: int | None = None
    params: int | None = None
    val_loss: float | None = None
    first_report: tuple[float, int] | None = None
    """(time, step) of its first training report: the step rate is measured from there, so
    the minutes spent starting workers do not count as training."""
    last_report: tuple[float, int] | None = None

    def eta_s(self) -> float | None:
        """Seconds of training left at the measured step rate (None before two reports)."""
        if not (self.first_report and self.last_report and self.steps):
            return None
        (t0, s0), (t1, s1) = self.first_report, self.last_report
        if s1 <= s0:
            return None
        return (self.steps - s1) * (t1 - t0) / (s1 - s0)

    @property
    def phase(self) -> str:
        """starting (no training report yet), training, or finishing (the last step is
        reported: exporting, then judging the export)."""
        if self.step is None:
            return "starting"
        return "finishing" if self.steps and self.step >= self.steps else "training"

    def cells(self, now: float) -> dict[str, str]:
        t = self.config
        step = f"{self.step}/{self.steps}" if self.step is not None and self.steps else "–"
        eta = self.eta_s()
        up = f"(up {_duration(now - self.started_at)})"
        return {
            "trial": t.name,
            "size": t.family,
            "params": _si(self.params),
            "budget": t.data.budget.label,
            "seed": str(t.seed),
            "step": step,
            "val_loss": f"{self.val_loss:.3f}" if self.val_loss is not None else "–",
            "status": self.phase,
            "eta": _duration(eta) if eta and self.phase == "training" else up,
        }


class SweepConsole:
    """The sweep's console. Thread-safe: Tune's callbacks and the tracking thread call it."""

    def __init__(
        self,
        trials: dict[str, TrialConfig],
        *,
        already_final: set[str],
        sweep_dir: Path,
        stream: TextIO | None = None,
        live: bool | None = None,
        quiet_table_s: float = QUIET_TABLE_S,
    ) -> None:
        self.trials = trials
        self.sweep_dir = sweep_dir
        self.stream = stream or sys.stdout
        self.live = self.stream.isatty() if live is None else live
        self.quiet_table_s = quiet_table_s
        self._ended = {n for n in already_final if n in trials}
        self._running: dict[str, RunningTrial] = {}
        self._lock = threading.RLock()
        self._drawn = 0  # lines of the live table now on screen
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_table = time.monotonic()

    # -- events -------------------------------------------------------------------------------

    def started(self, name: str) -> None:
        with self._lock:
            self._running[name] = RunningTrial(self.trials[name], time.time())
            self._say(f"  start  {name}  ({self._count_text()})")

    def progress(self, name: str, metrics: dict[str, Any]) -> None:
        with self._lock:
            trial = self._running.get(name)
            step = metrics.get("step")
            if trial is None or not isinstance(step, int) or metrics.get("final"):
                return
            now = time.time()
            trial.step, trial.last_report = step, (now, step)
            trial.first_report = trial.first_report or (now, step)
            trial.steps = _int(metrics.get("steps")) or trial.steps
            trial.params = _int(metrics.get("params")) or trial.params
            if _finite(metrics.get("val_loss")):
                trial.val_loss = float(metrics["val_loss"])

    def finished(self, row: ResultRow) -> None:
        """The trial's end line: `[k/N]` counts each trial of the grid once, however many
        times it ended (a failed trial retried later is not counted again)."""
        with self._lock:
            self._running.pop(row.trial, None)
            self._ended.add(row.trial)
            logs = self._logs(row.trial)
            self._say(end_line(row, len(self._ended), len(self.trials), logs))

    def say(self, text: str) -> None:
        """Print `text` above the live table."""
        with self._lock:
            self._say(text)

    # -- the live table -----------------------------------------------------------------------

    def __enter__(self) -> SweepConsole:
        if self.live:  # what others print must not land inside (and be erased with) the table
            self._saved = sys.stdout, sys.stderr
            sys.stdout, sys.stderr = _Above(self, sys.stdout), _Above(self, sys.stderr)
        self._thread = threading.Thread(target=self._refresh, name="sweep-console", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with self._lock:
            self._erase()
            if self.live:
                sys.stdout, sys.stderr = self._saved

    def write_above(self, stream: TextIO, text: str) -> None:
        """Another writer's text: the table goes, the text stays; the table comes back at the
        next refresh."""
        with self._lock:
            self._erase()
            stream.write(text)
            stream.flush()

    def _refresh(self) -> None:
        while not self._stop.wait(LIVE_REFRESH_S):
            with self._lock:
                if self.live:
                    self._erase()
                    self._draw()
                elif time.monotonic() - self._last_table >= self.quiet_table_s and self._running:
                    self._last_table = time.monotonic()
                    self._write(self._table_text() + "\n")

    def _table_text(self) -> str:
        now = time.time()
        rows = [t.cells(now) for t in self._running.values()]
        head = f"  {time.strftime('%H:%M:%S')} · {self._count_text()}"
        return head + ("\n" + format_table(rows) if rows else "")

    def _draw(self) -> None:
        text = self._table_text()
        width = _terminal_width()
        lines = [line[:width] for line in text.splitlines()]
        self._write("\n".join(lines) + "\n")
        self._drawn = len(lines)

    def _erase(self) -> None:
        if self._drawn:
            # Up to the table's first line, then clear to the end of the screen.
            self._write(f"\x1b[{self._drawn}F\x1b[J")
            self._drawn = 0

    def _say(self, text: str) -> None:
        self._erase()
        self._write(text + "\n")
        if self.live and not self._stop.is_set():
            self._draw()

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()

    def _count_text(self) -> str:
        return f"{len(self._ended)}/{len(self.trials)} ended, {len(self._running)} running"

    def _logs(self, name: str) -> str:
        path = self.sweep_dir / "trials" / name / "logs"
        relative = os.path.relpath(path)
        return str(path) if relative.startswith("..") else relative


class _Above:
    """sys.stdout / sys.stderr while the live table is on screen (see `write_above`)."""

    def __init__(self, console: SweepConsole, stream: TextIO) -> None:
        self._console, self._stream = console, stream

    def write(self, text: str) -> int:
        self._console.write_above(self._stream, text)
        return len(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def end_line(row: ResultRow, ended: int, total: int, logs: str | None = None) -> str:
    """`[k/N] trial status val_loss … sim … wer … [dnsmos …] (s)`, then the error's last line
    if any."""

    def metric(key: str) -> str:
        value = row.metric(key)
        return f"{value:.3f}" if isinstance(value, float) else "–"

    seconds = row.wall_seconds or 0
    text = (
        f"[{ended}/{total}] {row.trial:<22} {row.status:<8} val_loss {metric('val_loss')} "
        f"sim {metric('sim')} wer {metric('wer')}"
    )
    for quality in ("dnsmos", "utmos"):  # the perceptual scores the evaluation measured
        if row.metric(quality) is not None:
            text += f" {quality} {metric(quality)}"
    text += f" ({seconds:.0f} s)"
    if logs:
        text += f" logs: {logs}"
    if row.error:
        text += f"\n    error: {str(row.error).splitlines()[-1][:300]}"
    return text


def format_table(rows: list[dict[str, str]]) -> str:
    """The running trials as aligned columns (`COLUMNS`)."""
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in COLUMNS}
    lines = ["  " + "  ".join(c.ljust(widths[c]) for c in COLUMNS)]
    lines += ["  " + "  ".join(r[c].ljust(widths[c]) for c in COLUMNS) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


def _terminal_width() -> int:
    try:
        columns = os.get_terminal_size().columns
    except OSError:
        columns = 0
    return columns if columns > 20 else 120  # 0 where the terminal does not say (script, CI)


def _si(n: int | None) -> str:
    if not n:
        return "–"
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g}{unit}"
    return str(n)


def _duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 5400:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and _finite(value) else None


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)
