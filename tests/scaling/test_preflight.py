"""`voicescale sweep --dry-run` on the GPU preset: everything that can be checked before a
GPU-hour is spent, against a real Ray cluster, and each problem named by its config field."""

from __future__ import annotations

from pathlib import Path

import pytest

from scaling.cli import main as voicescale
from scaling.preflight import resource_problems
from scaling.sweep import run_sweep
from tests.corpus.layouts import clips, write_libritts
from tests.eval.tiny_ecapa import write_ecapa_dir
from tests.eval.tiny_whisper import write_tiny_whisper
from training.config import ConfigError, SweepConfig, load_config, with_overrides
from training.corpus.manifest import Corpus

REPO = Path(__file__).resolve().parents[2]
GPU_PRESET = REPO / "configs" / "sweeps" / "libritts-r-gpu.yaml"


def preset_trials() -> list:
    return load_config(SweepConfig, GPU_PRESET).trials()


def test_resource_problems_name_the_trial_and_what_does_not_fit() -> None:
    big_node = {"CPU": 64.0, "GPU": 8.0}
    assert resource_problems(preset_trials(), [big_node, big_node]) == []
    # xxl wants 8 workers × (8 CPUs + 1 GPU): one 8-GPU node has room for all of them.
    assert resource_problems(preset_trials(), [big_node]) == []
    few_cpus = resource_problems(preset_trials(), [{"CPU": 4.0, "GPU": 8.0}])
    assert few_cpus and all("no node of the cluster has that much" in p for p in few_cpus)
    small = resource_problems(preset_trials(), [{"CPU": 32.0, "GPU": 2.0}])
    assert any(p.startswith("trial xxl-") and "num_workers = 8" in p for p in small)
    assert not any(p.startswith("trial m-") for p in small)  # 2 workers × 1 GPU fit


@pytest.fixture(scope="module")
def gpu_cluster():
    """A real Ray cluster whose head declares 8 GPUs and 64 CPUs (logical resources: nothing
    runs on them; the dry run only reads what the cluster offers)."""
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 64, "num_gpus": 8})
    yield cluster.address
    ray.shutdown()
    cluster.shutdown()


@pytest.fixture(scope="module")
def small_libritts(smoke_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A small LibriTTS-layout corpus prepared for the GPU preset (22.05 kHz), and the
    same source prepared at the default 16 kHz."""
    work = tmp_path_factory.mktemp("preflight")
    source = write_libritts(clips(Corpus.open(smoke_corpus), 10, 12), work / "src")
    prepared = {}
    for name, extra in (("gpu", ["--for", str(GPU_PRESET)]), ("16k", [])):
        out = work / name
        args = ["corpus", "prepare", "--layout", "libritts", "--source", str(source)]
        args += ["--out", str(out), "--heldout-fraction", "0.2", "--quiet", *extra]
        assert voicescale(args) == 0
        prepared[name] = out
    prepared["ecapa"] = work / "ecapa"
    write_ecapa_dir(prepared["ecapa"])
    prepared["whisper"] = write_tiny_whisper(work / "whisper")
    prepared["runs"] = work / "runs"
    return prepared


def preset(corpus: Path, models: dict, *extra: str) -> SweepConfig:
    """The GPU preset as written, but for its corpus, budgets that fit a small corpus and
    judges from local directories (no model hub here)."""
    return with_overrides(
        load_config(SweepConfig, GPU_PRESET),
        [
            f"trial.corpus.path={corpus}",
            "grid.data_budgets=[{utterances: 16}, {utterances: 32}]",
            f"trial.eval.speaker_judge_source={models['ecapa']}",
            f"trial.eval.asr_judge_source={models['whisper']}",
            *extra,
        ],
    )


def dry_run(sweep: SweepConfig, runs: Path, capsys) -> tuple[int, dict[str, str]]:
    code = run_sweep(sweep, runs_dir=runs, dry_run=True)
    lines = capsys.readouterr().out.split("checks:\n")[1].splitlines()
    return code, {line.split()[1]: line for line in lines}


@pytest.mark.slow
def test_the_gpu_preset_passes_its_dry_run_on_a_small_prepared_corpus(
    small_libritts, gpu_cluster, monkeypatch, capsys
) -> None:
    monkeypatch.setenv("RAY_ADDRESS", gpu_cluster)
    code, checks = dry_run(
        preset(small_libritts["gpu"], small_libritts), small_libritts["runs"], capsys
    )
    assert code == 0, checks
    assert set(checks) == {
        "corpus",
        "rate",
        "budgets",
        "held-out",
        "speaker",
        "asr",
        "vocoder",
        "resources",
    }
    assert all(line.split()[0] == "ok" for line in checks.values()), checks
    assert "22050 Hz" in checks["rate"]
    assert "faster-whisper" in checks["asr"] and "ECAPA" in checks["speaker"]
    assert "8 GPUs" in checks["resources"]


@pytest.mark.slow
def test_a_preset_that_cannot_work_fails_its_dry_run_naming_each_field(
    small_libritts, gpu_cluster, monkeypatch, capsys
) -> None:
    monkeypatch.setenv("RAY_ADDRESS", gpu_cluster)
    runs = small_libritts["runs"]
    code, checks = dry_run(preset(small_libritts["16k"], small_libritts), runs, capsys)
    assert code == 2 and "FAIL" in checks["rate"]
    assert (
        "trial.features.sample_rate is 22050 Hz" in checks["rate"] and "16000 Hz" in checks["rate"]
    )

    as_written = with_overrides(
        preset(small_libritts["gpu"], small_libritts),
        ["grid.data_budgets=[{hours: 10}]", "trial.eval.asr_judge_source=/nonexistent/whisper"],
    )
    code, checks = dry_run(as_written, runs, capsys)
    assert code == 2
    assert "grid.data_budgets[0] (h10)" in checks["budgets"]
    assert "/nonexistent/whisper" in checks["asr"] and checks["speaker"].split()[0] == "ok"

    crowded = preset(small_libritts["gpu"], small_libritts, "trial.resources.num_workers=16")
    code, checks = dry_run(crowded, runs, capsys)
    assert code == 2 and "num_workers = 16" in checks["resources"]


@pytest.mark.slow
def test_a_sweep_that_cannot_work_stops_before_any_trial_starts(small_libritts, capsys) -> None:
    """Without a cluster, this CPU machine cannot give the preset its GPUs: the sweep itself
    (not only the dry run) refuses, naming the field, and starts nothing."""
    runs = small_libritts["runs"] / "refused"
    sweep = preset(small_libritts["16k"], small_libritts)
    with pytest.raises(
        ConfigError, match=r"(?s)rate: trial.features.sample_rate.*resources: trial"
    ):
        run_sweep(sweep, runs_dir=runs)
    assert not (runs / sweep.name / "trials").exists()
