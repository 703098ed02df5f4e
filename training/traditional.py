"""The traditional (non-neural) methods behind one entry point, chosen by `trial.baseline`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from training.config import TrialConfig

__all__ = ["train_traditional"]


def train_traditional(trial: TrialConfig, corpus_root: str | Path, out_dir: Path) -> dict[str, Any]:
    """Fit the trial's traditional method for its budget, export it to `out_dir`, return its
    final metrics: ridge (`training.baseline`) or unit selection (`training.concatenative`)."""
    if trial.baseline == "concatenative":
        from training.concatenative import train_concatenative

        return train_concatenative(trial, corpus_root, out_dir)
    from training.baseline import train_baseline

    return train_baseline(trial, corpus_root, out_dir)
