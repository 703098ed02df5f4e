"""The judges on a prepared *real-layout* corpus (no grammar.jsgf), offline, with the
default settings: what `voicescale judges check --corpus DIR` does for LibriTTS-R."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest

from eval.asr import make_transcriber, resolve_asr_judge
from eval.errors import JudgeUnavailable
from eval.evaluate_checkpoint import Judges
from eval.speaker_similarity import make_embedder
from scaling.cli import main
from tests.corpus.spoken import prepare_spoken_libritts
from tests.eval.tiny_ecapa import write_ecapa_dir
from training.config import EvalConfig


@pytest.mark.slow
def test_judges_check_runs_offline_on_a_prepared_real_corpus(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    corpus = prepare_spoken_libritts(tmp_path, voices=4, per_speaker=3)  # 2 held-out voices
    assert not (corpus.root / "grammar.jsgf").exists()

    assert main(["judges", "check", "--corpus", str(corpus.root), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)

    assert result["judges"]["asr"].startswith("pocketsphinx-lm: pocketsphinx 5.1.1")
    assert (result["utterances"], result["speakers"]) == (6, 2)
    assert all(math.isfinite(result[k]) for k in ("gt_wer", "eer", "noise_wer", "gl_wer"))
    assert result["gt_wer"] < 0.85  # it hears words (≈ 0.57 measured on these eSpeak voices)
    assert result["noise_wer"] > result["gt_wer"] + 0.2
    assert result["wrong_text_wer"] > result["gt_wer"]
    assert result["eer"] <= 0.25 and result["identical_sim"] > 0.99
    assert result["cache_dir"] == str((tmp_path / "judges").resolve())  # beside the corpus


def test_auto_is_the_grammar_judge_only_where_there_is_a_grammar(tmp_path):
    assert resolve_asr_judge("auto", tmp_path / "grammar.jsgf") == "pocketsphinx-jsgf"
    assert resolve_asr_judge("auto", None) == "pocketsphinx-lm"
    assert resolve_asr_judge("whisper", None) == "whisper"
    with pytest.raises(ValueError, match=r"eval\.asr_judge: unknown ASR judge 'kaldi'"):
        resolve_asr_judge("kaldi", None)
    judge = make_transcriber("auto", grammar=None)
    assert judge.name == "pocketsphinx-lm"
    assert judge.version().startswith("pocketsphinx-lm:")


def test_hub_judges_are_cached_where_the_config_says_never_in_the_cwd(tmp_path, monkeypatch):
    """cfg.cache_dir wins over the argument, which wins over `judges/` beside the corpus."""
    ecapa = tmp_path / "ecapa"
    write_ecapa_dir(ecapa)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    corpus_root = tmp_path / "data" / "corpus"
    cfg = EvalConfig(speaker_judge="speechbrain-ecapa", speaker_judge_source=str(ecapa), quality=())

    assert Judges.cache_dir_for(cfg, corpus_root) == (tmp_path / "data" / "judges").resolve()
    assert Judges.cache_dir_for(cfg, corpus_root, tmp_path / "arg") == tmp_path / "arg"
    configured = dataclasses.replace(cfg, cache_dir=str(tmp_path / "cfg"))
    assert Judges.cache_dir_for(configured, corpus_root, tmp_path / "arg") == tmp_path / "cfg"

    judges = Judges.build(configured, corpus_root, cache_dir=tmp_path / "arg")
    assert judges.transcriber.name == "pocketsphinx-lm"  # no grammar.jsgf at corpus_root
    assert (tmp_path / "cfg" / "speechbrain-ecapa" / "local" / "hyperparams.yaml").exists()
    assert not (tmp_path / "arg").exists()
    assert list(work.iterdir()) == []


def test_a_speechbrain_judge_without_a_cache_dir_is_refused(tmp_path):
    ecapa = tmp_path / "ecapa"
    write_ecapa_dir(ecapa)

    with pytest.raises(JudgeUnavailable, match=r"speechbrain-ecapa: no cache directory"):
        make_embedder("speechbrain-ecapa", source=str(ecapa))
