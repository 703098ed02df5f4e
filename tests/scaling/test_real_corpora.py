"""The real path on CPU: real-corpus layouts (generated speech, no phoneme timings) prepared,
trained with the learned aligner, judged, promoted, loaded and made to speak."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from safetensors import safe_open

from scaling.cli import main as voicescale
from tests.corpus.layouts import clips, write_librispeech, write_libritts, write_vctk
from training.config import RealCorpusConfig
from training.corpus.audio import read_audio
from training.corpus.manifest import Corpus
from training.corpus.real import prepare_corpus
from training.inference import Synthesizer

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


def tiny_sweep(corpus: Path, name: str, sample_rate: int) -> dict:
    """One aligner-trained trial of the smallest model: the sweep machinery end to end."""
    return {
        "name": name,
        "grid": {
            "model_sizes": ["xs"],
            "data_budgets": [{"utterances": 48}],
            "seeds": [0],
            "baseline": False,
        },
        "trial": {
            "corpus": {"synthetic": None, "path": str(corpus)},
            "features": {"sample_rate": sample_rate},
            "training": {"steps": 20, "eval_every": 10, "batch_size": 8},
            "eval": {"sentences_per_speaker": 2, "bootstrap": 100, "quality": []},
            "resources": {"num_workers": 1, "cpus_per_worker": 1},
        },
    }


def test_libritts_layout_prepares_trains_with_the_aligner_promotes_and_speaks(
    smoke_corpus: Path, tmp_path: Path
) -> None:
    source = write_libritts(clips(Corpus.open(smoke_corpus), 10, 8), tmp_path / "src")
    prepared, runs = tmp_path / "libritts", tmp_path / "runs"
    sweep_yaml = tmp_path / "sweep.yaml"
    # 22.05 kHz, as the GPU preset: `prepare --for` takes the rate from the sweep's features.
    sweep_yaml.write_text(yaml.safe_dump(tiny_sweep(prepared, "libritts-tiny", 22050)))
    code = voicescale(
        [
            *("corpus", "prepare", "--layout", "libritts", "--source", str(source)),
            *("--out", str(prepared), "--for", str(sweep_yaml), "--heldout-fraction", "0.2"),
            *("--set", "min_speakers_per_budget=4", "--quiet"),
        ]
    )
    assert code == 0
    corpus = Corpus.open(prepared)
    assert {u.sample_rate for u in corpus.utterances} == {22050}
    assert all(u.durations is None for u in corpus.utterances)  # nothing to copy timings from

    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "scaling.cli",
            "sweep",
            "--config",
            str(sweep_yaml),
            "--runs-dir",
            str(runs),
            "--promote",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    (row,) = [json.loads(line) for line in (runs / "libritts-tiny" / "results.jsonl").open()]
    assert row["status"] == "done", row["error"]
    assert np.isfinite(row["sim"]) and np.isfinite(row["wer"]) and row["failed_utterances"] == 0

    export = runs / "libritts-tiny" / row["checkpoint"]
    config = json.loads((export / "model_config.json").read_text())
    assert config["learn_alignment"] is True
    with safe_open(str(export / "model.safetensors"), "pt") as weights:
        assert any(k.startswith("aligner.") for k in weights.keys())  # noqa: SIM118 (safe_open)

    from scaling.promote import load_champion

    champion = load_champion(f"sqlite:///{runs / 'mlflow.db'}", tmp_path / "champion")
    prompt = corpus.heldout[0]
    wave, rate = read_audio(corpus.audio_path(prompt))
    speech = champion.synthesize("The small boat sailed home.", wave, rate)
    assert champion.features.sample_rate == 22050
    assert speech.ndim == 1 and len(speech) > 0 and np.isfinite(speech).all()


@pytest.mark.parametrize(
    ("layout", "write", "native_rate"),
    [("librispeech", write_librispeech, 16000), ("vctk", write_vctk, 48000)],
)
def test_librispeech_and_vctk_layouts_prepare_and_train_one_trial(
    ray_local, smoke_corpus: Path, tmp_path: Path, layout, write, native_rate
) -> None:
    from cluster.trial_runner import run_trial
    from training.config import (
        MODEL_LADDER,
        CorpusRef,
        DataBudget,
        DataConfig,
        ResourcesConfig,
        TrainingConfig,
        TrialConfig,
    )

    source = write(clips(Corpus.open(smoke_corpus), 6, 8), tmp_path / "src")
    cfg = RealCorpusConfig(
        layout=layout,
        source=str(source),
        workers=1,
        heldout_fraction=0.3,
        min_speakers_per_budget=2,
    )
    report = prepare_corpus(cfg, tmp_path / "prepared", progress=False)
    corpus = Corpus.open(report.root)
    assert report.skipped == 0 and len(corpus.utterances) == 48
    assert {u.source["sample_rate"] for u in corpus.utterances} == {native_rate}

    trial = TrialConfig(
        model=MODEL_LADDER["xs"],
        data=DataConfig(
            corpus=CorpusRef(synthetic=None, path=str(report.root)),
            budget=DataBudget(utterances=24),
        ),
        training=TrainingConfig(steps=6, eval_every=6, checkpoint_every=6, batch_size=4),
        resources=ResourcesConfig(num_workers=1),
    )
    outcome = run_trial(trial, report.root, tmp_path / "storage", max_failures=0)
    assert outcome.status == "done", outcome.error
    assert np.isfinite(outcome.metrics["val_loss"])
    synthesizer = Synthesizer.load(outcome.export_dir)
    wave, rate = read_audio(corpus.audio_path(corpus.heldout[0]))
    speech = synthesizer.synthesize("Seven red apples fell.", wave, rate)
    assert speech.ndim == 1 and np.isfinite(speech).all()
