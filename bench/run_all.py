"""`make bench`'s table: the performance ratios the project aims for, measured side by side in
this run, each with its goal and, where it misses, why; plus the absolute figures and the
machine. Writes bench/results.json. Asserts nothing.

    python bench/run_all.py [--sweep-dir runs/default] [--size l] [--steps 40]

The sweep ratios come from the default sweep's own results.jsonl (`--sweep-dir`); when it has
none yet, the default sweep runs first (what `make scale-sweep` runs, into the same place).
The step comparison trains the largest CPU size with the default sweep's batch, first in a
bare PyTorch loop and then through Ray Train + DeepSpeed, in this one process's run.
"""

from __future__ import annotations

import os

# Before torch loads: the bare loop gets the same single-threaded math libraries as a Ray
# worker (Ray sets OMP_NUM_THREADS=1 in workers).
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse
import json
import math
import platform
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(REPO))

GOALS = {
    "fixed_cost_median_s": ("<=", 5.0),
    "eval_over_train": ("<=", 0.25),
    "busy_fraction": (">=", 0.80),
    "step_ratio": ("<=", 1.10),
    "fraction_of_peak": (">=", 0.25),
    "gpu_mfu": (">=", 0.40),
}
LABELS = {
    "fixed_cost_median_s": "fixed cost per trial beyond train + eval, median (s)",
    "eval_over_train": "Σ eval s / Σ train s, default sweep",
    "busy_fraction": "training busy fraction, default sweep",
    "step_ratio": "steady step Ray Train + DeepSpeed / bare torch",
    "fraction_of_peak": "training FLOP/s / fp32 matmul peak (1 thread)",
    "gpu_mfu": "GPU model FLOP utilisation, largest gpu-smoke size, bf16",
}


def machine() -> dict[str, str]:
    import torch

    cpu = platform.processor() or "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [ln.split(":", 1)[1].strip() for ln in cpuinfo.read_text().splitlines()
                 if ln.startswith("model name")]  # fmt: skip
        cpu = names[0] if names else cpu
    memory = ""
    if Path("/proc/meminfo").exists():
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f", {kib / 2**20:.0f} GiB"
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    return {
        "description": f"{cpu}, {os.cpu_count()} cores{memory}, {gpu}; Python "
        f"{platform.python_version()}, torch {torch.__version__}",
        "gpu": gpu,
    }


def sweep_ratios(sweep_dir: Path) -> dict[str, float]:
    """Busy fraction, eval/train and the median fixed cost of the default sweep's rows."""
    from scaling.timing import sweep_timing
    from store.results_file import load_rows

    results = sweep_dir / "results.jsonl"
    if not results.exists():
        print(f"bench: {results} does not exist yet: running the default sweep first", flush=True)
        subprocess.run(
            [sys.executable, "-m", "scaling.cli", "sweep", "--config",
             str(REPO / "configs" / "sweeps" / "default.yaml"),
             "--runs-dir", str(sweep_dir.parent)],
            check=True, cwd=REPO,
        )  # fmt: skip
    timing = sweep_timing(load_rows(results))
    return {
        "trials": len(timing.trials),
        "makespan_s": timing.makespan,
        "slots": timing.slots,
        "sum_train_s": timing.train,
        "sum_eval_s": timing.eval,
        "sum_other_s": sum(t.other for t in timing.trials),
        "busy_fraction": timing.busy_fraction,
        "eval_over_train": timing.eval_over_train,
        "fixed_cost_median_s": timing.median_other,
    }


def gpu_mfu(runs_dir: Path) -> dict[str, float] | str:
    """The gpu-smoke sweep through `bench/gpu_check.py`, or why it cannot run here."""
    import torch

    if not torch.cuda.is_available():
        return "needs a CUDA GPU, and this machine has none (run `make bench` on one)"
    out = runs_dir / time.strftime("%Y%m%d-%H%M%S")
    subprocess.run([sys.executable, str(BENCH / "gpu_check.py"), "--runs-dir", str(out)], cwd=REPO)
    import gpu_check

    from training.config import SweepConfig, load_config

    sweep = load_config(SweepConfig, gpu_check.CONFIG)
    batch = {t.name: t.training.batch_size for t in sweep.trials()}
    peak = gpu_check.datasheet_peak(torch.cuda.get_device_name()) or gpu_check.measured_bf16_peak()
    figures = [f for f in gpu_check.trial_figures(out / sweep.name, batch, peak) if f["mfu"]]
    if not figures:
        return "the gpu-smoke sweep produced no timed neural trial (see its output above)"
    largest = max(figures, key=lambda f: f["params"] or 0)
    return {"gpu_mfu": largest["mfu"], "gpu_trial": largest["trial"], "gpu_peak_flops": peak}


def verdict(key: str, value: float | None, reasons: dict[str, str]) -> str:
    if value is None or not math.isfinite(value):
        return reasons.get(key, "not measured")
    op, goal = GOALS[key]
    met = value <= goal if op == "<=" else value >= goal
    return "at goal" if met else "MISSES: " + reasons.get(key, "see the closing note")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sweep-dir", type=Path, default=REPO / "runs" / "default")
    parser.add_argument("--size", default="l", help="the largest CPU size of the ladder")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch", type=int, default=8, help="the default sweep's batch")
    parser.add_argument("--out", type=Path, default=BENCH / "results.json")
    args = parser.parse_args()

    from train_step import compare_steps

    info = machine()
    sweep = sweep_ratios(args.sweep_dir)
    steps = compare_steps(args.size, args.steps, "smoke", args.batch)
    gpu = gpu_mfu(REPO / "runs" / "gpu-check")
    measured = {**sweep, **steps, **(gpu if isinstance(gpu, dict) else {})}
    reasons = {
        "gpu_mfu": gpu if isinstance(gpu, str) else "",
        "fixed_cost_median_s": "every trial starts Ray Train's controller, a synchronisation "
        "actor and its workers as new processes, which import Ray Train, torch and DeepSpeed "
        "(≈ 12 s from fit() to the training function on an idle machine, from Ray Train's "
        "logs); Ray Train V2 starts them anew for every fit",
        "eval_over_train": "judging a checkpoint costs ≈ 10 s (24 held-out sentences: ≈ 5 s "
        "of first-pass pocketsphinx JSGF decoding, synthesis, Griffin-Lim, speaker "
        "embeddings), and a judge slot's first verdict also starts its actor; half the "
        "grid's trials train for under 25 s",
        "step_ratio": "DeepSpeed's engine step and the loop's per-step bookkeeping on top of "
        "the bare loop; 40-step medians move a few per cent between runs, so rerun (--steps) "
        "before concluding",
        "busy_fraction": "bounded by the per-trial start-up and judging above, against a grid "
        "where half the trials train for under 25 s",
    }
    print(f"\nmachine: {info['description']}")
    print(f"{'metric':<56} {'measured':>10} {'goal':>8}  verdict")
    rows = []
    for key, label in LABELS.items():
        value = measured.get(key)
        op, goal = GOALS[key]
        shown = "-" if value is None else f"{value:.3f}"
        text = verdict(key, value, reasons)
        rows.append({"metric": key, "label": label, "value": value, "goal": f"{op} {goal}",
                     "verdict": text})  # fmt: skip
        print(f"{label:<56} {shown:>10} {op + ' ' + str(goal):>8}  {text}")
    print(
        f"\nabsolute: default sweep {sweep['trials']} trials, makespan {sweep['makespan_s']:.0f} s"
        f" on {sweep['slots']} slots; Σ train {sweep['sum_train_s']:.0f} s, Σ eval "
        f"{sweep['sum_eval_s']:.0f} s, Σ other {sweep['sum_other_s']:.0f} s"
    )
    print(
        f"absolute: {args.size} ({steps['params']} params, batch {args.batch}): bare step "
        f"{steps['bare_step_s'] * 1e3:.1f} ms, Ray+DeepSpeed {steps['ray_step_s'] * 1e3:.1f} ms;"
        f" {steps['ray_flops_per_s'] / 1e9:.2f} GFLOP/s vs matmul peak "
        f"{steps['matmul_peak_flops_per_s'] / 1e9:.1f} GFLOP/s; TorchTrainer.fit "
        f"{steps['fit_s']:.1f} s for {steps['train_s']:.1f} s of steps"
    )
    args.out.write_text(
        json.dumps({"machine": info, "ratios": rows, "measured": measured}, indent=2) + "\n"
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
