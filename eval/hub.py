"""Judges from a model hub: only at a pinned revision."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from eval.errors import JudgeUnavailable

if TYPE_CHECKING:
    from speechbrain.utils.fetching import FetchConfig

__all__ = ["pinned_hub_fetch"]


def pinned_hub_fetch(
    judge: str, source: str, revision: str | None, field: str
) -> FetchConfig | None:
    """speechbrain's fetch settings for a judge's `source`: None for a local directory; for a
    model-hub id, the pinned `revision` — required, so every run of a sweep (and every rerun
    a year later) judges with the same weights, whatever the hub's main branch becomes."""
    if Path(source).is_dir():
        return None
    if not revision:
        raise JudgeUnavailable(
            f"{judge}: {source!r} is not a local directory, so it would come from the model "
            f"hub unpinned: set {field} to the commit hash to use (or give a local directory)"
        )
    from speechbrain.utils.fetching import FetchConfig

    return FetchConfig(revision=revision, allow_updates=True)
