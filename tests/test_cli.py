"""The `voicescale` console script, run as a user would."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from scaling.cli import build_parser, main


def voicescale(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    exe = shutil.which("voicescale", path=str(Path(sys.executable).parent))
    command = [exe] if exe else [sys.executable, "-m", "scaling.cli"]
    return subprocess.run(
        [*command, *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
        check=False,
    )


def test_corpus_build_prints_the_card_then_hits_the_cache(tmp_path):
    out = tmp_path / "corpus"
    first = voicescale("corpus", "build", "--preset", "smoke", "--out", str(out), "--quiet")
    assert first.returncode == 0, first.stderr
    assert "built 440 utterances" in first.stdout
    assert "train" in first.stdout and "budgets" in first.stdout and "espeak-ng" in first.stdout
    assert "features" in first.stdout
    second = voicescale("corpus", "build", "--preset", "smoke", "--out", str(out), "--quiet")
    assert second.returncode == 0, second.stderr
    assert "cache hit" in second.stdout


def test_bad_preset_and_config_errors_are_one_clear_line(tmp_path):
    result = voicescale("corpus", "build", "--preset", "nope", "--out", str(tmp_path / "x"))
    assert result.returncode == 2
    assert "no synthetic corpus preset 'nope'" in result.stderr
    assert "Traceback" not in result.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("train_speakers: -3\n")
    result = voicescale("corpus", "build", "--config", str(bad), "--out", str(tmp_path / "y"))
    assert result.returncode == 2
    assert f"{bad}: train_speakers: Input should be greater than 0" in result.stderr


def test_prepare_rejects_an_impossible_heldout_fraction(tmp_path):
    result = voicescale(
        "corpus",
        "prepare",
        "--layout",
        "vctk",
        "--source",
        str(tmp_path),
        "--out",
        str(tmp_path / "o"),
        "--heldout-fraction",
        "1.5",
    )
    assert result.returncode == 2
    assert "heldout_fraction" in result.stderr and "less than 1" in result.stderr


def make_librispeech(root: Path, speakers: int = 4, per_speaker: int = 3) -> Path:
    """A tiny LibriSpeech-layout corpus: tones with transcripts (phonemised, never listened to)."""
    texts = ["The quiet garden waited.", "A small boat sailed home.", "Seven red apples fell."]
    t = np.arange(9600) / 16000
    for s in range(speakers):
        folder = root / str(300 + s) / "10"
        folder.mkdir(parents=True)
        lines = []
        for u in range(per_speaker):
            utt = f"{300 + s}-10-{u:04d}"
            audio = 0.3 * np.sin(2 * np.pi * (180 + 40 * s) * t)
            sf.write(str(folder / f"{utt}.flac"), audio.astype(np.float32), 16000)
            lines.append(f"{utt} {texts[(s + u) % len(texts)].upper().rstrip('.')}")
        (folder / f"{300 + s}-10.trans.txt").write_text("\n".join(lines) + "\n")
    return root


def test_prepare_takes_a_config_and_set_overrides(tmp_path):
    source = make_librispeech(tmp_path / "src")
    config = tmp_path / "real.yaml"
    config.write_text(f"layout: librispeech\nsource: {source}\nworkers: 1\n")
    out = tmp_path / "prepared"
    result = voicescale(
        "corpus",
        "prepare",
        "--config",
        str(config),
        "--set",
        "min_speakers_per_budget=1",
        "--set",
        "name=tiny",
        "--set",
        "seed=3",
        "--out",
        str(out),
        "--no-features",
        "--quiet",
    )
    assert result.returncode == 0, result.stderr
    assert "prepared 12 utterances" in result.stdout
    settings = json.loads((out / "corpus_card.json").read_text())["config"]
    assert settings["name"] == "tiny" and settings["seed"] == 3 and settings["workers"] == 1
    assert settings["layout"] == "librispeech" and settings["heldout_fraction"] == 0.1


def test_prepare_set_errors_name_the_key(tmp_path, capsys):
    common = ["corpus", "prepare", "--out", str(tmp_path / "o")]
    assert main([*common, "--layout", "vctk", "--source", str(tmp_path), "--set", "seed=x"]) == 2
    assert "command line: seed: Input should be a valid integer" in capsys.readouterr().err
    assert main([*common, "--source", str(tmp_path)]) == 2
    assert "command line: layout: required key is missing" in capsys.readouterr().err
    config = tmp_path / "real.yaml"
    config.write_text("layout: vctk\nsource: /nowhere\nheldout_fraction: 2\n")
    assert main([*common, "--config", str(config)]) == 2
    assert f"{config}: heldout_fraction: Input should be less than 1" in capsys.readouterr().err
    assert main([*common, "--config", str(config), "--set", "heldout_fraction=0.2"]) == 2
    assert "/nowhere: corpus source does not exist" in capsys.readouterr().err  # valid now


def test_the_prepare_shorthands_are_config_keys_with_no_defaults_of_their_own():
    """--layout/--source/--heldout-fraction/--workers/--name/--seed set RealCorpusConfig keys;
    left out, the config's own defaults stand (None here), so none is restated."""
    args = build_parser().parse_args(["corpus", "prepare", "--out", "o"])
    keys = ("config", "layout", "source", "heldout_fraction", "workers", "name", "seed")
    assert [getattr(args, k) for k in keys] == [None] * len(keys)
    assert args.set == []
    args = build_parser().parse_args(
        ["corpus", "prepare", "--out", "o", "--name", "v", "--seed", "2"]
    )
    assert (args.name, args.seed) == ("v", 2)


def test_every_subcommand_has_a_handler():
    parser = build_parser()
    for argv in (
        ["corpus", "build"],
        ["corpus", "prepare", "--out", "o"],
        ["corpus", "card", "c"],
        ["train", "--config", "t.yaml"],
        ["judges", "check"],
        ["sweep"],
        ["promote", "runs/x"],
    ):
        assert callable(parser.parse_args(argv).handler), argv
