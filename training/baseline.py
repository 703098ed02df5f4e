"""The traditional baseline: phoneme-in-context mel templates + ridge regression, no network.

What a careful 2010 engineer would build for zero-shot cloning with linear tools:

    frame features  one-hot(current phoneme × position-in-phoneme bin)
                    + one-hot(previous phoneme) + one-hot(next phoneme)
                    + speaker features: mean and std of the reference clip's log-mel, one
                      copy per broad phoneme class (pause / vowel / voiced / voiceless), so a
                      voice's colour can act differently on each kind of sound
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
from typing import Any, Protocol

import numpy as np
import torch
from scipy import sparse

from training.bootstrap import clustered_bootstrap_ci
from training.config import TrialConfig, to_dict
from training.data import Example, TrialData
from training.model import monotonic_alignment

__all__ = [
    "BaselineModel",
    "MelPredictor",
    "fit_baseline",
    "fit_metrics",
    "train_baseline",
    "training_alignment",
    "training_references",
    "validation_loss",
    "validation_loss_with_ci",
]

ALPHAS = (0.1, 1.0, 10.0, 100.0, 1000.0)
POSITION_BINS = (2, 3, 5)


class MelPredictor(Protocol):
    """What the validation loss needs of a traditional model (ridge or concatenative)."""

    def predict(
        self, phonemes: np.ndarray, ref: np.ndarray, durations: np.ndarray | None = None
    ) -> np.ndarray: ...


@dataclass
class BaselineModel:
    weights: np.ndarray
    """[n_features, n_mels] ridge solution."""
    mean_durations: np.ndarray
    """[vocabulary] mean frames per phoneme."""
    phoneme_class: np.ndarray
    """[vocabulary] broad class of each phoneme (pause, vowel, voiced, voiceless consonant)."""
    position_bins: int
    alpha: float

    @property
    def n_symbols(self) -> int:
        return len(self.phoneme_class)

    # -- prediction ------------------------------------------------------------------------

    def predict(
        self, phonemes: np.ndarray, ref: np.ndarray, durations: np.ndarray | None = None
    ) -> np.ndarray:
        """Log-mel [T, n_mels]; durations default to the per-phoneme means."""
        if durations is None:
            durations = self.predict_durations(phonemes)
        columns = frame_columns(phonemes, durations, self.n_symbols, self.position_bins)
        n_onehot = self.n_symbols * (self.position_bins + 2)
        onehot = self.weights[:n_onehot]
        speaker = self.weights[n_onehot:].reshape(N_CLASSES, -1, self.weights.shape[1])
        per_class = np.einsum("d,cdm->cm", speaker_features(ref), speaker)  # [classes, M]
        frame_class = self.phoneme_class[np.repeat(phonemes, durations)]
        return onehot[columns].sum(1) + per_class[frame_class]

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
                "phoneme_class": self.phoneme_class.astype(np.int64),
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
            tensors["phoneme_class"].astype(np.int64),
            config["position_bins"],
            config["alpha"],
        )


def frame_columns(
    phonemes: np.ndarray, durations: np.ndarray, n_symbols: int, bins: int
) -> np.ndarray:
    """The three active one-hot features of every frame [T, 3]: current phoneme × position
    bin, previous phoneme, next phoneme."""
    n_frames = int(durations.sum())
    which = np.repeat(np.arange(len(phonemes)), durations)
    starts = np.repeat(np.cumsum(durations) - durations, durations)
    position = (np.arange(n_frames) - starts) / np.repeat(np.maximum(durations, 1), durations)
    position_bin = np.minimum((position * bins).astype(np.int64), bins - 1)
    previous = np.concatenate([[0], phonemes[:-1]])[which]
    following = np.concatenate([phonemes[1:], [0]])[which]
    return np.stack(
        [
            phonemes[which] * bins + position_bin,
            n_symbols * bins + previous,
            n_symbols * (bins + 1) + following,
        ],
        axis=1,
    )


N_CLASSES = 4
_VOICELESS = {"p", "t", "k", "f", "T", "s", "S", "h", "tS", "x"}
_VOICED = {
    "b",
    "d",
    "g",
    "v",
    "D",
    "z",
    "Z",
    "dZ",
    "m",
    "n",
    "N",
    "l",
    "r",
    "w",
    "j",
    "R",
    "@L",
    "n-",
    "l/",
    "r-",
}


def phoneme_classes(symbols: tuple[str, ...]) -> np.ndarray:
    """0 pause (and padding), 1 vowel, 2 voiced consonant, 3 voiceless consonant — from the
    eSpeak mnemonic with stress marks removed."""
    classes = []
    for symbol in symbols:
        bare = symbol.strip("'," + ";")
        if not bare or bare.startswith(("_", "<")):
            classes.append(0)
        elif bare in _VOICELESS:
            classes.append(3)
        elif bare in _VOICED:
            classes.append(2)
        else:
            classes.append(1)
    return np.array(classes, dtype=np.int64)


def speaker_features(ref: np.ndarray) -> np.ndarray:
    """Per-utterance features: the reference clip's log-mel mean and std, and a bias."""
    return np.concatenate([ref.mean(0), ref.std(0), [1.0]])


def _normal_equations(
    examples: list[Example],
    durations: list[np.ndarray],
    refs: list[np.ndarray],
    phoneme_class: np.ndarray,
    bins: int,
) -> tuple[np.ndarray, np.ndarray, int]:
    """XᵀX and XᵀY for X = [one-hot context A | speaker features Z by phoneme class].

    A is sparse (3 ones per frame). Z holds the utterance's speaker features z_u in the block
    of the frame's phoneme class, so it is constant within each (utterance, class) group g:
    AᵀZ, ZᵀZ and ZᵀY reduce to sums over groups of counts_g, n_g and Σ_t y_t. No dense
    [frames × features] matrix is built.
    """
    n_symbols = len(phoneme_class)
    n_onehot = n_symbols * (bins + 2)
    columns = [
        frame_columns(e.phonemes, d, n_symbols, bins)
        for e, d in zip(examples, durations, strict=True)
    ]
    frames = sum(len(c) for c in columns)
    a = sparse.csr_matrix(
        (np.ones(3 * frames), (np.repeat(np.arange(frames), 3), np.concatenate(columns).ravel())),
        shape=(frames, n_onehot),
    )
    y = np.concatenate([e.mel for e in examples]).astype(np.float64)
    z = np.stack([speaker_features(r) for r in refs])  # [U, Zd]
    frame_class = np.concatenate(
        [phoneme_class[np.repeat(e.phonemes, d)] for e, d in zip(examples, durations, strict=True)]
    )
    owner = np.repeat(np.arange(len(examples)), [len(c) for c in columns])
    group = owner * N_CLASSES + frame_class
    n_groups = len(examples) * N_CLASSES
    to_group = sparse.csr_matrix(
        (np.ones(frames), (group, np.arange(frames))), shape=(n_groups, frames)
    )
    counts = to_group @ a  # [G, n_onehot]
    y_sums = to_group @ y  # [G, M]
    sizes = np.asarray(to_group.sum(1)).ravel()
    zg = np.zeros((n_groups, N_CLASSES, z.shape[1]))
    zg[np.arange(n_groups), np.arange(n_groups) % N_CLASSES] = np.repeat(z, N_CLASSES, 0)
    zg = zg.reshape(n_groups, -1)
    ata = (a.T @ a).toarray()
    atz = np.asarray(counts.T @ zg)
    ztz = (zg * sizes[:, None]).T @ zg
    xtx = np.block([[ata, atz], [atz.T, ztz]])
    xty = np.vstack([a.T @ y, zg.T @ y_sums])
    return xtx, xty, frames


def _solve(xtx: np.ndarray, xty: np.ndarray, alpha: float) -> np.ndarray:
    penalty = alpha * np.eye(len(xtx))
    penalty[-1, -1] = 0.0  # the bias is not shrunk
    return np.linalg.solve(xtx + penalty, xty)


def _l1(
    model: MelPredictor,
    examples: list[Example],
    durations: list[np.ndarray],
    refs: list[np.ndarray],
) -> float:
    l1, cells = _l1_sums(model, examples, durations, refs)
    return sum(l1) / sum(cells)


def _l1_sums(
    model: MelPredictor,
    examples: list[Example],
    durations: list[np.ndarray],
    refs: list[np.ndarray],
) -> tuple[list[float], list[int]]:
    """Per utterance: the summed absolute log-mel error and the number of cells."""
    l1, cells = [], []
    for e, d, r in zip(examples, durations, refs, strict=True):
        l1.append(float(np.abs(model.predict(e.phonemes, r, d) - e.mel).sum()))
        cells.append(e.mel.size)
    return l1, cells


def _mean_durations(
    examples: list[Example], durations: list[np.ndarray], n_symbols: int
) -> np.ndarray:
    sums, counts = np.zeros(n_symbols), np.zeros(n_symbols)
    for e, d in zip(examples, durations, strict=True):
        np.add.at(sums, e.phonemes, d)
        np.add.at(counts, e.phonemes, 1)
    overall = sums.sum() / max(counts.sum(), 1)
    return np.where(counts > 0, sums / np.maximum(counts, 1), overall)


def training_references(data: TrialData, seed: int) -> list[np.ndarray]:
    """A reference clip for every training utterance (another of its speaker's, cropped),
    seeded, as the fits and the flat-start alignment use them."""
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


def _flat_start(
    examples: list[Example],
    phoneme_class: np.ndarray,
    refs: list[np.ndarray],
    iterations: int = 2,
    bins: int = 3,
) -> tuple[list[np.ndarray], BaselineModel]:
    """Alignment without corpus timings: uniform segmentation, then refit-and-realign.
    Returns the durations and the templates that last aligned them."""
    durations = [
        np.diff(np.linspace(0, len(e.mel), len(e.phonemes) + 1).round().astype(np.int64))
        for e in examples
    ]
    for _ in range(iterations):
        xtx, xty, _ = _normal_equations(examples, durations, refs, phoneme_class, bins)
        model = BaselineModel(
            _solve(xtx, xty, 10.0), np.zeros(len(phoneme_class)), phoneme_class, bins, 10.0
        )
        durations = _viterbi_durations(model, examples, refs)
    return durations, model


def training_alignment(
    data: TrialData, phoneme_class: np.ndarray, refs: list[np.ndarray]
) -> tuple[list[np.ndarray], BaselineModel | None]:
    """Frames per phoneme of every training utterance: the corpus timings when all have them,
    else a flat start refined by Viterbi re-alignment (`refs`: each utterance's reference
    clip). Also returns the templates of that last alignment (None with corpus timings), so
    other utterances can be aligned the same way (`validation_loss`'s `aligner`)."""
    if all(e.durations is not None for e in data.train):
        return [e.durations for e in data.train], None
    return _flat_start(data.train, phoneme_class, refs)


def fit_baseline(data: TrialData, seed: int) -> tuple[BaselineModel, dict[str, Any]]:
    """Tune (bins, alpha) on training voices held out from the budget, then refit on all."""
    n_symbols = len(data.vocab)
    classes = phoneme_classes(data.vocab.symbols)
    refs = training_references(data, seed)
    durations, _ = training_alignment(data, classes, refs)
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
                classes,
                bins,
            )
            for alpha in ALPHAS:
                candidate = BaselineModel(
                    _solve(xtx, xty, alpha), np.zeros(n_symbols), classes, bins, alpha
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
    xtx, xty, frames = _normal_equations(data.train, durations, refs, classes, bins)
    model = BaselineModel(
        _solve(xtx, xty, alpha),
        _mean_durations(data.train, durations, n_symbols),
        classes,
        bins,
        alpha,
    )
    width = xtx.shape[0]
    info = {
        "tuning": tuning,
        "position_bins": bins,
        "alpha": alpha,
        # Arithmetic of the fit: sparse products (~3 features per frame) plus the dense solve.
        "fit_flops": 2.0 * frames * (9 + 3 * data.n_mels) + width**3 / 3,
        "speaker_feature_classes": N_CLASSES,
    }
    return model, info


def validation_loss(
    model: MelPredictor, data: TrialData, aligner: BaselineModel | None = None
) -> float:
    """Held-out L1 on log-mel with the corpus durations — the neural models' definition, and
    every traditional method's (any `MelPredictor`). Without timings the held-out utterances
    are aligned by `aligner`'s templates (default: `model`, which must then be ridge)."""
    return validation_loss_with_ci(model, data, aligner, resamples=0)[0]


def validation_loss_with_ci(
    model: MelPredictor,
    data: TrialData,
    aligner: BaselineModel | None = None,
    *,
    resamples: int,
) -> tuple[float, list[float] | None]:
    """`validation_loss` and its speaker-clustered 95 % interval (`training.bootstrap`; None
    with resamples 0)."""
    if all(e.durations is not None for e in data.val):
        durations = [e.durations for e in data.val]
    else:  # real speech: align with the trained model, as the neural models do
        templates = aligner if aligner is not None else model
        if not isinstance(templates, BaselineModel):
            raise TypeError("held-out utterances without timings need a ridge `aligner`")
        durations = _viterbi_durations(templates, data.val, data.val_refs)
    l1, cells = _l1_sums(model, data.val, durations, data.val_refs)
    if not resamples:
        return sum(l1) / sum(cells), None
    speakers = [e.speaker for e in data.val]
    interval = clustered_bootstrap_ci(speakers, l1, cells, resamples)
    return sum(l1) / sum(cells), list(interval)


def train_baseline(trial: TrialConfig, corpus_root: str | Path, out_dir: Path) -> dict[str, Any]:
    """Fit the ridge baseline for the trial's budget, export it to `out_dir`, return final
    metrics (`training.traditional.train_traditional` picks the method)."""
    started = time.perf_counter()
    data = TrialData.load(trial, corpus_root)
    model, info = fit_baseline(data, trial.seed)
    val, val_ci = validation_loss_with_ci(model, data, resamples=trial.eval.bootstrap)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save(out_dir, trial, data)
    extra = {"position_bins": info["position_bins"], "alpha": info["alpha"]}
    return fit_metrics(data, model.num_parameters, info["fit_flops"], (val, val_ci), started, extra)


def fit_metrics(
    data: TrialData,
    parameters: int,
    flops: float,
    val: tuple[float, list[float] | None],
    started: float,
    extra: dict[str, Any],
) -> dict[str, Any]:
    """A traditional method's final metrics, the keys a neural trial reports where they
    apply (`extra`: the method's own). `val`: the held-out loss and its interval; `started`:
    `time.perf_counter()` when the trial began."""
    return {
        "status": "done" if math.isfinite(val[0]) else "diverged",
        "val_loss": val[0],
        "val_loss_ci": val[1],
        "params": parameters,
        "params_non_embedding": parameters,
        "train_flops": flops,
        "steps": 0,
        **extra,
        "train_seconds": time.perf_counter() - started,
        "data_utterances": len(data.train),
        "data_hours": data.hours,
        "protocol": "fit",  # closed form: no iterations, nothing to converge
        "train_speakers": data.train_speakers,
    }
