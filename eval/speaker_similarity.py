"""Speaker-embedding judges: waveforms → unit-length speaker embeddings, and cosine similarity.

Backends (`EvalConfig.speaker_judge`):
    resemblyzer        offline default: the GE2E encoder shipped inside the Resemblyzer wheel
    speechbrain-ecapa  speechbrain's ECAPA-TDNN (`speechbrain/spkrec-ecapa-voxceleb`, or a local
                       directory with hyperparams.yaml + embedding_model.ckpt)

speechbrain loads checkpoints non-strictly: a key mismatch (e.g. a `module.` prefix from
DataParallel) leaves weights random with only a warning. This module strips such prefixes,
loads strictly, and checks the loaded tensors equal the checkpoint's.

SIM of a generated utterance = cosine to the speaker's embedding from *other* real audio of
that speaker (never the prompt clip itself), see `evaluate_checkpoint`.
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from eval.errors import JudgeUnavailable
from eval.hub import pinned_hub_fetch
from training.corpus.audio import resample

__all__ = [
    "ResemblyzerEmbedder",
    "SpeakerEmbedder",
    "SpeechbrainEcapaEmbedder",
    "cosine",
    "make_embedder",
    "verify_checkpoint_loaded",
]

SAMPLE_RATE = 16000
PARTIALS_PER_BATCH = 64
"""Resemblyzer partials per LSTM call (each 160 frames × 40 mels)."""
ECAPA_HUB_ID = "speechbrain/spkrec-ecapa-voxceleb"
ECAPA_HUB_REVISION = "5c0be3875fda05e81f3c004ed8c7c06be308de1e"
"""The revision pyannote.audio pins for this model (its diarization pipeline's default)."""


class SpeakerEmbedder(Protocol):
    name: str

    def embed(self, waveforms: list[np.ndarray], sample_rate: int) -> np.ndarray:
        """[n, dim] unit vectors; a row of NaN where the audio holds no usable speech."""
        ...

    def version(self) -> str: ...


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


class ResemblyzerEmbedder:
    """Resemblyzer's pretrained GE2E speaker encoder (its weights are in the PyPI wheel)."""

    name = "resemblyzer"

    def __init__(self) -> None:
        try:
            from resemblyzer import VoiceEncoder
        except ImportError as err:
            raise JudgeUnavailable(
                f"resemblyzer: cannot import it ({err}); it is in "
                "requirements.lock, rebuild the venv with `make venv`"
            ) from None
        self._encoder = VoiceEncoder("cpu", verbose=False)

    def embed(self, waveforms: list[np.ndarray], sample_rate: int) -> np.ndarray:
        """Resemblyzer's `embed_utterance` (1.6 s partials at 1.3 per second, their mean,
        unit length), with the partials of every waveform run through the LSTM in shared
        batches: one call per `PARTIALS_PER_BATCH` partials instead of one per utterance
        (a speaker's enrolment set is 16+ utterances)."""
        from resemblyzer import preprocess_wav

        partials: list[np.ndarray] = []  # [160 frames, 40 mels] each
        owners: list[int] = []
        for n, wave in enumerate(waveforms):
            audio = resample(np.asarray(wave, dtype=np.float32), sample_rate, SAMPLE_RATE)
            try:
                speech = preprocess_wav(audio, source_sr=SAMPLE_RATE)  # trims silence
                mels = self._partials(speech) if len(speech) else []
            except (ValueError, RuntimeError):
                mels = []
            partials += mels
            owners += [n] * len(mels)
        out = np.full((len(waveforms), 256), np.nan)
        if not partials:
            return out
        embedded = np.concatenate(
            [
                self._forward(np.stack(partials[i : i + PARTIALS_PER_BATCH]))
                for i in range(0, len(partials), PARTIALS_PER_BATCH)
            ]
        )
        owner = np.array(owners)
        for n in np.unique(owner):
            out[n] = _unit(embedded[owner == n].mean(0).astype(np.float64))
        return out

    def _partials(self, speech: np.ndarray) -> list[np.ndarray]:
        """The mel spectrograms of one utterance's partials, as `embed_utterance` cuts them."""
        from resemblyzer import audio

        wav_slices, mel_slices = self._encoder.compute_partial_slices(
            len(speech), rate=1.3, min_coverage=0.75
        )
        if wav_slices[-1].stop >= len(speech):
            speech = np.pad(speech, (0, wav_slices[-1].stop - len(speech)), "constant")
        mel = audio.wav_to_mel_spectrogram(speech)
        return [mel[s] for s in mel_slices]

    def _forward(self, mels: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return self._encoder(torch.from_numpy(mels)).numpy()

    def version(self) -> str:
        return f"resemblyzer {metadata.version('resemblyzer')} (GE2E, in-wheel weights)"


class SpeechbrainEcapaEmbedder:
    """speechbrain ECAPA-TDNN speaker embeddings from a hub id or a local directory."""

    name = "speechbrain-ecapa"

    def __init__(
        self, source: str | None, savedir: str | Path | None, revision: str | None = None
    ) -> None:
        from speechbrain.inference.speaker import EncoderClassifier

        if source is None:
            source, revision = ECAPA_HUB_ID, revision or ECAPA_HUB_REVISION
        fetch = pinned_hub_fetch(
            "speechbrain-ecapa", source, revision, "eval.speaker_judge_revision"
        )
        if savedir is None:
            raise JudgeUnavailable(
                "speechbrain-ecapa: no cache directory to download into (set eval.cache_dir, "
                "or pass cache_dir= to make_embedder)"
            )
        savedir = Path(savedir) / (revision or "local")[:12]  # one copy per pinned revision
        try:
            self._model = EncoderClassifier.from_hparams(
                source=source,
                savedir=str(savedir),
                run_opts={"device": "cpu"},
                **({"fetch_config": fetch} if fetch else {}),
            )
        except Exception as err:
            raise JudgeUnavailable(
                f"speechbrain-ecapa: cannot load {source!r} ({type(err).__name__}: {err}). "
                "Without access to the model hub, set eval.speaker_judge_source to a local "
                "directory holding hyperparams.yaml and embedding_model.ckpt"
            ) from None
        local = Path(source) if Path(source).is_dir() else savedir
        verify_checkpoint_loaded(self._model.mods.embedding_model, local / "embedding_model.ckpt")
        self._source = f"{source}@{revision}" if fetch else source

    def embed(self, waveforms: list[np.ndarray], sample_rate: int) -> np.ndarray:
        out = []
        for wave in waveforms:
            audio = resample(np.asarray(wave, dtype=np.float32), sample_rate, SAMPLE_RATE)
            if len(audio) < SAMPLE_RATE // 10 or not np.any(audio):
                out.append(np.full(self._dim(), np.nan))
                continue
            with torch.no_grad():
                vector = self._model.encode_batch(torch.from_numpy(audio)[None]).squeeze()
            out.append(_unit(vector.numpy().astype(np.float64)))
        return np.stack(out)

    def _dim(self) -> int:
        return int(self._model.mods.embedding_model.fc.conv.out_channels)

    def version(self) -> str:
        return f"speechbrain {metadata.version('speechbrain')} ECAPA ({self._source})"


def verify_checkpoint_loaded(module: torch.nn.Module, checkpoint: Path) -> None:
    """Make `module` hold exactly the tensors in `checkpoint`.

    Strips `module.` prefixes, loads strictly, then compares every tensor; raises
    `JudgeUnavailable` naming the checkpoint if anything is missing or different.
    """
    if not checkpoint.is_file():
        raise JudgeUnavailable(f"speaker judge checkpoint {checkpoint} is missing")
    saved = torch.load(checkpoint, map_location="cpu", weights_only=True)
    saved = {k.removeprefix("module."): v for k, v in saved.items()}
    try:
        module.load_state_dict(saved, strict=True)
    except RuntimeError as err:
        raise JudgeUnavailable(
            f"{checkpoint}: does not match the model ({str(err).splitlines()[0]})"
        ) from None
    loaded = module.state_dict()
    different = [k for k, v in saved.items() if not torch.equal(loaded[k], v)]
    if different:
        raise JudgeUnavailable(
            f"{checkpoint}: {len(different)} tensors differ after loading (e.g. {different[0]})"
        )


def make_embedder(
    kind: str,
    *,
    source: str | None = None,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
) -> SpeakerEmbedder:
    """The speaker judge named by `EvalConfig.speaker_judge`.

    `cache_dir` is where speechbrain-ecapa is downloaded (`<cache_dir>/speechbrain-ecapa/`);
    it is required for it, so nothing is ever written relative to the working directory."""
    if kind == "resemblyzer":
        return ResemblyzerEmbedder()
    if kind == "speechbrain-ecapa":
        savedir = Path(cache_dir) / "speechbrain-ecapa" if cache_dir is not None else None
        return SpeechbrainEcapaEmbedder(source, savedir, revision)
    raise ValueError(f"unknown speaker judge {kind!r}")
