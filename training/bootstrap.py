"""Bootstrap intervals for evaluation's statistics: the speaker-clustered two-stage bootstrap
(resample voices, then utterances within each drawn voice) and the plain utterance bootstrap it
reduces to for a single voice. numpy only."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "CI_METHOD",
    "ClusteredResamples",
    "bootstrap_ci",
    "clustered_bootstrap_ci",
    "clustered_resamples",
]

CI_METHOD = "speaker-clustered bootstrap (voices, then utterances)"
"""How `sim_ci`, `wer_ci` and `val_loss_ci` (and the ceilings' intervals) are computed."""


def bootstrap_ci(
    n: int,
    statistic: Callable[[np.ndarray], float],
    resamples: int,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile interval of `statistic(indices)` over resamples of range(n): the plain
    utterance bootstrap, every item an independent draw. Evaluation's intervals come from
    `clustered_bootstrap_ci`; this is the reference it reduces to for a single speaker."""
    if n == 0:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    values = [statistic(rng.integers(0, n, n)) for _ in range(resamples)]
    return _percentile_interval(np.asarray(values, dtype=float), level)


@dataclass(frozen=True)
class ClusteredResamples:
    """Bootstrap replicates of a clustered sample, as index arrays of shape
    (replicates, clusters, largest cluster): replicate r is the items
    `indices[r][valid[r]]` (with repeats). Slots beyond a drawn cluster's size are padding
    (`valid` False); they hold real indices so that gathering through them is safe."""

    indices: np.ndarray
    valid: np.ndarray

    def ratio_interval(
        self, numerators: np.ndarray, denominators: np.ndarray, level: float = 0.95
    ) -> tuple[float, float]:
        """Percentile interval of Σ numerators / Σ denominators over the replicates."""
        return _percentile_interval(
            self.ratios(np.asarray(numerators, float), np.asarray(denominators, float)), level
        )

    def ratios(self, numerators: np.ndarray, denominators: np.ndarray) -> np.ndarray:
        """Σ numerators / Σ denominators of each replicate. Padding adds exactly 0 (an
        infinite numerator is not multiplied by 0), so an infinite loss drawn into a
        replicate makes it infinite, as it does the point estimate; 0/0 is NaN."""
        if self.indices.size == 0:
            return np.zeros(0)
        top = np.where(self.valid, numerators[self.indices], 0.0).sum(axis=(1, 2))
        bottom = np.where(self.valid, denominators[self.indices], 0.0).sum(axis=(1, 2))
        with np.errstate(divide="ignore", invalid="ignore"):
            return top / bottom


def clustered_resamples(
    clusters: Sequence[str], resamples: int, seed: int = 0
) -> ClusteredResamples:
    """Two-stage bootstrap replicates of items labelled by `clusters` (here: each
    utterance's held-out speaker). Each replicate draws as many clusters as there are, with
    replacement, then, within each drawn cluster, as many of its items as it has, with
    replacement. Drawn at once (no Python loop over replicates) from
    `numpy.random.default_rng(seed)`: the same labels and seed give the same replicates.

    With a single cluster this is the plain (utterance) bootstrap; with every item its own
    cluster it is the plain bootstrap too, one level up. Resampling at both stages counts
    the within-cluster spread twice: when clusters do not differ at all the interval is
    conservative, up to about √2 wider than needed (Davison & Hinkley 1997, §3.8); when they
    do differ, the between-cluster spread it captures dominates."""
    labels = np.unique(np.asarray(clusters, dtype=str), return_inverse=True)[1].reshape(-1)
    sizes = np.bincount(labels)
    if len(labels) == 0 or resamples <= 0:
        empty = np.zeros((0, 0, 0), dtype=np.int64)
        return ClusteredResamples(empty, empty.astype(bool))
    members = np.argsort(labels, kind="stable")  # items grouped by cluster, in input order
    starts = np.cumsum(sizes) - sizes
    rng = np.random.default_rng(seed)
    drawn = rng.integers(0, len(sizes), size=(resamples, len(sizes)))  # stage 1: clusters
    drawn_sizes = sizes[drawn][..., None]
    slots = (resamples, len(sizes), int(sizes.max()))
    within = rng.integers(0, drawn_sizes, size=slots)  # stage 2: items of each drawn cluster
    indices = members[starts[drawn][..., None] + within]
    valid = np.arange(slots[2]) < drawn_sizes
    return ClusteredResamples(indices, valid)


def clustered_bootstrap_ci(
    clusters: Sequence[str],
    numerators: Sequence[float] | np.ndarray,
    denominators: Sequence[float] | np.ndarray,
    resamples: int,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile interval of Σ numerators / Σ denominators (a mean when every denominator is
    1, pooled WER with errors / words) under the two-stage bootstrap of
    `clustered_resamples`: resample clusters, then items within them. With a single cluster
    it degenerates to the utterance bootstrap (`bootstrap_ci`). (NaN, NaN) for no items."""
    replicates = clustered_resamples(clusters, resamples, seed)
    return replicates.ratio_interval(np.asarray(numerators), np.asarray(denominators), level)


def _percentile_interval(values: np.ndarray, level: float) -> tuple[float, float]:
    """The central `level` percentile interval of replicate values; (NaN, NaN) for none.
    Infinite replicates are kept (an interval end may come out infinite or NaN)."""
    if values.size == 0:
        return (math.nan, math.nan)
    tail = (1 - level) / 2 * 100
    with np.errstate(invalid="ignore"):  # inf - inf between two infinite replicates
        low, high = np.percentile(values, [tail, 100 - tail])
    return (float(low), float(high))
