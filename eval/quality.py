"""Perceptual quality judges: a MOS-like score (1 bad … 5 excellent) of one utterance, heard
alone — no reference recording, no text. Each judge is its own metric (`EvalConfig.quality`):

    dnsmos  Microsoft's DNSMOS P.835 (the Deep Noise Suppression challenge's non-intrusive
            model), offline: its ONNX models ship inside the `speechmos` wheel. The metric is
            OVRL (overall quality); SIG (speech), BAK (background) and the P.808 score are kept
            per utterance (`dnsmos_sig`, `dnsmos_bak`, `dnsmos_p808`).
    utmos   UTMOS22 strong (the usual choice in TTS papers), from a local TorchScript file
            `<eval.utmos_dir>/utmos.pt`: its weights come from a model hub, which a cluster may
            not reach (see `UtmosJudge` for how to make the file where the hub is reachable).

An utterance that cannot be judged scores `MOS_FLOOR` (1, "bad"), as it scores SIM 0 and WER 1.

Cost: DNSMOS runs its P.835 network (99 % of the time: convolutions) on 9.01 s windows at a 1 s
hop, about 0.47 s of one CPU thread each on this repository's 2-core machine. A clip shorter
than 9.01 s is doubled until it is not, so a 2-3.5 s sentence is 1 to 9 windows (max(1,
floor(doubled length) − 9)): about 1.5 s of one thread per utterance on the smoke corpus, 1 s on
two. Batching windows saves nothing (the network is compute-bound), so the ONNX sessions are
made once per judge and thread budget and never spin idle between utterances.
"""

from __future__ import annotations

import hashlib
from importlib import metadata, resources
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from eval.errors import JudgeUnavailable
from training.corpus.audio import resample

__all__ = [
    "MOS_FLOOR",
    "QUALITY_METRICS",
    "DnsmosJudge",
    "QualityJudge",
    "UtmosJudge",
    "make_quality_judges",
]

SAMPLE_RATE = 16000
"""Both judges hear 16 kHz audio."""
MOS_FLOOR = 1.0
"""The score of an utterance that could not be judged: the bottom of the MOS scale."""
QUALITY_METRICS = ("dnsmos", "utmos")
"""Every quality judge's metric name, in the order results list them."""
UTMOS_FILE = "utmos.pt"


class QualityJudge(Protocol):
    name: str
    """The metric's name: the key of its score in per-utterance records and results."""

    def score(self, wave: np.ndarray, sample_rate: int) -> dict[str, float]:
        """`{name: MOS}`, plus any sub-scores under `name_*` keys."""
        ...

    def version(self) -> str: ...


def _as_heard(wave: np.ndarray, sample_rate: int) -> np.ndarray:
    """16 kHz float32 in [-1, 1]: what a listener of the written clip hears (samples are
    saved clipped; DNSMOS refuses anything outside [-1, 1])."""
    audio = resample(np.asarray(wave, dtype=np.float32), sample_rate, SAMPLE_RATE)
    return np.clip(audio, -1.0, 1.0)


class DnsmosJudge:
    """DNSMOS P.835 (personalized=False) and P.808, as `speechmos.dnsmos` computes them — 9.01 s
    windows at a 1 s hop, a clip shorter than that repeated until it fills one, the polynomial
    fits to MOS per window, means over windows — with sessions this judge owns.

    `speechmos.dnsmos.run` keeps one module-global scorer whose ONNX sessions use onnxruntime's
    default thread pool (every core, spinning while idle). Here a scorer is made per thread
    budget — `torch.get_num_threads()` when scoring, which the judge service sets to the
    trial's CPU share — reusing speechmos's own feature code and fits (its `DNSMOS.__call__`)."""

    name = "dnsmos"

    def __init__(self) -> None:
        try:
            import onnxruntime  # noqa: F401
            from speechmos import dnsmos  # noqa: F401
        except ImportError as err:
            raise JudgeUnavailable(
                f"dnsmos: cannot import speechmos or onnxruntime ({err}); both are in "
                "requirements.lock, rebuild the venv with `make venv` (or set eval.quality: [])"
            ) from None
        self._scorers: dict[int, Any] = {}

    def score(self, wave: np.ndarray, sample_rate: int) -> dict[str, float]:
        """OVRL as `dnsmos`, with SIG, BAK and P.808 beside it."""
        clip = self._scorer()(_as_heard(wave, sample_rate), SAMPLE_RATE, False)
        return {
            "dnsmos": float(clip["ovrl_mos"]),
            "dnsmos_sig": float(clip["sig_mos"]),
            "dnsmos_bak": float(clip["bak_mos"]),
            "dnsmos_p808": float(clip["p808_mos"]),
        }

    def _scorer(self) -> Any:
        threads = max(1, torch.get_num_threads())
        if threads not in self._scorers:
            self._scorers[threads] = _speechmos_scorer(threads)
        return self._scorers[threads]

    def version(self) -> str:
        return (
            f"speechmos {metadata.version('speechmos')} DNSMOS P.835 OVRL (in-wheel ONNX, "
            f"onnxruntime {metadata.version('onnxruntime')})"
        )


def _speechmos_scorer(threads: int) -> Any:
    """speechmos's `DNSMOS` scorer holding sessions limited to `threads` (its constructor
    would make two default sessions first, only to have them replaced)."""
    import onnxruntime as ort
    from speechmos.dnsmos import DNSMOS

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # Idle pool threads would spin between utterances, taking CPU from the other judges.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    models = resources.files("speechmos") / "dnsmos_models"
    scorer = DNSMOS.__new__(DNSMOS)
    with (
        resources.as_file(models / "sig_bak_ovr.onnx") as primary,
        resources.as_file(models / "model_v8.onnx") as p808,
    ):
        providers = ["CPUExecutionProvider"]
        scorer.primary_model_path = str(primary)
        scorer.onnx_sess = ort.InferenceSession(str(primary), options, providers=providers)
        scorer.p808_onnx_sess = ort.InferenceSession(str(p808), options, providers=providers)
    return scorer


class UtmosJudge:
    """UTMOS from `<directory>/utmos.pt`: a TorchScript module taking a (1, samples) float
    tensor of 16 kHz audio in [-1, 1] and returning the MOS (any shape holding one number).

    To make the file on a machine that reaches the hub (SpeechMOS, tarepan/SpeechMOS):

        import torch

        predictor = torch.hub.load("tarepan/SpeechMOS:v1.2.0", "utmos22_strong", trust_repo=True)

        class Utmos16k(torch.nn.Module):
            def __init__(self, predictor):
                super().__init__()
                self.predictor = predictor.eval()

            def forward(self, wave):  # (1, samples), 16 kHz
                return self.predictor(wave, 16000)

        example = 0.1 * torch.randn(1, 3 * 16000)
        traced = torch.jit.trace(Utmos16k(predictor), example, check_trace=False)
        traced.save("utmos.pt")

    then check the traced file against `predictor(wave, 16000)` on clips of a few different
    lengths (tracing records one length's path; SpeechMOS's model has no length-dependent
    Python branches at 16 kHz, so it should agree) and copy it to `eval.utmos_dir` on every
    node. The version names the file's SHA-256, so new weights never reuse cached ceilings."""

    name = "utmos"

    def __init__(self, directory: str | Path | None) -> None:
        path = utmos_file(directory)
        try:
            self._model = torch.jit.load(str(path), map_location="cpu").eval()
        except (RuntimeError, ValueError) as err:
            raise JudgeUnavailable(
                f"utmos: {path} (eval.utmos_dir) is not a TorchScript module ({err})"
            ) from None
        self._version = f"utmos TorchScript {path} (sha256 {_sha256(path)[:12]})"

    def score(self, wave: np.ndarray, sample_rate: int) -> dict[str, float]:
        audio = torch.from_numpy(_as_heard(wave, sample_rate))[None]
        with torch.inference_mode():
            value = float(self._model(audio).reshape(-1)[0])
        if not np.isfinite(value):
            raise ValueError(f"UTMOS gave {value}")
        return {"utmos": value}

    def version(self) -> str:
        return self._version


def utmos_file(directory: str | Path | None) -> Path:
    """`<directory>/utmos.pt`, or `JudgeUnavailable` naming the field and the path."""
    how = "see eval.quality.UtmosJudge for how to make it from SpeechMOS's utmos22_strong"
    if not directory:
        raise JudgeUnavailable(
            f"utmos: set eval.utmos_dir to a directory holding {UTMOS_FILE}; {how}"
        )
    if not Path(directory).is_dir():
        raise JudgeUnavailable(f"utmos: eval.utmos_dir {directory} is not a directory; {how}")
    path = Path(directory) / UTMOS_FILE
    if not path.is_file():
        raise JudgeUnavailable(f"utmos: {path} is missing (eval.utmos_dir={directory}); {how}")
    return path


def _sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def make_quality_judges(names: tuple[str, ...], utmos_dir: str | None) -> tuple[QualityJudge, ...]:
    """The judges `EvalConfig.quality` names, in its order."""
    makers = {"dnsmos": DnsmosJudge, "utmos": lambda: UtmosJudge(utmos_dir)}
    unknown = [n for n in names if n not in makers]
    if unknown:
        raise ValueError(f"unknown quality judge(s) {unknown}; known: {list(makers)}")
    return tuple(makers[n]() for n in names)
