"""Where a running trial is: `trials/<trial>/progress.json`, written by the sweep's driver when
the trial starts and at each of its training reports, read by `voicescale status`.

Written whole and renamed into place, so a reader never sees half a file.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

__all__ = ["read_progress", "write_progress"]

PROGRESS_NAME = "progress.json"
PROGRESS_KEYS = ("step", "steps", "val_loss", "train_loss")


def write_progress(trial_dir: Path, trial: str, metrics: dict[str, Any] | None = None) -> None:
    """Record that `trial` started (no `metrics`) or reported `metrics` (a training report)."""
    path = trial_dir / PROGRESS_NAME
    now = time.time()
    record = read_progress(trial_dir) if metrics else None
    if record is None:
        record = {"trial": trial, "started_at": now, **dict.fromkeys(PROGRESS_KEYS)}
    for key in PROGRESS_KEYS:
        value = (metrics or {}).get(key)
        if isinstance(value, (int, float)) and math.isfinite(value):
            record[key] = value
    record["updated_at"] = now
    trial_dir.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".json.partial")
    partial.write_text(json.dumps(record) + "\n")
    os.replace(partial, path)


def read_progress(trial_dir: Path) -> dict[str, Any] | None:
    """The trial's last progress record, or None (never started, or unreadable)."""
    try:
        record = json.loads((trial_dir / PROGRESS_NAME).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None
