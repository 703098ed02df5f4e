"""Benchmark: Epoch AI's refit of Chinchilla (Besiroglu et al. 2024) with `scaling.power_law` — the
240-point joint fit plus 1,000 bootstraps, timed (target ≤ 60 s on 2 cores), against the
published values. Prints figures; asserts nothing.

    python bench/fit_epoch.py [--bootstrap 1000] [--verify 10] [--scipy-every 10]

--verify R: on R resamples, the bootstrap's shortcut (start from the full-data optimum and its
rival optima) against the full 4,500-start grid on the same resample.
--scipy-every K: scipy's L-BFGS-B run from every K-th grid start against the batched grid.
"""

from __future__ import annotations

import argparse
import csv
import os
import time
from pathlib import Path

import numpy as np

from scaling.law import start_grid
from scaling.optimise import minimise_from_starts
from scaling.power_law import PowerLawFit, fit_power_law

CSV = Path(__file__).resolve().parents[1] / "tests" / "data" / "chinchilla_fig4_epoch2024.csv"
PUBLISHED = {  # Besiroglu et al. 2024, table 1 and the bootstrap intervals
    "E": (1.8169, (1.769, 1.871)),
    "A": (482.0, (None, None)),
    "B": (2085.4, (None, None)),
    "alpha": (0.3478, (0.317, 0.373)),
    "beta": (0.3659, (0.331, 0.415)),
}


def load_epoch(path: Path = CSV) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N, D, loss) of the 240 runs Epoch kept: D = C / (6 N), the 5 highest losses dropped."""
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    n = np.array([float(r["Model Size"]) for r in rows])
    flops = np.array([float(r["Training FLOP"]) for r in rows])
    loss = np.array([float(r["loss"]) for r in rows])
    keep = np.sort(np.argsort(loss, kind="stable")[:-5])
    return n[keep], flops[keep] / (6 * n[keep]), loss[keep]


def report_fit(fit: PowerLawFit, wall: float, cpu: float, bootstrap: int) -> None:
    print(
        f"machine: {os.cpu_count()} cpus, load {os.getloadavg()[0]:.1f}; "
        f"{fit.n_points} points, {bootstrap} bootstraps"
    )
    print(f"fit + bootstrap: {wall:.1f} s wall, {cpu:.1f} s CPU (target ≤ 60 s on 2 cores)")
    print(f"  {'param':<6}{'fitted':>10}  {'95 % interval':<20}{'Epoch':>10}  Epoch interval")
    for name, value in fit.params.items():
        lo, hi = fit.intervals[name]
        ref, (ref_lo, ref_hi) = PUBLISHED[name]
        ref_interval = f"{ref_lo} – {ref_hi}" if ref_lo else ""
        print(f"  {name:<6}{value:>10.4g}  {lo:>8.4g} – {hi:<8.4g}  {ref:>10.4g}  {ref_interval}")
    print(f"  objective (summed Huber) {fit.objective:.10g}")


def verify_bootstrap_starts(fit: PowerLawFit, logx: np.ndarray, logy: np.ndarray, r: int) -> None:
    """The shortcut against the full grid on `r` resamples (tight tolerances for both)."""
    rng = np.random.default_rng(12345)
    grid = start_grid("joint")
    shortcut = np.vstack([fit.theta[None, :], fit.other_optima])
    gaps, worst_theta = [], 0.0
    for _ in range(r):
        weights = np.bincount(rng.integers(0, len(logy), len(logy)), minlength=len(logy))
        weights = weights.astype(float)
        full_x, full_f = minimise_from_starts(grid, logx, logy, np.tile(weights, (len(grid), 1)))
        cut_x, cut_f = minimise_from_starts(
            shortcut, logx, logy, np.tile(weights, (len(shortcut), 1))
        )
        best_full, best_cut = np.argmin(full_f), np.argmin(cut_f)
        gaps.append((cut_f[best_cut] - full_f[best_full]) / full_f[best_full])
        worst_theta = max(worst_theta, float(np.abs(cut_x[best_cut] - full_x[best_full]).max()))
    print(
        f"bootstrap shortcut ({len(shortcut)} start(s)) vs full grid on {r} resamples: "
        f"objective gap (shortcut − grid)/grid max {max(gaps):.2e}, min {min(gaps):.2e}; "
        f"largest |Δθ| {worst_theta:.2e}"
    )


def verify_scipy(fit: PowerLawFit, logx: np.ndarray, logy: np.ndarray, every: int) -> None:
    grid = start_grid("joint")[::every]
    start = time.perf_counter()
    ends, objectives = minimise_from_starts(grid, logx, logy, engine="scipy")
    best = int(np.argmin(objectives))
    print(
        f"scipy L-BFGS-B from every {every}th start ({len(grid)} starts, "
        f"{time.perf_counter() - start:.0f} s): best objective {objectives[best]:.10g} vs "
        f"{fit.objective:.10g}; |Δθ| {np.abs(ends[best] - fit.theta).max():.2e}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--verify", type=int, default=0, metavar="R")
    parser.add_argument("--scipy-every", type=int, default=0, metavar="K")
    args = parser.parse_args()
    n, d, loss = load_epoch()
    wall, cpu = time.perf_counter(), time.process_time()
    fit = fit_power_law(d, loss, n, bootstrap=args.bootstrap, seed=args.seed)
    report_fit(fit, time.perf_counter() - wall, time.process_time() - cpu, args.bootstrap)
    logx, logy = np.column_stack([np.log(n), np.log(d)]), np.log(loss)
    if args.verify:
        verify_bootstrap_starts(fit, logx, logy, args.verify)
    if args.scipy_every:
        verify_scipy(fit, logx, logy, args.scipy_every)


if __name__ == "__main__":
    main()
