"""Collectives hand `torch.distributed` tensors on the engine's device: NCCL rejects CPU
tensors, and on CPU (gloo) that cannot be seen. A stand-in for `all_reduce` records the device
of what it was given; the "device" is `meta`, so a CPU tensor would show."""

from __future__ import annotations

import pytest
import torch

from training import distributed

META = torch.device("meta")


class Handed(Exception):
    """Raised by the stand-in once it has seen the tensor (a meta tensor has no values)."""


@pytest.fixture
def handed(monkeypatch) -> list[torch.device]:
    seen: list[torch.device] = []

    def all_reduce(tensor: torch.Tensor, op=None) -> None:
        seen.append(tensor.device)
        raise Handed

    monkeypatch.setattr(distributed.dist, "all_reduce", all_reduce)
    return seen


@pytest.mark.parametrize(
    "collective",
    [
        lambda: distributed.mean_across_ranks(1.5, 2, META),
        lambda: distributed.sum_across_ranks(torch.zeros(2, dtype=torch.float64), 2, META),
        lambda: distributed.max_across_ranks(3, 2, META),
    ],
    ids=["mean", "sum", "max"],
)
def test_collectives_send_tensors_on_the_engine_device(handed, collective):
    with pytest.raises(Handed):
        collective()
    assert handed == [META]


def test_one_rank_communicates_nothing(handed):
    assert distributed.mean_across_ranks(1.5, 1, META) == 1.5
    assert distributed.max_across_ranks(3, 1, META) == 3
    assert distributed.sum_across_ranks(torch.ones(2), 1, META).tolist() == [1.0, 1.0]
    assert distributed.gather_strings("x", 1) == ["x"]
    assert handed == []


def test_deepspeed_imports_without_mlflow_and_mlflow_still_imports_after():
    """The worker's `import deepspeed` skips DeepSpeed's autotuner's MLflow import (1.7 s of a
    fresh process's start-up), and leaves `import mlflow` working afterwards."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from training.distributed import import_deepspeed\n"
        "ds = import_deepspeed()\n"
        "assert 'mlflow' not in sys.modules, 'mlflow was imported'\n"
        "from deepspeed.autotuning import autotuner\n"
        "assert autotuner.has_mlflow is False\n"
        "import mlflow\n"
        "print('ok', ds.__version__, mlflow.__version__)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines()[-1].startswith("ok "), done.stdout  # DeepSpeed logs first
