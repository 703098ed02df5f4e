"""The traditional baseline: phoneme-in-context mel templates + ridge regression, no network.

What a careful 2010 engineer would build for zero-shot cloning with linear tools:

    frame features  one-hot(current phoneme × position-in-phoneme bin)
                    + one-hot(previous phoneme) + one-hot(next phoneme)
                    + speaker features: mean and std of the reference clip's log-mel
    model           ridge regression frame features → log-mel (closed form, normal equations)
    durations       per-phoneme mean frame counts from the training data
    alignment       the corpus timings when present; otherwise a flat start (uniform
                    segmentation) refined by Viterbi re-alignment against the templates

Tuned honestly: the ridge strength and the number of position bins are chosen on voices held
out *from the training budget*, never on the evaluation speakers; then refit on everything.
Same inputs, outputs and validation loss as the neural models.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from training.config import TrialConfig, to_dict
from training.data import Example, TrialData
from training.model import monotonic_alignment

__all__ = ["BaselineModel", "fit_baseline", "train_baseline"]

ALPHAS = (0.1, 1.0, 10.0, 100.0, 1000.0)
POSITION_BINS = (2, 3, 5)
_CHUNK_FRAMES = 200_000


@dataclass
class BaselineModel:
    weights: np.ndarray
    """[n_features, n_mels] ridge solution."""
    mean_durations: np.ndarray
    """[vocabulary] mean frames per phoneme."""
    n_symbols: int
    position_bins: int
    alpha: float

    # -- features --------------------------------------------------------------------------

    def design(self, phonemes: np.ndarray, durations: np.ndarray, ref: np.ndarray) -> np.ndarray:
        return design_matrix(phonemes, durations, ref, self.n_symbols, self.position_bins)

    def predict(
        self, phonemes: np.ndarray, ref: np.ndarray, durations: np.ndarray | None = None
    ) -> np.ndarray:
        """Log-mel [T, n_mels]; durations default to the per-phoneme means."""
        if durations is None:
            durations = self.predict_durations(phonemes)
        return self.design(phonemes, durations, ref) @ self.weights

    def predict_durations(self, phonemes: np.ndarray) -> np.ndarray:
        frames = np.rint(self.mean_durations[phonemes]).astype(np.int64)
        if frames.sum() == 0:
            frames[0] = 1
        return frames

    @property
    def num_parameters(self) -> int:
        return int(self.weights.size + self.mean_durations.size)

    # -- persistence -----------------------------------------------------------------------

    def save(self, out: Path, trial: TrialConfig, data: TrialData) -> None:
        from safetensors.numpy import save_file

        save_file(
            {
                "weights": self.weights.astype(np.float32),
                "mean_durations": self.mean_durations.astype(np.float32),
            },
            str(out / "model.safetensors"),
        )
        (out / "model_config.json").write_text(
            json.dumps(
                {
                    "kind": "baseline",
                    "trial": to_dict(trial),
                    "vocabulary": list(data.vocab.symbols),
                    "n_mels": data.n_mels,
                    "position_bins": self.position_bins,
                    "alpha": self.alpha,
                },
                indent=2,
            )
        )

    @classmethod
    def load(cls, directory: Path) -> BaselineModel:
        from safetensors.numpy import load_file

        config = json.loads((directory / "model_config.json").read_text())
        tensors = load_file(str(directory / "model.safetensors"))
        return cls(
            tensors["weights"].astype(np.float64),
            tensors["mean_durations"].astype(np.float64),
            len(config["vocabulary"]),
            config["position_bins"],
            config["alpha"],
        )


def design_matrix(
    phonemes: np.ndarray, durations: np.ndarray, ref: np.ndarray, n_symbols: int, bins: int
) -> np.ndarray:
    """Frame features [T, n_symbols·(bins+2) + 2·n_mels + 1] for one utterance."""
    n_frames = int(durations.sum())
    which = np.repeat(np.arange(len(phonemes)), durations)
    starts = np.repeat(np.cumsum(durations) - durations, durations)
    position = (np.arange(n_frames) - starts) / np.repeat(np.maximum(durations, 1), durations)
    position_bin = np.minimum((position * bins).astype(np.int64), bins - 1)
    current = phonemes[which]
    previous = np.concatenate([[0], phonemes[:-1]])[which]
    following = np.concatenate([phonemes[1:], [0]])[which]
    n_mels = ref.shape[1]
    width = n_symbols * (bins + 2) + 2 * n_mels + 1
    x = np.zeros((n_frames, width))
    rows = np.arange(n_frames)
    x[rows, current * bins + position_bin] = 1.0
    x[rows, n_symbols * bins + previous] = 1.0
    x[rows, n_symbols * (bins + 1) + following] = 1.0
    speaker = n_symbols * (bins + 2)
    x[:, speaker : speaker + n_mels] = ref.mean(0)
    x[:, speaker + n_mels : speaker + 2 * n_mels] = ref.std(0)
    x[:, -1] = 1.0
    return x


def _normal_equations(
    examples: list[Example],
    durations: list[np.ndarray],
    refs: list[np.ndarray],
    n_symbols: int,
    bins: int,
) -> tuple[np.ndarray, np.ndarray, int]:
    xtx, xty, frames = None, None, 0
    chunk_x, chunk_y = [], []

    def flush() -> None:
        nonlocal xtx, xty
        x, y = np.concatenate(chunk_x), np.concatenate(chunk_y)
        xtx = x.T @ x if xtx is None else xtx + x.T @ x
        xty = x.T @ y if xty is None else xty + x.T @ y
        chunk_x.clear()
        chunk_y.clear()

    pending = 0
    for e, d, r in zip(examples, durations, refs, strict=True):
        chunk_x.append(design_matrix(e.phonemes, d, r, n_symbols, bins))
        chunk_y.append(e.mel.astype(np.float64))
        pending += len(e.mel)
        frames += len(e.mel)
        if pending >= _CHUNK_FRAMES:
            flush()
            pending = 0
    if chunk_x:
        flush()
    return xtx, xty, frames


def _solve(xtx: np.ndarray, xty: np.ndarray, alpha: float) -> np.ndarray:
    penalty = alpha * np.eye(len(xtx))
    penalty[-1, -1] = 0.0  # the bias is not shrunk
    return np.linalg.solve(xtx + penalty, xty)


def _l1(
    model: BaselineModel,
    examples: list[Example],
    durations: list[np.ndarray],
    refs: list[np.ndarray],
) -> float:
    total, count = 0.0, 0
    for e, d, r in zip(examples, durations, refs, strict=True):
        total += float(np.abs(model.predict(e.phonemes, r, d) - e.mel).sum())
        count += e.mel.size
    return total / count


def _mean_durations(
    examples: list[Example], durations: list[np.ndarray], n_symbols: int
) -> np.ndarray:
    sums, counts = np.zeros(n_symbols), np.zeros(n_symbols)
    for e, d in zip(examples, durations, strict=True):
        np.add.at(sums, e.phonemes, d)
        np.add.at(counts, e.phonemes, 1)
    overall = sums.sum() / max(counts.sum(), 1)
    return np.where(counts > 0, sums / np.maximum(counts, 1), overall)


def _training_references(data: TrialData, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng([seed, 7])
    return [data.reference_for(i, rng) for i in range(len(data.train))]


def _viterbi_durations(
    model: BaselineModel, examples: list[Example], refs: list[np.ndarray]
) -> list[np.ndarray]:
    """Durations by monotonic alignment of each utterance against the model's phoneme
    templates (its prediction across a phoneme, averaged)."""
    bins = model.position_bins
    durations = []
    for e, r in zip(examples, refs, strict=True):
        spread = model.predict(e.phonemes, r, np.full(len(e.phonemes), bins, np.int64))
        templates = spread.reshape(len(e.phonemes), bins, -1).mean(1)
        log_lik = -((templates[:, None, :] - e.mel[None]) ** 2).sum(-1)
        d = monotonic_alignment(
            torch.from_numpy(log_lik)[None],
            torch.tensor([len(e.phonemes)]),
            torch.tensor([len(e.mel)]),
        )
        durations.append(d[0].numpy())
    return durations


def _flat_start_durations(
    examples: list[Example],
    n_symbols: int,
    refs: list[np.ndarray],
    iterations: int = 2,
    bins: int = 3,
) -> list[np.ndarray]:
    """Alignment without corpus timings: uniform segmentation, then refit-and-realign."""
    durations = [
        np.diff(np.linspace(0, len(e.mel), len(e.phonemes) + 1).round().astype(np.int64))
        for e in examples
    ]
    for _ in range(iterations):
        xtx, xty, _ = _normal_equations(examples, durations, refs, n_symbols, bins)
        model = BaselineModel(_solve(xtx, xty, 10.0), np.zeros(n_symbols), n_symbols, bins, 10.0)
        durations = _viterbi_durations(model, examples, refs)
    return durations


def fit_baseline(data: TrialData, seed: int) -> tuple[BaselineModel, dict[str, Any]]:
    """Tune (bins, alpha) on training voices held out from the budget, then refit on all."""
    n_symbols = len(data.vocab)
    refs = _training_references(data, seed)
    if all(e.durations is not None for e in data.train):
        durations = [e.durations for e in data.train]
    else:
        durations = _flat_start_durations(data.train, n_symbols, refs)
    speakers = sorted({e.speaker for e in data.train})
    tune_speakers = set(speakers[::5]) if len(speakers) > 1 else set()  # ~1 voice in 5
    fit_idx = [i for i, e in enumerate(data.train) if e.speaker not in tune_speakers]
    tune_idx = [i for i, e in enumerate(data.train) if e.speaker in tune_speakers]
    tuning: dict[str, float] = {}
    best = (math.inf, 3, 10.0)
    if tune_idx and fit_idx:
        for bins in POSITION_BINS:
            xtx, xty, _ = _normal_equations(
                [data.train[i] for i in fit_idx],
                [durations[i] for i in fit_idx],
                [refs[i] for i in fit_idx],
                n_symbols,
                bins,
            )
            for alpha in ALPHAS:
                candidate = BaselineModel(
                    _solve(xtx, xty, alpha), np.zeros(n_symbols), n_symbols, bins, alpha
                )
                loss = _l1(
                    candidate,
                    [data.train[i] for i in tune_idx],
                    [durations[i] for i in tune_idx],
                    [refs[i] for i in tune_idx],
                )
                tuning[f"bins={bins},alpha={alpha:g}"] = loss
                best = min(best, (loss, bins, alpha))
    _, bins, alpha = best
    xtx, xty, frames = _normal_equations(data.train, durations, refs, n_symbols, bins)
    model = BaselineModel(
        _solve(xtx, xty, alpha),
        _mean_durations(data.train, durations, n_symbols),
        n_symbols,
        bins,
        alpha,
    )
    width = xtx.shape[0]
    info = {
        "tuning": tuning,
        "position_bins": bins,
        "alpha": alpha,
        "fit_flops": 2.0 * frames * width * (width + data.n_mels) + width**3 / 3,
    }
    return model, info


def validation_loss(model: BaselineModel, data: TrialData) -> float:
    """Held-out L1 on log-mel with the corpus durations — the neural models' definition."""
    if all(e.durations is not None for e in data.val):
        durations = [e.durations for e in data.val]
    else:  # real speech: align with the trained model, as the neural models do
        durations = _viterbi_durations(model, data.val, data.val_refs)
    return _l1(model, data.val, durations, data.val_refs)


def train_baseline(trial: TrialConfig, corpus_root: str | Path, out_dir: Path) -> dict[str, Any]:
    """Fit the baseline for `trial`'s budget, export it to `out_dir`, return final metrics."""
    started = time.perf_counter()
    data = TrialData.load(trial, corpus_root)
    model, info = fit_baseline(data, trial.seed)
    val = validation_loss(model, data)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save(out_dir, trial, data)
    return {
        "status": "done" if math.isfinite(val) else "diverged",
        "val_loss": val,
        "params": model.num_parameters,
        "params_non_embedding": model.num_parameters,
        "train_flops": info["fit_flops"],
        "steps": 0,
        "position_bins": info["position_bins"],
        "alpha": info["alpha"],
        "train_seconds": time.perf_counter() - started,
        "data_utterances": len(data.train),
        "data_hours": data.hours,
    }
