"""Log-mel features, computed once per (corpus, parameters) and cached next to the corpus.

Cache layout: `<corpus>/features/<key>/` where `key` hashes the feature parameters and the
manifest's bytes — change either and a new cache is built (old ones are left alone). A cache
directory appears only when complete (built under a temporary name, then renamed).

    params.json        the FeatureConfig and the manifest digest
    mels.npy           float32 [total_frames, n_mels], all utterances concatenated (memory-mapped)
    offsets.npy        int64 [n_utterances + 1]: rows of utterance i are offsets[i]:offsets[i+1]
    durations.npy      int32: frames per phoneme, concatenated (only if the corpus has timings)
    dur_offsets.npy    int64 [n_utterances + 1]
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torchaudio
from tqdm import tqdm

from training.config import FeatureConfig, to_dict
from training.corpus.audio import read_audio
from training.corpus.manifest import CARD_FILE, MANIFEST_FILE, Corpus, CorpusError
from training.corpus.workers import single_thread_pool

__all__ = ["FeatureStore", "MelExtractor", "feature_key", "frame_durations", "load_features"]


class MelExtractor:
    """Waveform → log-mel frames [n_frames, n_mels]; n_frames = n_samples // hop + 1."""

    def __init__(self, cfg: FeatureConfig) -> None:
        self.cfg = cfg
        self._mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=cfg.sample_rate,
            n_fft=cfg.n_fft,
            win_length=cfg.win_length,
            hop_length=cfg.hop_length,
            f_min=cfg.f_min,
            f_max=cfg.f_max,
            n_mels=cfg.n_mels,
            power=1.0,
            norm="slaney",
            mel_scale="slaney",
            center=True,
            pad_mode="reflect",
        )

    def __call__(self, wave: np.ndarray | torch.Tensor) -> torch.Tensor:
        x = torch.as_tensor(wave, dtype=torch.float32)
        with torch.no_grad():
            mel = self._mel(x)
        return torch.log(torch.clamp(mel, min=self.cfg.log_floor)).transpose(-1, -2)


def frame_durations(sample_durations: list[int], n_frames: int, hop: int) -> list[int]:
    """Phoneme durations in samples → in frames, summing exactly to `n_frames`.

    Phoneme boundaries are rounded to the nearest frame; a phoneme shorter than half a hop can
    get 0 frames (eSpeak merges some boundaries; ~5 % of tokens).
    """
    starts = np.concatenate([[0], np.cumsum(sample_durations)[:-1]])
    bounds = np.clip(np.rint(starts / hop).astype(np.int64), 0, n_frames)
    bounds = np.maximum.accumulate(bounds)
    ends = np.append(bounds[1:], n_frames)
    return (ends - bounds).astype(np.int32).tolist()


def feature_key(corpus_root: Path, cfg: FeatureConfig) -> str:
    """Cache key: the feature parameters plus the exact manifest contents."""
    digest = hashlib.sha256((corpus_root / MANIFEST_FILE).read_bytes()).hexdigest()
    blob = json.dumps({"features": to_dict(cfg), "manifest": digest}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


@dataclass
class FeatureStore:
    """Memory-mapped features of one corpus, indexed like `corpus.utterances`."""

    path: Path
    mels: np.ndarray
    offsets: np.ndarray
    durations: np.ndarray | None
    dur_offsets: np.ndarray | None

    def mel(self, index: int) -> np.ndarray:
        return self.mels[self.offsets[index] : self.offsets[index + 1]]

    def frame_durations(self, index: int) -> np.ndarray | None:
        if self.durations is None:
            return None
        return self.durations[self.dur_offsets[index] : self.dur_offsets[index + 1]]

    @classmethod
    def open(cls, path: Path) -> FeatureStore:
        has_durations = (path / "durations.npy").exists()
        return cls(
            path=path,
            mels=np.load(path / "mels.npy", mmap_mode="r"),
            # Materialise the small index arrays once (lazy loads re-read on every access).
            offsets=np.array(np.load(path / "offsets.npy")),
            durations=np.array(np.load(path / "durations.npy")) if has_durations else None,
            dur_offsets=np.array(np.load(path / "dur_offsets.npy")) if has_durations else None,
        )


def load_features(
    corpus: Corpus, cfg: FeatureConfig, *, workers: int = 2, progress: bool = True
) -> FeatureStore:
    """Open the cached features of `corpus` for `cfg`, computing them first if needed."""
    key = feature_key(corpus.root, cfg)
    path = corpus.root / "features" / key
    if not (path / "params.json").exists():
        _build(corpus, cfg, path, workers=workers, progress=progress)
        _record_in_card(corpus.root, key, cfg)
    return FeatureStore.open(path)


def _build(corpus: Corpus, cfg: FeatureConfig, path: Path, *, workers: int, progress: bool) -> None:
    utts = corpus.utterances
    wrong_rate = [u.id for u in utts if u.sample_rate != cfg.sample_rate]
    if wrong_rate:
        raise CorpusError(
            f"{corpus.root}: {len(wrong_rate)} utterances (e.g. {wrong_rate[0]!r}) "
            f"are not at features.sample_rate={cfg.sample_rate} Hz; prepare the "
            "corpus at that rate"
        )
    frames = np.array([u.num_samples // cfg.hop_length + 1 for u in utts], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(frames)])
    tmp = path.with_name(f"{path.name}.partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)  # our own leftover from a crashed build of this key
    tmp.mkdir(parents=True)
    mels = np.lib.format.open_memmap(
        tmp / "mels.npy", mode="w+", dtype=np.float32, shape=(int(offsets[-1]), cfg.n_mels)
    )
    jobs = [(str(corpus.audio_path(u)), u.num_samples) for u in utts]
    bar = tqdm(total=len(utts), desc="log-mel features", unit="utt", disable=not progress)
    for i, mel in enumerate(_compute_all(jobs, cfg, workers)):
        if mel.shape[0] != frames[i]:
            raise CorpusError(
                f"{corpus.audio_path(utts[i])}: has {mel.shape[0]} frames, manifest "
                f"num_samples implies {frames[i]}; the corpus is damaged"
            )
        mels[offsets[i] : offsets[i + 1]] = mel
        bar.update()
    bar.close()
    mels.flush()
    del mels
    np.save(tmp / "offsets.npy", offsets)
    if all(u.durations is not None for u in utts):
        per_utt = [
            frame_durations(u.durations, int(frames[i]), cfg.hop_length) for i, u in enumerate(utts)
        ]
        np.save(tmp / "durations.npy", np.concatenate(per_utt).astype(np.int32))
        np.save(
            tmp / "dur_offsets.npy",
            np.concatenate([[0], np.cumsum([len(d) for d in per_utt])]).astype(np.int64),
        )
    params = {
        "features": to_dict(cfg),
        "manifest_sha256": hashlib.sha256((corpus.root / MANIFEST_FILE).read_bytes()).hexdigest(),
        "utterances": len(utts),
    }
    (tmp / "params.json").write_text(json.dumps(params, indent=2, sort_keys=True) + "\n")
    try:
        tmp.rename(path)
    except OSError:
        # Another process (a second Ray worker) finished the same cache first: theirs is
        # identical, keep it.
        if not (path / "params.json").exists():
            raise
        shutil.rmtree(tmp, ignore_errors=True)


def _compute_all(
    jobs: list[tuple[str, int]], cfg: FeatureConfig, workers: int
) -> Iterator[np.ndarray]:
    chunks = [jobs[i : i + 64] for i in range(0, len(jobs), 64)]
    if workers <= 1:
        for chunk in chunks:
            yield from _compute_chunk(chunk, cfg)
        return
    with single_thread_pool(workers) as pool:
        for result in pool.map(_compute_chunk, chunks, [cfg] * len(chunks)):
            yield from result


def _compute_chunk(chunk: list[tuple[str, int]], cfg: FeatureConfig) -> list[np.ndarray]:
    extractor = MelExtractor(cfg)
    out = []
    for audio_path, num_samples in chunk:
        wave, rate = read_audio(Path(audio_path))
        if rate != cfg.sample_rate or len(wave) != num_samples:
            raise CorpusError(
                f"{audio_path}: file has {len(wave)} samples at {rate} Hz, the "
                f"manifest says {num_samples} at {cfg.sample_rate} Hz"
            )
        out.append(extractor(wave).numpy())
    return out


def _record_in_card(root: Path, key: str, cfg: FeatureConfig) -> None:
    """Add the feature parameters to the corpus card (the card lists every cache built)."""
    card_path = root / CARD_FILE
    if not card_path.exists():
        return
    card = json.loads(card_path.read_text(encoding="utf-8"))
    card.setdefault("features", {})[key] = to_dict(cfg)
    tmp = card_path.with_name(card_path.name + ".tmp")
    tmp.write_text(json.dumps(card, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(card_path)
