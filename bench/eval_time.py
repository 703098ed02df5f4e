"""Benchmark: evaluation time of one checkpoint on the default held-out set, and its ratio to
the training time of the trial that produced it (target <= 0.25). Trains one trial of the
default sweep through Ray + DeepSpeed first. Prints figures; asserts nothing.

    python bench/eval_time.py [--size m] [--budget 1024]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import ray

from cluster.evaluation import Evaluator, evaluate_on_ray
from cluster.ray_runtime import connect
from cluster.trial_runner import run_trial
from training.config import MODEL_LADDER, CorpusRef, DataBudget, DataConfig, TrialConfig
from training.corpus.resolve import resolve_corpus


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", default="m")
    parser.add_argument("--budget", type=int, default=1024)
    args = parser.parse_args()
    trial = TrialConfig(
        model=MODEL_LADDER[args.size],
        data=DataConfig(
            corpus=CorpusRef(synthetic="default"), budget=DataBudget(utterances=args.budget)
        ),
    )
    root = resolve_corpus(trial.data.corpus, trial.data.features)
    connect()
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        outcome = run_trial(trial, root, Path(tmp) / "ray", max_failures=0)
        trial_wall = time.perf_counter() - started
        # As in the sweep: a one-CPU Ray actor that keeps the judges between checkpoints.
        actor = ray.remote(num_cpus=1)(Evaluator).remote()
        timings = []
        for attempt in range(2):  # the first also computes (and caches) the reference scores
            started = time.perf_counter()
            metrics = evaluate_on_ray(
                outcome.export_dir, root, Path(tmp) / f"e{attempt}", trial.eval, actor
            )
            timings.append(time.perf_counter() - started)
            if attempt == 0:
                first = metrics
    train = outcome.metrics["train_seconds"]
    print(
        f"machine: {os.cpu_count()} cpus; trial {trial.name} ({outcome.metrics['params']} "
        f"params, {outcome.metrics['steps']} steps): {train:.0f} s of training steps, "
        f"{trial_wall:.0f} s wall through Ray"
    )
    print(
        f"evaluation of {metrics.utterances} held-out utterances in a Ray CPU actor: "
        f"{timings[1]:.1f} s per checkpoint ({timings[1] / metrics.utterances:.2f} s/utt); "
        f"the first {timings[0]:.1f} s (it also loads the judges and computes the corpus's "
        f"shared reference scores, cached afterwards: {first.reference_seconds:.1f} s)"
    )
    print(
        f"ratio eval / training steps = {timings[1] / train:.2f}; eval / trial wall = "
        f"{timings[1] / trial_wall:.2f} (target <= 0.25)"
    )
    print(
        f"result: sim {metrics.sim:.3f} {metrics.sim_ci}, wer {metrics.wer:.3f} "
        f"{metrics.wer_ci}, val_loss {metrics.val_loss:.3f}"
    )


if __name__ == "__main__":
    main()
