"""Real DeepSpeed engines (2 gloo processes, no Ray): what `full_weights` gathers under ZeRO-0,
ZeRO-3 and bf16, parameter counts under ZeRO-3, and validation in lockstep under ZeRO-3.

Each process builds the trial's engine exactly as a Ray worker does (`_build_engine`), trains a
few steps with the loop's batching, and rank 0 saves what the test then compares."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest
import torch

from training.config import (
    MODEL_LADDER,
    CorpusRef,
    DataBudget,
    DataConfig,
    DeepSpeedConfig,
    ResourcesConfig,
    TrainingConfig,
    TrialConfig,
)

pytestmark = pytest.mark.slow

STEPS = 3
CONFIGS = [(0, "fp32"), (3, "fp32"), (0, "bf16"), (2, "bf16")]
ZERO3_TOLERANCE = 2e-5
"""ZeRO-0 all-reduces whole gradients; ZeRO-3 reduce-scatters partitions and sums the clipping
norm from per-rank pieces: the same arithmetic in another order, so gradients differ in their
last fp32 bits. Adam's first steps move each weight by about lr·g/|g|, which turns a rounding
difference on a near-zero gradient into a visible one (measured: max |Δw| 4.4e-6 after 3 steps,
on the bias of the speaker encoder's attention logits, which a softmax makes gradient-free).
2e-5 is 2 % of one step's update at lr 1e-3, while a wrong export (empty partitions, one rank's
shard, weights a step stale) is off by whole updates or entirely."""


def trial_for(corpus: Path, stage: int, precision: str) -> TrialConfig:
    return TrialConfig(
        model=MODEL_LADDER["xs"],
        data=DataConfig(
            corpus=CorpusRef(synthetic=None, path=str(corpus)), budget=DataBudget(utterances=64)
        ),
        training=TrainingConfig(steps=STEPS, batch_size=8),
        deepspeed=DeepSpeedConfig(
            zero_stage=stage, precision=precision, zero3_param_persistence_threshold=0
        ),
        resources=ResourcesConfig(num_workers=2),
    )


def _train(trial: TrialConfig, data, rank: int, world: int):
    """A few steps as `_run_steps` takes them (the same batches, slices and dropout seeds)."""
    from training.data import batch_indices
    from training.deepspeed_loop import _build_engine, _step_seed
    from training.losses import batch_loss

    torch.manual_seed(trial.seed)
    engine, device = _build_engine(trial, data, world)
    micro = engine.train_micro_batch_size_per_gpu()
    for step in range(STEPS):
        indices = batch_indices(len(data.train), data.lengths, 8, trial.seed, step)
        torch.manual_seed(_step_seed(trial.seed, step, rank, 0))
        batch = data.train_batch(indices[rank * micro : (rank + 1) * micro], trial.seed, step)
        loss, _ = batch_loss(engine, batch.to(device))
        engine.backward(loss)
        engine.step()
    return engine, device


def _worker(rank: int, world: int, port: int, corpus: str, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), LOCAL_RANK=str(rank))
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world))
    import torch.distributed as dist

    from training.data import TrialData
    from training.losses import validation_loss
    from training.model import count_parameters
    from training.weights import full_weights, parameter_digests, sync_buffers

    dist.init_process_group("gloo", rank=rank, world_size=world)
    results = {}
    try:
        for stage, precision in CONFIGS:
            trial = trial_for(Path(corpus), stage, precision)
            data = TrialData.load(trial, corpus)
            started = time.perf_counter()
            engine, device = _train(trial, data, rank, world)
            sync_buffers(engine.module, world)  # as `_finish` does before digesting
            weights = full_weights(engine)
            lowp = {n: p.detach().clone() for n, p in engine.module.named_parameters()}
            result = {
                "weights": weights,
                "module": lowp if stage != 3 else None,
                "params": count_parameters(engine.module)["total"],
                "digests": parameter_digests(weights, world),
            }
            if stage == 3:
                # Uneven shards: rank 0 gets 2 validation batches of 16, rank 1 one.
                data.val, data.val_refs = data.val[:33], data.val_refs[:33]
                result["val_loss"] = validation_loss(
                    engine.module, data, device, rank, world, lockstep=True
                )
            result["seconds"] = time.perf_counter() - started
            results[f"{stage}-{precision}"] = result
            engine.destroy()
        if rank == 0:
            torch.save(results, out)
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def engines(smoke_corpus, tmp_path_factory) -> dict:
    import torch.multiprocessing as mp

    out = tmp_path_factory.mktemp("deepspeed") / "results.pt"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    context = mp.start_processes(
        _worker, args=(2, port, str(smoke_corpus), str(out)), nprocs=2, join=False
    )
    deadline = time.monotonic() + 300  # a collective out of step hangs: fail instead
    while not context.join(timeout=5):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail("DeepSpeed workers did not finish in 300 s (deadlocked collective?)")
    return torch.load(out, weights_only=False)


def test_zero3_gathers_the_same_weights_and_counts_as_zero0(engines):
    zero0, zero3 = engines["0-fp32"], engines["3-fp32"]
    assert zero3["params"] == zero0["params"] > 0
    assert zero3["weights"].keys() == zero0["weights"].keys()
    gaps = {k: float((zero3["weights"][k] - v).abs().max()) for k, v in zero0["weights"].items()}
    worst = max(gaps, key=gaps.get)
    seconds = {k: round(v["seconds"], 1) for k, v in engines.items()}
    print(
        f"ZeRO-3 vs ZeRO-0 after {STEPS} steps: max |Δw| = {gaps[worst]:.3g} ({worst}); {seconds}"
    )
    assert gaps[worst] <= ZERO3_TOLERANCE
    for shape_source in (zero0, zero3):
        assert all(w.numel() > 0 for w in shape_source["weights"].values())
    assert len(set(zero3["digests"])) == 1 and len(zero3["digests"]) == 2
    assert len(set(zero0["digests"])) == 1


def test_zero3_validation_runs_in_lockstep_over_uneven_shards(engines):
    """Rank 1 holds fewer batches; without the extra forwards the fixture would deadlock."""
    assert 0 < engines["3-fp32"]["val_loss"] < 10


@pytest.mark.parametrize("config", ["0-bf16", "2-bf16"])
def test_bf16_exports_the_fp32_masters_not_their_bf16_rounding(engines, config):
    result = engines[config]
    weights, module = result["weights"], result["module"]
    rounded_away = 0
    for name, lowp in module.items():
        assert lowp.dtype == torch.bfloat16
        master = weights[name]
        assert master.dtype == torch.float32
        # The module holds the masters' rounding (DeepSpeed copies them over after each step)...
        assert torch.equal(master.bfloat16(), lowp), name
        rounded_away += int((master != lowp.float()).sum())
    # ...but the export is the masters: the old state_dict() export was all bf16 values.
    total = sum(p.numel() for p in module.values())
    assert rounded_away > 0.5 * total, (rounded_away, total)
    assert len(set(result["digests"])) == 1
