"""The zero-shot voice-cloning model family: one size dial (width × depth).

    phonemes ─ embedding ─ encoder ─┬─ duration predictor (inference)
                                    └─ length regulator (durations) ─ decoder ─ log-mel
              └─ aligner (corpora without timings) ─ durations
    reference mel ─ ECAPA-TDNN speaker encoder ─ added to encoder and decoder states

A non-autoregressive, FastSpeech-style acoustic model. Durations come from the corpus when it
has them (eSpeak timings); otherwise a learned aligner (RAD-TTS: soft attention with a
diagonal prior and the forward-sum loss, hardened by monotonic alignment search) finds them,
so real speech trains too. The speaker encoder is speechbrain's ECAPA-TDNN, scaled with the
model, reading a few seconds of a *different* utterance of the target speaker.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN
from torch import nn

from training.config import ModelConfig

__all__ = [
    "PAD",
    "UNK",
    "ModelOutput",
    "VoiceCloner",
    "count_parameters",
    "full_numel",
    "length_regulate",
    "monotonic_alignment",
    "sequence_mask",
    "train_flops_per_step",
]

PAD, UNK = 0, 1
MAX_FRAMES_PER_TOKEN = 200
"""Cap on a predicted duration (3.2 s at 16 kHz / hop 256; the default corpus's longest eSpeak
phoneme is under 50 frames)."""


def sequence_mask(lengths: torch.Tensor, max_len: int | None = None) -> torch.Tensor:
    """[B] lengths → [B, T] bool, True on valid positions."""
    max_len = int(lengths.max()) if max_len is None else max_len
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


class ConvBlock(nn.Module):
    """Pre-norm residual block: LayerNorm → conv(k) → GELU → dropout → pointwise conv."""

    def __init__(self, width: int, kernel_size: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.conv = nn.Conv1d(width, width, kernel_size, padding=kernel_size // 2)
        self.pointwise = nn.Linear(width, width)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.norm(x).masked_fill(~mask[..., None], 0.0)
        h = self.conv(h.transpose(1, 2)).transpose(1, 2)
        h = self.pointwise(self.dropout(F.gelu(h)))
        return (x + self.dropout(h)).masked_fill(~mask[..., None], 0.0)


class ConvStack(nn.Module):
    def __init__(self, width: int, depth: int, kernel_size: int, dropout: float) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(ConvBlock(width, kernel_size, dropout) for _ in range(depth))
        self.norm = nn.LayerNorm(width)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x, mask)
        return self.norm(x)


class DurationPredictor(nn.Module):
    """Per-phoneme log(1 + frames), as in FastSpeech."""

    def __init__(self, width: int, kernel_size: int, dropout: float) -> None:
        super().__init__()
        self.block = ConvBlock(width, kernel_size, dropout)
        self.out = nn.Linear(width, 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.out(self.block(x.detach(), mask)).squeeze(-1).masked_fill(~mask, 0.0)


def speaker_encoder(n_mels: int, channels: int, out_dim: int) -> ECAPA_TDNN:
    """ECAPA-TDNN with `channels` per layer (the published speaker-verification model uses
    512/1536) projecting to `out_dim`."""
    return ECAPA_TDNN(
        n_mels,
        lin_neurons=out_dim,
        channels=[channels] * 4 + [3 * channels],
        attention_channels=max(8, channels // 4),
        se_channels=max(8, channels // 4),
        res2net_scale=4 if channels < 64 else 8,
    )


def length_regulate(
    states: torch.Tensor, durations: torch.Tensor, n_frames: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Repeat phoneme states by their frame durations.

    Returns the frame states [B, T, D] and each frame's relative position inside its phoneme
    [B, T] (0 at the phoneme's first frame, towards 1 at its last), which tells the decoder
    where it is within a sound.
    """
    ends = torch.cumsum(durations, dim=1)  # [B, N]
    frames = torch.arange(n_frames, device=states.device)[None, :, None]  # [1, T, 1]
    index = (frames >= ends[:, None, :]).sum(-1).clamp(max=states.shape[1] - 1)  # [B, T]
    expanded = torch.gather(states, 1, index[..., None].expand(-1, -1, states.shape[-1]))
    starts = ends - durations
    start = torch.gather(starts, 1, index)
    length = torch.gather(durations, 1, index).clamp(min=1)
    position = (torch.arange(n_frames, device=states.device)[None, :] - start) / length
    return expanded, position.to(states.dtype)


@torch.no_grad()
def monotonic_alignment(
    log_likelihood: torch.Tensor, phoneme_lens: torch.Tensor, frame_lens: torch.Tensor
) -> torch.Tensor:
    """Monotonic alignment search (Glow-TTS): the most likely monotonic, surjective path.

    `log_likelihood` is [B, N, T] (phoneme i emits frame t). Returns integer durations [B, N]
    summing to each frame length; every phoneme gets >= 1 frame when T >= N.

    The forward pass runs on the input's device, batched; its decisions then come to the host
    in one transfer and the backtrack walks every utterance at once, one frame at a time (an
    element read from a GPU tensor per frame and utterance would be a device sync each).
    """
    batch, n, t_max = log_likelihood.shape
    neg = torch.finfo(log_likelihood.dtype).min / 4
    value = torch.full((batch, n), neg, dtype=log_likelihood.dtype, device=log_likelihood.device)
    value[:, 0] = log_likelihood[:, 0, 0]
    # [T, B, N]: frame-major, so each step writes (and the backtrack reads) contiguous memory.
    moved_here = torch.zeros(t_max, batch, n, dtype=torch.bool, device=log_likelihood.device)
    for t in range(1, t_max):
        from_prev = torch.cat([value.new_full((batch, 1), neg), value[:, :-1]], dim=1)
        moved_here[t] = from_prev > value
        value = torch.maximum(value, from_prev) + log_likelihood[:, :, t]
    durations = _backtrack(
        moved_here.cpu().numpy(), phoneme_lens.cpu().numpy(), frame_lens.cpu().numpy()
    )
    return torch.from_numpy(durations).to(log_likelihood.device)


def _backtrack(
    moved_here: np.ndarray, phoneme_lens: np.ndarray, frame_lens: np.ndarray
) -> np.ndarray:
    """Durations [B, N] from the forward pass's decisions [T, B, N]: from each utterance's last
    frame back to its first, count a frame for the current phoneme, then step to the previous
    phoneme if the path came from there (or if the phonemes left would outnumber the frames)."""
    _, batch, n = moved_here.shape
    frames = frame_lens.astype(np.int64)
    rows = np.arange(batch)
    # int64 like phoneme_lens, so a zero length indexes from the end exactly as torch did.
    phoneme = phoneme_lens.astype(np.int64) - 1
    durations = np.zeros((batch, n), dtype=np.int64)
    for t in range(int(frames.max(initial=0)) - 1, -1, -1):
        active = t < frames
        durations[rows, phoneme] += active
        step = active & (phoneme > 0) & (moved_here[t, rows, phoneme] | (phoneme > t))
        phoneme -= step
    return durations


def beta_binomial_log_prior(
    token_lens: torch.Tensor, frame_lens: torch.Tensor, n_tokens: int, n_frames: int
) -> torch.Tensor:
    """log P(token | frame) [B, n_frames, n_tokens] of RAD-TTS's static alignment prior, for a
    padded batch: frame t of T most likely belongs near token (t / T)·N, a soft diagonal; 0
    outside each utterance's (frames, tokens).

    With scale 1 every argument of log Γ is an integer below n_tokens + n_frames + 2, so log Γ
    is one small table (computed in float64 on the host, like the per-utterance prior this
    replaces, hence the same bits) indexed on the lengths' device: no per-utterance work."""
    device = token_lens.device
    arguments = torch.arange(n_tokens + n_frames + 2, dtype=torch.float64)
    table = torch.lgamma(arguments).to(device)
    # The per-utterance prior took log Γ(N) of a float32 scalar (promoted to float64 after).
    table32 = torch.lgamma(arguments.float()).double().to(device)
    k = torch.arange(n_tokens, device=device)[None, None, :]  # token
    t = torch.arange(n_frames, device=device)[None, :, None]  # frame
    n = token_lens.long()[:, None, None]
    f = frame_lens.long()[:, None, None]
    valid = (k < n) & (t < f)

    def lg(x: torch.Tensor, values: torch.Tensor = table) -> torch.Tensor:
        return values[x.clamp(min=0)]  # outside `valid` the value is discarded

    # beta-binomial(k; N - 1, a = t + 1, b = T - t), term by term in the original's order.
    log_choose = lg(n, table32) - lg(k + 1) - lg(n - k)
    log_beta_num = lg(k + t + 1) + lg(n - 1 - k + f - t) - lg(n + f)
    log_beta_den = lg(t + 1) + lg(f - t) - lg(f + 1)
    prior = (log_choose + log_beta_num - log_beta_den).float()
    return torch.where(valid, prior, 0.0)


class Aligner(nn.Module):
    """Learned soft alignment between phonemes and frames ("One TTS Alignment To Rule Them
    All", Badlani et al. 2021, as in RAD-TTS/FastPitch): phoneme keys and mel queries,
    attention from their distances plus a diagonal prior, trained with the forward-sum (CTC)
    loss; monotonic alignment search over it gives the hard durations."""

    def __init__(
        self, width: int, n_mels: int, channels: int = 80, temperature: float = 0.0005
    ) -> None:
        super().__init__()
        self.temperature = temperature
        self.key = nn.Sequential(
            nn.Conv1d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.Conv1d(2 * width, channels, 1)
        )
        self.query = nn.Sequential(
            nn.Conv1d(n_mels, 2 * n_mels, 3, padding=1),
            nn.ReLU(),
            nn.Conv1d(2 * n_mels, n_mels, 1),
            nn.ReLU(),
            nn.Conv1d(n_mels, channels, 1),
        )

    def forward(
        self,
        tokens: torch.Tensor,
        token_mask: torch.Tensor,
        mel: torch.Tensor,
        frame_lens: torch.Tensor,
    ) -> torch.Tensor:
        """log-attention [B, T, N]: for each frame, a distribution over its phonemes."""
        keys = self.key(tokens.transpose(1, 2)).float()  # [B, C, N]
        # Per-utterance mean normalisation takes out the voice's spectral envelope, so one
        # speaker-independent key per phoneme can match every speaker's frames.
        frame_mask = sequence_mask(frame_lens, mel.shape[1])[..., None]
        mean = (mel * frame_mask).sum(1, keepdim=True) / frame_lens[:, None, None]
        normalised = (mel - mean) * frame_mask
        queries = self.query(normalised.transpose(1, 2)).float()  # [B, C, T]
        distance = ((queries[:, :, :, None] - keys[:, :, None, :]) ** 2).sum(1)  # [B, T, N]
        logits = torch.log_softmax(-self.temperature * distance, dim=-1)
        prior = beta_binomial_log_prior(
            token_mask.sum(1), frame_lens, logits.shape[2], logits.shape[1]
        )
        logits = (logits + prior).masked_fill(~token_mask[:, None, :], -1e4)
        return torch.log_softmax(logits, dim=-1)


def forward_sum_loss(
    log_attention: torch.Tensor,
    token_lens: torch.Tensor,
    frame_lens: torch.Tensor,
    blank_log_prob: float = -1.0,
) -> torch.Tensor:
    """CTC over the attention: every phoneme, in order, must own some frames."""
    padded = F.pad(log_attention, (1, 0), value=blank_log_prob)  # blank = class 0
    log_probs = torch.log_softmax(padded, dim=-1).transpose(0, 1)  # [T, B, N + 1]
    targets = torch.arange(1, log_attention.shape[-1] + 1, device=log_attention.device)
    targets = targets[None].expand(len(token_lens), -1)
    return F.ctc_loss(
        log_probs, targets, frame_lens, token_lens, blank=0, reduction="mean", zero_infinity=True
    )


@dataclass
class ModelOutput:
    mel: torch.Tensor
    """Predicted log-mel [B, T, n_mels]."""
    log_durations: torch.Tensor
    """Predicted log(1 + frames) per phoneme [B, N]."""
    durations: torch.Tensor
    """Durations used for the length regulator [B, N]."""
    align_loss: torch.Tensor
    """Forward-sum alignment loss (0 when durations were given)."""


class VoiceCloner(nn.Module):
    """Text (phoneme ids) + a reference mel of the target speaker → log-mel in that voice.

    `learn_alignment`: include the aligner, for corpora without phoneme timings.
    """

    def __init__(
        self, cfg: ModelConfig, n_phonemes: int, n_mels: int, learn_alignment: bool = False
    ) -> None:
        super().__init__()
        width = cfg.width
        self.cfg, self.n_mels = cfg, n_mels
        self.embedding = nn.Embedding(n_phonemes, width, padding_idx=PAD)
        self.encoder = ConvStack(width, cfg.depth, cfg.kernel_size, cfg.dropout)
        self.speaker = speaker_encoder(n_mels, cfg.speaker_channels, width)
        self.speaker_to_encoder = nn.Linear(width, width)
        self.speaker_to_decoder = nn.Linear(width, width)
        self.duration = DurationPredictor(width, cfg.kernel_size, cfg.dropout)
        self.aligner = Aligner(width, n_mels) if learn_alignment else None
        self.position = nn.Linear(1, width)
        self.decoder = ConvStack(width, cfg.depth, cfg.kernel_size, cfg.dropout)
        self.to_mel = nn.Linear(width, n_mels)

    @torch.no_grad()
    def init_output_bias(self, mean_mel: torch.Tensor) -> None:
        """Start the output layer at the training data's mean log-mel. Log-mels sit far from
        zero (around −5 here), and Adam moves a bias by about lr per step: from zero, the
        offset alone takes thousands of steps and dominates short trials (measured: s, 128
        steps, held-out L1 1.42 → 1.17 with this init)."""
        self.to_mel.bias.copy_(mean_mel.to(self.to_mel.bias))

    @torch.no_grad()
    def init_duration_bias(self, frames_per_phoneme: float) -> None:
        """Start the duration predictor at the training data's mean phoneme length (frames
        over phonemes, known with or without timings). From zero it predicts 0 frames per
        phoneme — a few milliseconds of audio for a whole sentence — until it has trained
        for a while: short trials (and aligner-trained ones, whose targets are rough early)
        then produce nothing to judge. Its input is detached, so the mel path is untouched."""
        self.duration.out.bias.fill_(math.log1p(frames_per_phoneme))

    def embed_speaker(self, ref_mel: torch.Tensor, ref_lens: torch.Tensor) -> torch.Tensor:
        """[B, T_ref, n_mels] reference frames → [B, width] speaker vector."""
        relative = ref_lens.to(ref_mel.dtype) / ref_mel.shape[1]
        return self.speaker(ref_mel, relative).squeeze(1)

    def forward(
        self,
        phonemes: torch.Tensor,
        phoneme_lens: torch.Tensor,
        ref_mel: torch.Tensor,
        ref_lens: torch.Tensor,
        durations: torch.Tensor | None = None,
        mel: torch.Tensor | None = None,
        mel_lens: torch.Tensor | None = None,
    ) -> ModelOutput:
        """Teacher-forced when `durations` are given, or learned by the aligner from `mel`;
        otherwise durations come from the duration predictor (inference)."""
        dtype = self.to_mel.weight.dtype  # bf16 under DeepSpeed's bf16 mode
        # DeepSpeed casts the parameters only; speechbrain's ECAPA mixes in fp32 statistics
        # (attentive pooling), which a bf16 conv or BatchNorm refuses. Autocast keeps every
        # op's inputs in one dtype; fp32 weights run exactly as without it.
        with torch.autocast(phonemes.device.type, dtype=dtype, enabled=dtype != torch.float32):
            return self._forward(
                phonemes, phoneme_lens, ref_mel, ref_lens, durations, mel, mel_lens, dtype
            )

    def _forward(
        self,
        phonemes: torch.Tensor,
        phoneme_lens: torch.Tensor,
        ref_mel: torch.Tensor,
        ref_lens: torch.Tensor,
        durations: torch.Tensor | None,
        mel: torch.Tensor | None,
        mel_lens: torch.Tensor | None,
        dtype: torch.dtype,
    ) -> ModelOutput:
        ref_mel = ref_mel.to(dtype)
        token_mask = sequence_mask(phoneme_lens, phonemes.shape[1])
        speaker = self.embed_speaker(ref_mel, ref_lens)
        embedded = self.embedding(phonemes)
        states = self.encoder(embedded, token_mask)
        states = (states + self.speaker_to_encoder(speaker)[:, None, :]).masked_fill(
            ~token_mask[..., None], 0.0
        )
        log_durations = self.duration(states, token_mask)
        align_loss = states.new_zeros(())
        if durations is None and mel is not None:
            if self.aligner is None:
                raise ValueError(
                    "no durations given and the model has no aligner "
                    "(build it with learn_alignment=True)"
                )
            log_attention = self.aligner(embedded, token_mask, mel.to(dtype), mel_lens)
            durations = monotonic_alignment(log_attention.transpose(1, 2), phoneme_lens, mel_lens)
            align_loss = forward_sum_loss(log_attention, phoneme_lens, mel_lens)
        if durations is None:
            durations = self.predict_durations(log_durations, token_mask)
        n_frames = int(mel.shape[1]) if mel is not None else int(durations.sum(1).max())
        frames, position = length_regulate(states, durations, n_frames)
        frame_mask = sequence_mask(durations.sum(1), n_frames)
        hidden = (
            frames
            + self.position(position[..., None].to(dtype))
            + self.speaker_to_decoder(speaker)[:, None, :]
        )
        out = self.to_mel(self.decoder(hidden, frame_mask))
        return ModelOutput(out, log_durations, durations, align_loss)

    @staticmethod
    def predict_durations(log_durations: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Frames per token from the predicted log1p-durations. Whatever a badly trained
        model predicts (NaN, ±inf, huge values) gives 0 … MAX_FRAMES_PER_TOKEN frames, so the
        length regulator never sees a negative or astronomically long utterance."""
        cap = math.log1p(MAX_FRAMES_PER_TOKEN)
        log_frames = torch.nan_to_num(log_durations.float(), nan=0.0, posinf=cap, neginf=0.0)
        frames = torch.round(torch.expm1(log_frames.clamp(0.0, cap))).long()
        frames = frames.masked_fill(~mask, 0)
        empty = frames.sum(1) == 0  # never emit an empty utterance
        frames[empty, 0] = 1
        return frames


# ---------------------------------------------------------------------------------------------
# Size accounting


def full_numel(param: torch.Tensor) -> int:
    """Elements of the whole parameter: under ZeRO-3 a rank holds an empty partition, and
    DeepSpeed records the full size as `ds_numel`."""
    return int(getattr(param, "ds_numel", param.numel()))


def count_parameters(model: VoiceCloner) -> dict[str, int]:
    """Total and non-embedding parameter counts (the scaling-law N is the latter)."""
    total = sum(full_numel(p) for p in model.parameters())
    embedding = full_numel(model.embedding.weight)
    return {"total": total, "non_embedding": total - embedding}


def _weight_macs_per_position(module: nn.Module) -> int:
    """Multiply-accumulates per output position of every Linear/Conv1d inside `module`."""
    macs = 0
    for m in module.modules():
        if isinstance(m, nn.Linear):
            macs += m.in_features * m.out_features
        elif isinstance(m, nn.Conv1d):
            macs += full_numel(m.weight)
    return macs


def _speaker_macs_per_frame(speaker: ECAPA_TDNN) -> int:
    """ECAPA runs its convolutions on every reference frame; its squeeze-excitation layers and
    the final projection run once per utterance (counted separately)."""
    per_frame = 0
    for name, m in speaker.named_modules():
        if isinstance(m, nn.Conv1d) and ".se_block." not in f".{name}." and name != "fc.conv":
            per_frame += full_numel(m.weight)
    return per_frame


def train_flops_per_step(
    model: VoiceCloner, tokens: int, frames: int, ref_frames: int, utterances: int
) -> float:
    """Training FLOPs of one optimiser step over a batch with these totals.

    Every Linear/Conv1d weight costs 2 FLOPs per multiply-accumulate forward, 2 for its weight
    gradient and 2 for its input gradient — except layers fed directly by data (the first ECAPA
    convolution reads the reference mel, `position` reads frame positions), which need no input
    gradient. Positions each weight runs on:

        tokens      encoder, duration predictor, aligner keys
        frames      decoder, position, output projection, aligner queries
        ref_frames  ECAPA convolutions
        utterances  ECAPA squeeze-excitation and projection, speaker→encoder/decoder

    Element-wise work (norms, activations, pooling statistics) and the alignment DP are not
    counted; `tests/training/test_model.py` checks this against torch's FLOP counter.
    """
    per_token = sum(_weight_macs_per_position(m) for m in (model.encoder, model.duration))
    if model.aligner is not None:
        per_token += _weight_macs_per_position(model.aligner.key)
    per_frame = sum(
        _weight_macs_per_position(m) for m in (model.decoder, model.position, model.to_mel)
    )
    data_fed_per_frame = _weight_macs_per_position(model.position)
    if model.aligner is not None:
        per_frame += _weight_macs_per_position(model.aligner.query)
        data_fed_per_frame += full_numel(model.aligner.query[0].weight)  # reads the target mel
    per_ref_frame = _speaker_macs_per_frame(model.speaker)
    per_utterance = (
        _weight_macs_per_position(model.speaker)
        - per_ref_frame
        + _weight_macs_per_position(model.speaker_to_encoder)
        + _weight_macs_per_position(model.speaker_to_decoder)
    )
    macs = (
        per_token * tokens
        + per_frame * frames
        + per_ref_frame * ref_frames
        + per_utterance * utterances
    )
    first_conv = full_numel(model.speaker.blocks[0].conv.conv.weight)
    data_fed = first_conv * ref_frames + data_fed_per_frame * frames
    return 6.0 * macs - 2.0 * data_fed
