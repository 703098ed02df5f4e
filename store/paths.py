"""Where a sweep keeps things, all under `runs/<sweep>/`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["SweepPaths"]


@dataclass(frozen=True)
class SweepPaths:
    """The files and folders of one sweep directory."""

    root: Path

    @property
    def results(self) -> Path:
        return self.root / "results.jsonl"

    @property
    def trials(self) -> Path:
        """Ray Train storage: one directory per trial (checkpoints, export, evaluation)."""
        return self.root / "trials"

    @property
    def tune(self) -> Path:
        return self.root / "tune"

    @property
    def sweep_record(self) -> Path:
        """The config the last run planned from, and who ran it (`scaling.sweep`)."""
        return self.root / "sweep.json"

    @property
    def fits(self) -> Path:
        return self.root / "fits.json"

    def trial_dir(self, name: str) -> Path:
        return self.trials / name

    def outcome(self, name: str) -> Path:
        """What the trial produced, written by the trial itself before it reports back."""
        return self.trial_dir(name) / "outcome.json"
