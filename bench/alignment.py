"""Benchmark: the aligner's monotonic alignment search and attention prior, vectorised vs the
per-utterance implementations they replaced (kept in tests/training/test_alignment.py as the
equality reference), timed side by side in one run on the same inputs. Prints figures and the
old/new time ratios; checks the outputs are identical.

    python bench/alignment.py [--batch 16] [--tokens 60] [--frames 400] [--repeats 5] [--device cpu]

The defaults are the size of a training batch of the default corpus; on a GPU the old
backtrack synchronises with the device once per frame per utterance, so its ratio grows.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from training.model import beta_binomial_log_prior, monotonic_alignment


def seconds(fn: Callable[[], torch.Tensor], device: torch.device, repeats: int) -> float:
    """Median wall time of `fn` (after one warm-up call), the device synchronised."""
    fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def inputs(batch: int, tokens: int, frames: int, device: torch.device):
    """A padded batch: lengths spread over [½, 1] of the maxima, T >= N."""
    generator = torch.Generator().manual_seed(0)
    n = torch.randint(tokens // 2, tokens + 1, (batch,), generator=generator)
    t = torch.maximum(torch.randint(frames // 2, frames + 1, (batch,), generator=generator), n)
    scores = torch.randn(batch, int(n.max()), int(t.max()), generator=generator)
    return scores.to(device), n.to(device), t.to(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=60)
    parser.add_argument("--frames", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    # The old implementations live in the test that holds the new ones to them (one copy).
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.training.test_alignment import (
        reference_batch_prior,
        reference_monotonic_alignment,
    )

    device = torch.device(args.device)
    scores, n, t = inputs(args.batch, args.tokens, args.frames, device)
    shape = (len(n), scores.shape[2], scores.shape[1])

    def old_prior() -> torch.Tensor:  # as Aligner.forward did: on the host, then copied over
        return reference_batch_prior(n.cpu(), t.cpu(), shape).to(device)

    cases = {
        "alignment search": (
            lambda: reference_monotonic_alignment(scores, n, t),
            lambda: monotonic_alignment(scores, n, t),
        ),
        "attention prior": (old_prior, lambda: beta_binomial_log_prior(n, t, shape[2], shape[1])),
    }
    print(
        f"batch {args.batch}, ≤{args.tokens} phonemes, ≤{args.frames} frames, "
        f"device {device}, median of {args.repeats}"
    )
    for name, (old, new) in cases.items():
        assert torch.equal(old().cpu(), new().cpu()), f"{name}: outputs differ"
        old_s, new_s = seconds(old, device, args.repeats), seconds(new, device, args.repeats)
        print(
            f"  {name:17s} old {old_s * 1e3:8.1f} ms   new {new_s * 1e3:7.1f} ms   "
            f"old/new {old_s / new_s:6.1f}×"
        )


if __name__ == "__main__":
    main()
