"""Load an exported model (neural or baseline) and clone a voice: text + reference → waveform.

An export directory holds `model.safetensors` and `model_config.json`; nothing is unpickled.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from training.config import EvalConfig, FeatureConfig, ModelConfig, TrialConfig, from_dict
from training.corpus.audio import resample
from training.corpus.espeak import Espeak
from training.corpus.features import MelExtractor
from training.data import Vocabulary, reference_frames
from training.model import VoiceCloner
from training.vocoder import Vocoder, vocoder_for

__all__ = ["Synthesizer", "export_features"]


class Synthesizer:
    """`synthesize(text, reference_audio, sample_rate)` for any exported trial."""

    def __init__(
        self,
        trial: TrialConfig,
        vocab: Vocabulary,
        predict,
        vocoder: Vocoder,
    ) -> None:
        self.trial, self.vocab, self.vocoder = trial, vocab, vocoder
        self.features: FeatureConfig = trial.data.features
        # (phoneme ids [N], reference mel [R, M], durations [N] | None) -> log-mel [T, M]
        self._predict = predict
        self._mel = MelExtractor(self.features)
        self._espeak: Espeak | None = None
        self.ref_frames = reference_frames(
            trial.eval.prompt_seconds, self.features.sample_rate, self.features.hop_length
        )

    @classmethod
    def load(
        cls,
        export_dir: str | Path,
        vocoder: Vocoder | None = None,
        *,
        cfg: EvalConfig | None = None,
        cache_dir: str | Path | None = None,
    ) -> Synthesizer:
        """Rebuild an export. The vocoder is `vocoder`, else the one `cfg` (default: the
        trial's own eval settings) selects, downloaded into `cache_dir` unless the config
        names a cache (default: beside the export)."""
        export_dir = Path(export_dir)
        config = _export_config(export_dir)
        trial = _export_trial(export_dir, config)
        vocab = Vocabulary(tuple(config["vocabulary"]))
        cache_dir = cache_dir or export_dir.parent / "judges"
        vocoder = vocoder or vocoder_for(trial.data.features, cfg or trial.eval, cache_dir)
        if config["kind"] == "baseline":
            return cls(trial, vocab, _load_baseline(export_dir, trial).predict, vocoder)
        model = load_neural(
            export_dir,
            trial.model,
            len(vocab),
            config["n_mels"],
            config.get("learn_alignment", False),
        )

        @torch.no_grad()
        def predict(
            ids: np.ndarray, ref: np.ndarray, durations: np.ndarray | None = None
        ) -> np.ndarray:
            out = model(
                torch.from_numpy(ids)[None],
                torch.tensor([len(ids)]),
                torch.from_numpy(ref)[None].float(),
                torch.tensor([len(ref)]),
                durations=None if durations is None else torch.from_numpy(durations)[None],
            )
            return out.mel[0].float().numpy()

        return cls(trial, vocab, predict, vocoder)

    def phonemize(self, text: str) -> np.ndarray:
        if self._espeak is None:
            self._espeak = Espeak()
        return self.vocab.encode(self._espeak.phonemize(text))

    def reference_mel(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        """The first `prompt_seconds` of the reference as log-mel frames."""
        wave = resample(np.asarray(audio, dtype=np.float32), sample_rate, self.features.sample_rate)
        return self._mel(wave).numpy()[: self.ref_frames]

    def predict_mel(
        self, phoneme_ids: np.ndarray, ref_mel: np.ndarray, durations: np.ndarray | None = None
    ) -> np.ndarray:
        """Log-mel for phoneme ids in the reference's voice; `durations` (frames per phoneme)
        teacher-force the timing, else the model predicts it."""
        return self._predict(phoneme_ids, ref_mel, durations)

    def synthesize(self, text: str, reference_audio: np.ndarray, sample_rate: int) -> np.ndarray:
        """Speech for `text` in the voice of `reference_audio`, at `self.features.sample_rate`."""
        mel = self.predict_mel(
            self.phonemize(text), self.reference_mel(reference_audio, sample_rate)
        )
        return self.vocoder(torch.from_numpy(mel)).numpy()


def export_features(export_dir: Path) -> FeatureConfig:
    """The log-mel recipe an export was trained on (from its model_config.json)."""
    return _export_trial(export_dir, _export_config(export_dir)).data.features


def _export_config(export_dir: Path) -> dict:
    return json.loads((Path(export_dir) / "model_config.json").read_text())


def _export_trial(export_dir: Path, config: dict) -> TrialConfig:
    return from_dict(TrialConfig, config["trial"], source=str(export_dir))


def _load_baseline(export_dir: Path, trial: TrialConfig):
    """The traditional model of the trial's method (`TrialConfig.baseline`)."""
    if trial.baseline == "concatenative":
        from training.concatenative import ConcatenativeModel

        return ConcatenativeModel.load(export_dir)
    from training.baseline import BaselineModel

    return BaselineModel.load(export_dir)


def load_neural(
    export_dir: Path, cfg: ModelConfig, n_phonemes: int, n_mels: int, learn_alignment: bool
) -> VoiceCloner:
    """Rebuild the network and load its safetensors weights (strict: every key must match)."""
    from safetensors.torch import load_file

    model = VoiceCloner(cfg, n_phonemes, n_mels, learn_alignment=learn_alignment)
    model.load_state_dict(load_file(str(export_dir / "model.safetensors")), strict=True)
    return model.eval()
