"""`make gpu-check`: the GPU smoke sweep (configs/sweeps/gpu-smoke.yaml), then its figures per
trial — steady step time, samples/s, model FLOP utilisation (MFU) against the device's bf16
peak (the datasheet's dense figure, and a bf16 matmul measured in this run), peak GPU memory.

    python bench/gpu_check.py [--runs-dir runs/gpu-check] [--whisper DIR] [--set KEY=VALUE ...]

Whisper judges on the GPU when its CTranslate2 weights are found (`--whisper`,
$VOICESCALE_WHISPER_DIR, or data/judges/faster-whisper-large-v3), else the offline judges.
Exits non-zero when a trial did not finish `done`. `--set` overrides sweep keys (e.g.
`--set trial.resources.gpus_per_worker=0` to try the script on a CPU machine).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "sweeps" / "gpu-smoke.yaml"
WHISPER_DEFAULT = Path("data") / "judges" / "faster-whisper-large-v3"

# Dense bf16 tensor-core peaks from the vendors' datasheets (FLOP/s, no sparsity).
BF16_PEAK = {
    "H200": 989e12,
    "H100 SXM": 989e12,
    "H100 PCIe": 756e12,
    "H100": 989e12,
    "A100": 312e12,
    "L40S": 362e12,
    "L4": 121e12,
    "A10G": 70e12,
}


def datasheet_peak(device_name: str) -> float | None:
    """The bf16 peak of the first table entry named in `device_name` (longest match)."""
    for name in sorted(BF16_PEAK, key=len, reverse=True):
        if name in device_name:
            return BF16_PEAK[name]
    return None


def measured_bf16_peak(n: int = 8192, repeats: int = 20) -> float:
    """FLOP/s of a large bf16 matmul on this GPU (what the device delivers to torch)."""
    import torch

    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    a @ b
    torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    torch.cuda.synchronize()
    return 2 * n**3 * repeats / (time.perf_counter() - started)


def whisper_dir(given: str | None) -> Path | None:
    for candidate in (given, os.environ.get("VOICESCALE_WHISPER_DIR"), WHISPER_DEFAULT):
        if candidate and (Path(candidate) / "model.bin").is_file():
            return Path(candidate)
    return None


def trial_figures(sweep_dir: Path, batch: dict[str, int], peak: float | None) -> list[dict]:
    """One dict per recorded trial: its row plus the figures derived from its timings
    (`batch`: each trial's global batch size)."""
    from store.outcome import read_outcome

    figures = []
    for line in (sweep_dir / "results.jsonl").read_text().splitlines():
        row = json.loads(line)
        outcome = read_outcome(sweep_dir / "trials" / row["trial"] / "outcome.json")
        timing = outcome.train.details.get("timing", {}) if outcome else {}
        step = timing.get("steady_step_s")
        flops_per_step = row["train_flops"] / row["steps"] if row.get("steps") else None
        achieved = flops_per_step / step if flops_per_step and step else None
        figures.append(
            {
                **row,
                "steady_step_s": step,
                "samples_per_s": batch[row["trial"]] / step if step else None,
                "achieved_flops": achieved,
                "mfu": achieved / peak if achieved and peak else None,
                "peak_memory_gib": (timing.get("peak_memory_bytes") or 0) / 2**30 or None,
            }
        )
    return figures


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_figures(figures: list[dict], device: str, peaks: dict[str, float | None]) -> None:
    sheet, measured = peaks["datasheet"], peaks["measured"]
    print(
        f"device: {device}; bf16 peak: datasheet {_fmt(sheet and sheet / 1e12, '.0f')} TFLOP/s, "
        f"measured matmul {_fmt(measured and measured / 1e12, '.0f')} TFLOP/s (MFU is against "
        f"the {'datasheet' if sheet else 'measured'} figure)"
    )
    header = f"{'trial':<18} {'params':>11} {'status':<8} {'step ms':>8} {'samples/s':>10}"
    print(header + f" {'TFLOP/s':>8} {'MFU':>6} {'peak GiB':>9} {'SIM':>6} {'WER':>6}")
    for f in figures:
        print(
            f"{f['trial']:<18} {f['params']:>11,} {f['status']:<8} "
            f"{_fmt(f['steady_step_s'] and f['steady_step_s'] * 1e3, '8.1f')} "
            f"{_fmt(f['samples_per_s'], '10.1f')} "
            f"{_fmt(f['achieved_flops'] and f['achieved_flops'] / 1e12, '8.2f')} "
            f"{_fmt(f['mfu'], '6.1%')} {_fmt(f['peak_memory_gib'], '9.2f')} "
            f"{_fmt(f['sim'], '6.3f')} {_fmt(f['wer'], '6.3f')}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--runs-dir",
        type=Path,
        default=Path("runs") / "gpu-check" / time.strftime("%Y%m%d-%H%M%S"),
        help="default: a new runs/gpu-check/<time>/ (a check always trains afresh)",
    )
    parser.add_argument("--config", type=Path, default=CONFIG)
    parser.add_argument("--whisper", help="a local faster-whisper (CTranslate2) model directory")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)

    import torch

    from scaling.sweep import run_sweep
    from training.config import SweepConfig, load_config, with_overrides

    overrides = list(args.set)
    whisper = whisper_dir(args.whisper)
    if whisper is not None:
        overrides += ["trial.eval.asr_judge=whisper", f"trial.eval.asr_judge_source={whisper}"]
    sweep = load_config(SweepConfig, args.config)
    sweep = with_overrides(sweep, overrides) if overrides else sweep
    cuda = torch.cuda.is_available()
    device = torch.cuda.get_device_name() if cuda else f"CPU ({os.cpu_count()} cores)"
    peaks = {
        "datasheet": datasheet_peak(device) if cuda else None,
        "measured": measured_bf16_peak() if cuda else None,
    }
    started = time.perf_counter()
    code = run_sweep(sweep, runs_dir=args.runs_dir.resolve())
    wall = time.perf_counter() - started
    batch = {t.name: t.training.batch_size for t in sweep.trials()}
    peak = peaks["datasheet"] or peaks["measured"]
    figures = trial_figures(args.runs_dir / sweep.name, batch, peak)
    print(
        f"gpu-check: sweep {sweep.name} in {wall:.0f} s, exit {code}; judges: "
        f"{'whisper ' + str(whisper) if whisper else 'offline (pocketsphinx, resemblyzer)'}"
    )
    print_figures(figures, device, peaks)
    if code != 0 or any(f["status"] != "done" for f in figures):
        return 1
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    sys.exit(main())
