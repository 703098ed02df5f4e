"""Benchmark: one worker's training step through Ray Train + DeepSpeed vs a bare PyTorch loop
(same model, batches, optimiser, clipping and schedule), start-up costs, and achieved FLOP/s
against a torch fp32 matmul peak measured in the same run. Prints figures; asserts nothing.

    python bench/train_step.py [--size m] [--steps 60] [--cold]

--cold points TORCH_EXTENSIONS_DIR at an empty directory, so DeepSpeed's CPU communication op
is compiled again (what a fresh machine pays once).
"""

from __future__ import annotations

import os

# Before torch loads: the bare loop gets the same single-threaded math libraries as a Ray
# worker (Ray sets OMP_NUM_THREADS=1 in workers).
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from training.config import (
    MODEL_LADDER,
    CorpusRef,
    DataBudget,
    DataConfig,
    ResourcesConfig,
    TrainingConfig,
    TrialConfig,
)


def matmul_peak_gflops(n: int = 1024, repeats: int = 20) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (time.perf_counter() - started) / 1e9


def bare_loop(trial: TrialConfig, corpus_root: Path, steps: int) -> tuple[list[float], float]:
    """The same work as a DeepSpeed step, in plain PyTorch: forward, backward, clip, AdamW."""
    from training.data import TrialData, batch_indices
    from training.deepspeed_loop import lr_lambda
    from training.losses import batch_loss
    from training.model import VoiceCloner, train_flops_per_step

    torch.manual_seed(trial.seed)
    data = TrialData.load(trial, corpus_root)
    model = VoiceCloner(trial.model, len(data.vocab), data.n_mels)
    optimizer = torch.optim.AdamW(
        model.parameters(),
        lr=trial.learning_rate,
        betas=trial.optim.betas,
        weight_decay=trial.optim.weight_decay,
    )
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_lambda(trial.optim.warmup_steps, steps)
    )
    times, flops = [], 0.0
    for step in range(steps):
        started = time.perf_counter()
        indices = batch_indices(
            len(data.train), data.lengths, trial.training.batch_size, trial.seed, step
        )
        loss, _ = batch_loss(model, data.train_batch(indices, trial.seed, step))
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), trial.optim.grad_clip)
        optimizer.step()
        schedule.step()
        times.append(time.perf_counter() - started)
        chosen = [data.train[i] for i in indices]
        flops += train_flops_per_step(
            model,
            sum(len(e.phonemes) for e in chosen),
            sum(len(e.mel) for e in chosen),
            sum(min(len(e.mel), data.ref_frames) for e in chosen),
            len(chosen),
        )
    return times, flops / steps


def compare_steps(size: str, steps: int, corpus: str, batch_size: int) -> dict[str, float]:
    """The bare loop, then the same trial through Ray Train + DeepSpeed, in this process's
    run: steady step times, their ratio, achieved FLOP/s and a 1-thread fp32 matmul peak."""
    torch.set_num_threads(1)  # Ray workers run with OMP_NUM_THREADS=1
    from cluster.ray_runtime import connect
    from cluster.trial_runner import run_trial
    from training.corpus.resolve import resolve_corpus

    trial = TrialConfig(
        model=MODEL_LADDER[size],
        data=DataConfig(corpus=CorpusRef(synthetic=corpus), budget=DataBudget(utterances=256)),
        training=TrainingConfig(
            steps=steps, eval_every=steps, checkpoint_every=steps, batch_size=batch_size
        ),
        resources=ResourcesConfig(num_workers=1),
    )
    root = resolve_corpus(trial.data.corpus, trial.data.features)
    peak = matmul_peak_gflops() * 1e9
    bare_times, flops_per_step = bare_loop(trial, root, steps)
    bare_step = float(np.median(bare_times[3:]))
    started = time.perf_counter()
    connect()
    ray_start = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as storage:
        started = time.perf_counter()
        outcome = run_trial(trial, root, Path(storage), max_failures=0)
        fit_seconds = time.perf_counter() - started
    timing = outcome.metrics["timing"]
    ray_step = timing["steady_step_s"]
    return {
        "size": size,
        "params": outcome.metrics["params"],
        "batch_size": batch_size,
        "steps": steps,
        "bare_step_s": bare_step,
        "ray_step_s": ray_step,
        "step_ratio": ray_step / bare_step,
        "flops_per_step": flops_per_step,
        "bare_flops_per_s": flops_per_step / bare_step,
        "ray_flops_per_s": flops_per_step / ray_step,
        "matmul_peak_flops_per_s": peak,
        "fraction_of_peak": flops_per_step / ray_step / peak,
        "ray_init_s": ray_start,
        "fit_s": fit_seconds,
        "data_load_s": timing["data_load_s"],
        "engine_init_s": timing["engine_init_s"],
        "first_step_s": timing["first_step_s"],
        "train_s": outcome.metrics["train_seconds"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", default="m")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--corpus", default="smoke")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--cold", action="store_true")
    args = parser.parse_args()
    if args.cold:
        os.environ["TORCH_EXTENSIONS_DIR"] = tempfile.mkdtemp(prefix="voicescale-ext-")
    r = compare_steps(args.size, args.steps, args.corpus, args.batch)
    print(
        f"machine: {os.cpu_count()} cpus, torch {torch.__version__}, 1 thread per worker; "
        f"model {args.size} ({r['params']} params), batch {args.batch}, {args.steps} steps"
    )
    print(
        f"steady-state step: bare PyTorch {r['bare_step_s'] * 1e3:.1f} ms, Ray+DeepSpeed "
        f"{r['ray_step_s'] * 1e3:.1f} ms, ratio {r['step_ratio']:.3f} (target <= 1.10)"
    )
    print(
        f"start-up: ray.init {r['ray_init_s']:.1f} s; TorchTrainer.fit total {r['fit_s']:.1f} s "
        f"of which worker data load {r['data_load_s']:.1f} s, DeepSpeed import + initialize "
        f"{r['engine_init_s']:.1f} s{' (incl. CPU op build)' if args.cold else ''}, "
        f"first step {r['first_step_s']:.2f} s, steps {r['train_s']:.1f} s"
    )
    print(
        f"achieved: {r['bare_flops_per_s'] / 1e9:.1f} GFLOP/s bare, "
        f"{r['ray_flops_per_s'] / 1e9:.1f} GFLOP/s Ray+DeepSpeed; fp32 matmul peak "
        f"{r['matmul_peak_flops_per_s'] / 1e9:.1f} GFLOP/s (1 thread) -> "
        f"{r['fraction_of_peak']:.0%} of peak"
    )


if __name__ == "__main__":
    main()
