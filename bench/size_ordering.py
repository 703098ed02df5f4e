"""Held-out loss of every model size and the baseline at one data budget and a fixed step
budget, each trial through the real Ray + DeepSpeed path. Prints a table; asserts nothing.

    python bench/size_ordering.py [--budget 4096] [--steps 400] [--sizes xs s m l]
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from cluster.ray_runtime import connect
from cluster.trial_runner import run_any_trial
from training.config import (
    MODEL_LADDER,
    CorpusRef,
    DataBudget,
    DataConfig,
    TrainingConfig,
    TrialConfig,
)
from training.corpus.resolve import resolve_corpus


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--corpus", default="default")
    parser.add_argument("--budget", type=int, default=4096)
    parser.add_argument(
        "--steps",
        type=int,
        default=None,
        help="default: the step rule for the budget (12·sqrt(utterances))",
    )
    parser.add_argument("--sizes", nargs="+", default=["xs", "s", "m", "l"])
    parser.add_argument("--out", type=Path, default=Path("runs/bench-size-ordering"))
    args = parser.parse_args()
    data = DataConfig(
        corpus=CorpusRef(synthetic=args.corpus), budget=DataBudget(utterances=args.budget)
    )
    steps = args.steps or round(12 * args.budget**0.5)
    training = TrainingConfig(steps=steps, eval_every=steps, checkpoint_every=steps)
    trials = [TrialConfig(kind="baseline", data=data)] + [
        TrialConfig(model=MODEL_LADDER[s], data=data, training=training) for s in args.sizes
    ]
    root = resolve_corpus(data.corpus, data.features, progress=False)
    connect()
    started = time.perf_counter()
    with ThreadPoolExecutor(2) as pool:  # two trials at a time: one per core
        outcomes = list(
            pool.map(lambda t: run_any_trial(t, root, args.out.resolve(), max_failures=0), trials)
        )
    print(
        f"budget {args.budget} utterances, {steps} steps (batch 16) per neural size; "
        f"{time.perf_counter() - started:.0f} s wall"
    )
    print(f"{'trial':<22}{'params':>10}{'lr':>9}{'val_loss':>10}{'train s':>9}  status")
    for t, o in zip(trials, outcomes, strict=True):
        m = o.metrics
        print(
            f"{t.name:<22}{m.get('params', 0):>10}{t.learning_rate:>9.2e}"
            f"{m.get('val_loss', float('nan')):>10.4f}{m.get('train_seconds', 0):>9.0f}  "
            f"{o.status} {o.error or ''}"
        )


if __name__ == "__main__":
    main()
