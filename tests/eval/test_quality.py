"""Perceptual quality (`eval.quality`): DNSMOS ranks real speech above its Griffin-Lim
resynthesis above white noise; its scores reach results, rows, MLflow and the report with a
speaker-clustered interval; a UTMOS judge loads from a local directory, or names what is missing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import torch

from eval.errors import JudgeUnavailable
from eval.evaluate_checkpoint import _aggregate, _failed, evaluate_checkpoint
from eval.judges import Judges
from eval.quality import MOS_FLOOR, QUALITY_METRICS, DnsmosJudge, UtmosJudge
from eval.result import EvalResult
from scaling import report_rows
from scaling.figures import draw_figures
from scaling.report_fits import sim_wer_section
from store.outcome import TrialOutcome
from store.records import QUALITY_FIELDS, ResultRow
from training.config import ConfigError, EvalConfig, TrialConfig, from_dict
from training.corpus.audio import read_audio
from training.corpus.manifest import Corpus


@pytest.fixture(scope="module")
def quality_eval(trained_export, smoke_corpus, tmp_path_factory) -> dict[str, Any]:
    """One evaluation of the trained export with both quality judges (UTMOS: a stand-in
    model, see `_LoudnessMos`), one sentence per held-out voice: DNSMOS costs about 1 s of CPU
    per utterance (several 9 s windows of a repeated 2-3 s clip)."""
    root = tmp_path_factory.mktemp("quality")
    utmos_dir = _write_utmos_dir(root / "utmos")
    cfg = EvalConfig(
        sentences_per_speaker=1,
        bootstrap=200,
        audio_samples=1,
        quality=("dnsmos", "utmos"),
        utmos_dir=str(utmos_dir),
    )
    result = evaluate_checkpoint(trained_export, smoke_corpus, root / "out", cfg=cfg)
    records = [json.loads(line) for line in (root / "out" / "per_utterance.jsonl").open()]
    return {"result": result, "records": records, "out": root / "out", "utmos_dir": utmos_dir}


@pytest.mark.slow
def test_dnsmos_ranks_ground_truth_over_griffin_lim_over_noise(quality_eval, smoke_corpus):
    """On the held-out sentences: the recordings (the ground-truth ceiling) score above the
    same mels through Griffin-Lim (the vocoder ceiling), which score above white noise as
    long and as loud as each recording; each a mean over the same utterances."""
    ceilings = quality_eval["result"].ceilings
    corpus = Corpus.open(smoke_corpus)
    by_id = {u.id: u for u in corpus.heldout}
    judge, rng = DnsmosJudge(), np.random.default_rng(0)
    noise = []
    for record in quality_eval["records"]:
        wave, rate = read_audio(corpus.audio_path(by_id[record["id"]]))
        loud_as_it = rng.normal(0, np.sqrt(np.mean(wave**2)), len(wave))
        noise.append(judge.score(loud_as_it, rate)["dnsmos"])
    gt, gl = ceilings["ground_truth_dnsmos"], ceilings["vocoded_ground_truth_dnsmos"]
    assert gt > gl > float(np.mean(noise)), (gt, gl, noise)
    assert 1.0 <= float(np.mean(noise)) < 1.5 and gt < 5.0
    for prefix in ("ground_truth_", "vocoded_ground_truth_"):
        low, high = ceilings[f"{prefix}dnsmos_ci"]
        assert low <= ceilings[f"{prefix}dnsmos"] <= high


@pytest.mark.slow
def test_utmos_and_dnsmos_scores_reach_the_result(quality_eval):
    """Both quality judges on a trained model's cloned sentences: each utterance's scores in
    the JSONL, their means with speaker-clustered intervals in the result, the ceilings of
    both, and the judges' versions."""
    result, records = quality_eval["result"], quality_eval["records"]
    assert result.failed_utterances == 0 and len(records) == result.utterances == 4
    for metric in ("dnsmos", "utmos"):
        value, (low, high) = getattr(result, metric), getattr(result, f"{metric}_ci")
        assert value == pytest.approx(np.mean([r[metric] for r in records]))
        assert 1.0 < value < 5.0 and low <= value <= high and low < high
        assert 1.0 < result.ceilings[f"ground_truth_{metric}"] < 5.0
        assert metric in result.judges
    assert all({"dnsmos_sig", "dnsmos_bak", "dnsmos_p808"} <= set(r) for r in records)
    assert "sha256" in result.judges["utmos"]
    sample = next(r for r in records if "audio" in r)
    wave, rate = sf.read(str(quality_eval["out"] / sample["audio"]), dtype="float32")
    heard = UtmosJudge(quality_eval["utmos_dir"]).score(wave, rate)["utmos"]
    assert sample["utmos"] == pytest.approx(heard, abs=1e-3)  # the saved clip is 16-bit


@pytest.mark.slow
def test_dnsmos_sessions_score_as_speechmos_does_on_the_judges_threads(smoke_corpus):
    """Our sessions (made once per thread budget) give speechmos's own numbers."""
    from speechmos import dnsmos

    corpus = Corpus.open(smoke_corpus)
    wave, rate = read_audio(corpus.audio_path(corpus.heldout[0]))
    judge = DnsmosJudge()
    ours = judge.score(wave, rate)
    assert judge.score(wave, rate) == ours and len(judge._scorers) == 1
    theirs = dnsmos.run(wave, rate)
    assert ours["dnsmos"] == pytest.approx(theirs["ovrl_mos"], abs=1e-6)
    assert ours["dnsmos_sig"] == pytest.approx(theirs["sig_mos"], abs=1e-6)
    assert ours["dnsmos_bak"] == pytest.approx(theirs["bak_mos"], abs=1e-6)
    (scorer,) = judge._scorers.values()
    threads = scorer.onnx_sess.get_session_options().intra_op_num_threads
    assert threads == torch.get_num_threads()


def test_quality_scores_flow_to_the_result_row_and_mlflow(tmp_path):
    """Per-utterance scores → a mean with a speaker-clustered interval → EvalResult → the row
    (and back through its file) → MLflow; a failed utterance scores the floor; a row from
    before DNSMOS still loads, without it."""
    records = [
        {"speaker": s, "errors": 1, "words": 5, "sim": 0.6, "dnsmos": score}
        for s, score in (("a", 2.0), ("a", 2.2), ("b", 3.0), ("b", 3.2), ("c", 2.5))
    ]
    assert "dnsmos" not in _failed(_item("one two"), "silent audio")  # no quality judge
    record = {"speaker": "c", **_failed(_item("one two"), "silent audio", ("dnsmos",))}
    assert record["dnsmos"] == MOS_FLOOR
    scores = _aggregate([*records, record], 200)
    assert scores["dnsmos"] == pytest.approx((2.0 + 2.2 + 3.0 + 3.2 + 2.5 + 1.0) / 6)
    low, high = scores["dnsmos_ci"]
    assert low < scores["dnsmos"] < high
    result = EvalResult(**scores, ceilings={"ground_truth_dnsmos": 3.1})
    assert EvalResult.from_json(json.loads(json.dumps(result.to_json()))) == result
    assert "utmos" not in result.to_json()  # a judge not run leaves no key
    outcome = TrialOutcome.from_json({"trial": "t", "status": "done", "eval": result.to_json()})
    row = outcome.row(TrialConfig(), sweep_dir=tmp_path, mlflow_run_id=None)
    assert (row.dnsmos, row.dnsmos_ci) == (scores["dnsmos"], (low, high))
    assert row.ceilings is not None and row.ceilings.ground_truth.dnsmos == 3.1
    assert ResultRow.from_json(json.loads(json.dumps(row.to_json()))) == row
    metrics = row.mlflow_metrics()
    assert (metrics["dnsmos"], metrics["dnsmos_ci_low"], metrics["dnsmos_ci_high"]) == (
        scores["dnsmos"],
        low,
        high,
    )
    assert QUALITY_FIELDS == QUALITY_METRICS  # the row's columns are the judges' metrics
    old = {"trial": "t", "status": "done", "sim": 0.5, "wer": 0.2}
    old["ceilings"] = {"ground_truth": {"sim": 0.9, "wer": 0.1}, "vocoder": {"sim": 0.8}}
    before = ResultRow.from_json(old)
    assert before.dnsmos is None and before.dnsmos_ci is None and before.metric("dnsmos") is None
    assert before.ceilings is not None and before.ceilings.vocoder.dnsmos is None
    assert "dnsmos_ci_low" not in before.mlflow_metrics()


def _item(text: str):
    """The part of an `EvalItem` that `_failed` reads."""
    from types import SimpleNamespace

    return SimpleNamespace(target=SimpleNamespace(text=text))


def test_the_report_plots_dnsmos_against_data_with_its_ceilings(tmp_path):
    ceilings = {
        "ground_truth": {"sim": 0.9, "wer": 0.1, "dnsmos": 2.4},
        "vocoder": {"sim": 0.8, "wer": 0.2, "dnsmos": 2.1},
    }
    rows = [
        ResultRow.from_json(
            {
                "trial": f"s-u{d}-seed0",
                "model_size": "s",
                "params": 1000,
                "data_utterances": d,
                "status": "done",
                "sim": 0.5,
                "wer": 0.5,
                "dnsmos": score,
                "dnsmos_ci": [score - 0.1, score + 0.1],
                "ceilings": ceilings,
            }
        )
        for d, score in ((64, 1.6), (256, 1.8))
    ]
    assert report_rows.ceilings(rows)["vocoder"]["dnsmos"] == 2.1
    (point, _) = report_rows.metric_points(rows, "dnsmos")["s"]
    assert (point.mean, point.lo, point.hi) == pytest.approx((1.6, 1.5, 1.7))
    figures = draw_figures(rows, {}, tmp_path / "figures")
    assert figures["quality"].is_file()
    assert 'id="quality"' in sim_wer_section(figures)
    unjudged = [ResultRow(**{**r.__dict__, "dnsmos": None, "dnsmos_ci": None}) for r in rows]
    figures = draw_figures(unjudged, {}, tmp_path / "figures")
    assert "quality" not in figures and not (tmp_path / "figures" / "quality.png").exists()
    assert "No trial has a perceptual quality score" in sim_wer_section(figures)


def test_judges_check_prints_the_quality_rows(monkeypatch, capsys, tmp_path):
    """`voicescale judges check` shows DNSMOS of ground truth, vocoder and noise."""
    import eval.judges_check
    from scaling.cli import main

    result = {
        **dict.fromkeys(
            ("eer", "identical_sim", "gt_wer", "gl_wer", "wrong_text_wer", "noise_wer"), 0.1
        ),
        "same_speaker_sim": 0.8,
        "different_speaker_sim": 0.3,
        "gt_dnsmos": 2.25,
        "gl_dnsmos": 2.0,
        "noise_dnsmos": 1.1,
        "speakers": 2,
        "utterances": 6,
        "judges": {"dnsmos": "speechmos"},
        "corpus": str(tmp_path),
        "seconds": 1.0,
    }
    monkeypatch.setattr(eval.judges_check, "check_judges", lambda *a, **k: result)
    assert main(["judges", "check", "--corpus", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for line in ("ground-truth DNSMOS", "vocoder resynthesis DNSMOS", "noise DNSMOS"):
        assert line in out
    assert "2.250" in out and "1.100" in out


# --- UTMOS from a local directory ----------------------------------------------------------


class _LoudnessMos(torch.nn.Module):
    """A stand-in for UTMOS with its interface: (1, samples) → a MOS in (1, 5)."""

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return 1.0 + 4.0 * torch.tanh(10.0 * wave.pow(2).mean().sqrt())


def _write_utmos_dir(directory: Path) -> Path:
    directory.mkdir(parents=True)
    torch.jit.script(_LoudnessMos()).save(str(directory / "utmos.pt"))
    return directory


def test_missing_utmos_weights_name_the_field_and_the_path(tmp_path):
    with pytest.raises(JudgeUnavailable, match=r"set eval\.utmos_dir"):
        UtmosJudge(None)
    with pytest.raises(JudgeUnavailable, match=rf"eval\.utmos_dir {tmp_path / 'absent'}"):
        UtmosJudge(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(JudgeUnavailable, match=rf"{tmp_path / 'empty' / 'utmos.pt'} is missing"):
        UtmosJudge(tmp_path / "empty")
    (tmp_path / "empty" / "utmos.pt").write_text("not a model")
    with pytest.raises(JudgeUnavailable, match="not a TorchScript module"):
        UtmosJudge(tmp_path / "empty")
    with pytest.raises(ConfigError, match="utmos_dir"):
        from_dict(EvalConfig, {"quality": ["utmos"]})
    cfg = EvalConfig(quality=("utmos",), utmos_dir=str(tmp_path / "absent"))
    with pytest.raises(JudgeUnavailable, match=r"eval\.utmos_dir"):
        Judges.build(cfg, tmp_path)
