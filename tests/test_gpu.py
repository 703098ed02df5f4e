"""On a CUDA machine: `make gpu-check`'s sweep (bf16, ZeRO-2, a ≥ 50 M-parameter model) runs
and its figures are real numbers. Skipped without CUDA (see conftest)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = [pytest.mark.gpu, pytest.mark.slow]


def test_gpu_smoke_sweep_trains_both_sizes_in_bf16_and_reports_its_figures(tmp_path: Path):
    from bench.gpu_check import main, trial_figures

    runs = tmp_path / "runs"
    assert main(["--runs-dir", str(runs)]) == 0
    rows = [json.loads(line) for line in (runs / "gpu-smoke" / "results.jsonl").open()]
    assert {r["status"] for r in rows} == {"done"}
    assert max(r["params"] for r in rows) >= 50_000_000
    figures = trial_figures(runs / "gpu-smoke", {r["trial"]: 32 for r in rows}, 989e12)
    for f in figures:
        assert f["steady_step_s"] > 0 and f["samples_per_s"] > 0
        assert 0 < f["mfu"] < 1 and f["peak_memory_gib"] > 0
