"""The `voicescale` console script, run as a user would."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path


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
    assert "built 416 utterances" in first.stdout
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
