"""`voicescale fit`: fit a scaling law to any CSV of runs, e.g. to check it on Chinchilla's.

Chinchilla's runs check the fitter against a published answer:

    voicescale fit --csv runs.csv --n "Model Size" --flops "Training FLOP" --d-from-flops \\
        --loss loss --drop-highest 5 --json
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from scaling.law import PARAM_NAMES
from scaling.power_law import PowerLawFit, fit_power_law
from training.config import ConfigError

__all__ = ["add_fit_parser", "run_fit"]

FLOPS_PER_PARAM_TOKEN = 6.0  # Chinchilla's C ≈ 6 N D


def add_fit_parser(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register `fit` on a subparsers object (handler: `run_fit`)."""
    fit = commands.add_parser(
        "fit",
        help="fit L(D) or L(N, D) to a CSV of runs",
        description="Fit L(D) = E + B/D^β (without --n) or L(N, D) = E + A/N^α + B/D^β "
        "(Huber δ=1e-3 on log residuals, L-BFGS from Epoch AI's grid) with bootstrap intervals.",
    )
    fit.add_argument("--csv", type=Path, required=True, help="a CSV file with a header row")
    fit.add_argument("--n", metavar="COL", help="parameter-count column (omit: fit L(D))")
    fit.add_argument("--d", metavar="COL", help="data-size column (utterances, tokens)")
    fit.add_argument("--loss", metavar="COL", required=True, help="loss column (> 0)")
    fit.add_argument("--flops", metavar="COL", help="training-compute column")
    fit.add_argument(
        "--d-from-flops",
        action="store_true",
        help="D = FLOP / (6 N), the Chinchilla convention (needs --flops and --n)",
    )
    fit.add_argument(
        "--drop-highest",
        type=int,
        default=0,
        metavar="K",
        help="leave out the K rows with the highest loss (default: 0)",
    )
    fit.add_argument("--bootstrap", type=int, default=1000, help="replicates (default: 1000)")
    fit.add_argument("--seed", type=int, default=0, help="bootstrap seed (default: 0)")
    fit.add_argument("--json", action="store_true", help="one JSON object on stdout")
    fit.set_defaults(handler=run_fit)
    return fit


def run_fit(args: argparse.Namespace) -> int:
    """Read, fit, print. Bad input raises ConfigError naming the file, row and column."""
    _check_options(args)
    header, rows = _read_csv(args.csv)
    loss = _column(args.csv, header, rows, args.loss)
    n = _column(args.csv, header, rows, args.n) if args.n else None
    flops = _column(args.csv, header, rows, args.flops) if args.flops else None
    if args.d_from_flops:
        d, d_label = flops / (FLOPS_PER_PARAM_TOKEN * n), f"{args.flops} / (6 {args.n})"
    else:
        d, d_label = _column(args.csv, header, rows, args.d), args.d
    keep = _drop_highest(loss, args.drop_highest, args.csv)
    start = time.perf_counter()
    try:
        fit = fit_power_law(
            d[keep],
            loss[keep],
            None if n is None else n[keep],
            bootstrap=args.bootstrap,
            seed=args.seed,
            names=(d_label, args.loss, args.n or "n"),
        )
    except ValueError as err:
        raise ConfigError(f"{args.csv}: {err}") from None
    if not fit.ok:
        raise ConfigError(f"{args.csv}: cannot fit: {fit.message}")
    summary = _summary(fit, time.perf_counter() - start, args, len(rows))
    if flops is not None and n is not None:
        summary["k"] = float(np.median(flops[keep] / (n[keep] * d[keep])))  # C ≈ k·N·D
    print(json.dumps(summary, indent=2) if args.json else _table(summary, args.csv))
    return 0


def _check_options(args: argparse.Namespace) -> None:
    if args.d_from_flops and not (args.flops and args.n):
        raise ConfigError("--d-from-flops needs --flops COL and --n COL")
    if args.d_from_flops and args.d:
        raise ConfigError("give either --d or --d-from-flops, not both")
    if not args.d_from_flops and not args.d:
        raise ConfigError("give --d COL (or --d-from-flops with --flops and --n)")
    if args.bootstrap < 0:
        raise ConfigError(f"--bootstrap must be ≥ 0, got {args.bootstrap}")
    if args.drop_highest < 0:
        raise ConfigError(f"--drop-highest must be ≥ 0, got {args.drop_highest}")


def _read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    try:
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
            header = list(reader.fieldnames or [])
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise ConfigError(f"{path}: cannot read CSV: {err}") from None
    if not header:
        raise ConfigError(f"{path}: empty file (a header row is needed)")
    if not rows:
        raise ConfigError(f"{path}: a header but no rows")
    return header, rows


def _column(path: Path, header: list[str], rows: list[dict[str, str]], name: str) -> np.ndarray:
    """The column as floats, each finite and > 0; errors name the row (1 = first data row)
    and the file line."""
    if name not in header:
        raise ConfigError(f"{path}: no column {name!r} (columns: {', '.join(header)})")
    values = np.empty(len(rows))
    for i, row in enumerate(rows, start=1):
        raw = (row.get(name) or "").strip()
        where = f"{path}: row {i} (line {i + 1}), column {name!r}"
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError(f"{where}: {raw!r} is not a number") from None
        if not math.isfinite(value) or value <= 0:
            raise ConfigError(f"{where}: must be a finite number > 0, got {raw!r}")
        values[i - 1] = value
    return values


def _drop_highest(loss: np.ndarray, k: int, path: Path) -> np.ndarray:
    """Indices of the rows kept after leaving out the k highest losses, in file order."""
    if k >= len(loss):
        raise ConfigError(f"{path}: --drop-highest {k} leaves none of {len(loss)} rows")
    order = np.argsort(loss, kind="stable")
    return np.sort(order[: len(loss) - k])


def _summary(
    fit: PowerLawFit, seconds: float, args: argparse.Namespace, n_rows: int
) -> dict[str, Any]:
    params = fit.to_dict()
    names = PARAM_NAMES["joint"]
    return {
        "form": fit.form,
        "law": "E + A/N^alpha + B/D^beta" if fit.form == "joint" else "E + B/D^beta",
        **{name: params.get(name) for name in names},
        "intervals": {name: params["intervals"].get(name, [None, None]) for name in names},
        "objective": params["objective"],
        "n_points": fit.n_points,
        "dropped": n_rows - fit.n_points,
        "bootstrap": args.bootstrap,
        "seed": args.seed,
        "message": fit.message,
        "seconds": round(seconds, 3),
    }


def _table(summary: dict[str, Any], path: Path) -> str:
    lines = [
        f"L = {summary['law']} fitted to {summary['n_points']} rows of {path} "
        f"({summary['dropped']} dropped), {summary['bootstrap']} bootstraps, "
        f"{summary['seconds']:.1f} s",
        f"  {'param':<8}{'value':>12}   95 % interval",
    ]
    for name, (lo, hi) in summary["intervals"].items():
        if summary[name] is None:
            continue
        interval = "n/a" if lo is None else f"{lo:.4g} – {hi:.4g}"
        lines.append(f"  {name:<8}{summary[name]:>12.4g}   {interval}")
    if summary.get("k") is not None:
        lines.append(f"  C ≈ k·N·D with k = {summary['k']:.4g}")
    if summary["message"]:
        lines.append(f"  note: {summary['message']}")
    return "\n".join(lines)
