"""Errors of the evaluation package (importable without loading any judge)."""

from __future__ import annotations

__all__ = ["JudgeUnavailable"]


class JudgeUnavailable(RuntimeError):
    """A judge's weights or package cannot be found; the message says how to provide them."""
