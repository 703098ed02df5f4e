"""Errors of the evaluation package (importable without loading any judge)."""

from __future__ import annotations

__all__ = ["JudgeUnavailable", "pinned_hub_fetch"]


class JudgeUnavailable(RuntimeError):
    """A judge's weights or package cannot be found; the message says how to provide them."""


def pinned_hub_fetch(judge: str, source: str, revision: str | None, field: str):
    """speechbrain's fetch settings for a judge's `source`: None for a local directory; for a
    model-hub id, the pinned `revision` — required, so every run of a sweep (and every rerun
    a year later) judges with the same weights, whatever the hub's main branch becomes."""
    from pathlib import Path

    if Path(source).is_dir():
        return None
    if not revision:
        raise JudgeUnavailable(
            f"{judge}: {source!r} is not a local directory, so it would come from the model "
            f"hub unpinned: set {field} to the commit hash to use (or give a local directory)"
        )
    from speechbrain.utils.fetching import FetchConfig

    return FetchConfig(revision=revision, allow_updates=True)
