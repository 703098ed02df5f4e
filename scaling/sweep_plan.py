"""The sweep's plan: which trials of the grid run now, and why the others do not."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from store.outcome import read_outcome
from store.paths import SweepPaths
from store.records import FINAL_STATUSES
from store.results_file import ResultsError, load_results
from training.config import SweepConfig, TrialConfig, config_hash

__all__ = ["SweepPlan", "plan_sweep"]


@dataclass(frozen=True)
class SweepPlan:
    """Which trials of the grid run now, and why the others do not."""

    sweep: SweepConfig
    paths: SweepPaths
    trials: list[TrialConfig]
    actions: dict[str, str]
    """trial name → "skip (done)", "skip (diverged)", "run", "resume", "retry (failed)",
    "record (finished)"."""

    @property
    def pending(self) -> list[TrialConfig]:
        return [t for t in self.trials if not self.actions[t.name].startswith("skip")]


def plan_sweep(sweep: SweepConfig, runs_dir: Path) -> SweepPlan:
    """Compare the grid with results.jsonl. A row made from a different configuration of the
    same trial name is an error: mixing them would corrupt the curves."""
    paths = SweepPaths(runs_dir / sweep.name)
    rows = load_results(paths.results)
    trials = sweep.trials()
    actions = {}
    for trial in trials:
        row = rows.get(trial.name)
        if row is not None and row.config_hash not in (None, config_hash(trial)):
            raise ResultsError(
                f"{paths.results}: trial {trial.name} was run with a different configuration "
                f"(config_hash {row.config_hash}, now {config_hash(trial)}); give the "
                "sweep a new name, or delete that row to run it again"
            )
        outcome = read_outcome(paths.outcome(trial.name))
        if row is not None and row.final:
            actions[trial.name] = f"skip ({row.status})"
        elif outcome is not None and outcome.status in FINAL_STATUSES:
            actions[trial.name] = "record (finished)"
        elif row is not None:
            actions[trial.name] = f"retry ({row.status})"
        elif paths.trial_dir(trial.name).exists():
            actions[trial.name] = "resume"
        else:
            actions[trial.name] = "run"
    return SweepPlan(sweep, paths, trials, actions)
