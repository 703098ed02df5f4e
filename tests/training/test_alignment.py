"""The vectorised alignment search and attention prior give exactly what the per-utterance
implementations they replaced gave (kept here, verbatim, as the reference)."""

from __future__ import annotations

import pytest
import torch

from training.model import Aligner, beta_binomial_log_prior, monotonic_alignment


@torch.no_grad()
def reference_monotonic_alignment(
    log_likelihood: torch.Tensor, phoneme_lens: torch.Tensor, frame_lens: torch.Tensor
) -> torch.Tensor:
    """training.model.monotonic_alignment before vectorising (per-frame Python backtrack)."""
    batch, n, t_max = log_likelihood.shape
    neg = torch.finfo(log_likelihood.dtype).min / 4
    value = torch.full((batch, n), neg, dtype=log_likelihood.dtype, device=log_likelihood.device)
    value[:, 0] = log_likelihood[:, 0, 0]
    moved_here = torch.zeros(batch, n, t_max, dtype=torch.bool, device=log_likelihood.device)
    for t in range(1, t_max):
        from_prev = torch.cat([value.new_full((batch, 1), neg), value[:, :-1]], dim=1)
        moved_here[:, :, t] = from_prev > value
        value = torch.maximum(value, from_prev) + log_likelihood[:, :, t]
    durations = torch.zeros(batch, n, dtype=torch.long, device=log_likelihood.device)
    for b in range(batch):
        i = int(phoneme_lens[b]) - 1
        for t in range(int(frame_lens[b]) - 1, -1, -1):
            durations[b, i] += 1
            if i > 0 and (moved_here[b, i, t] or i > t):
                i -= 1
    return durations


def reference_prior(n_tokens: int, n_frames: int, scale: float = 1.0) -> torch.Tensor:
    """training.model.beta_binomial_log_prior before vectorising: one utterance, [N, T]."""
    k = torch.arange(n_tokens, dtype=torch.float64)[:, None]
    t = torch.arange(n_frames, dtype=torch.float64)[None, :]
    a, b, n = scale * (t + 1), scale * (n_frames - t), n_tokens - 1

    def log_beta(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.lgamma(x) + torch.lgamma(y) - torch.lgamma(x + y)

    log_choose = torch.lgamma(torch.tensor(n + 1.0)) - torch.lgamma(k + 1) - torch.lgamma(n - k + 1)
    return (log_choose + log_beta(k + a, n - k + b) - log_beta(a, b)).float()


def reference_batch_prior(
    token_lens: torch.Tensor, frame_lens: torch.Tensor, shape
) -> torch.Tensor:
    """How Aligner.forward filled its prior: one utterance at a time, zeros elsewhere."""
    prior = torch.zeros(shape)
    for b in range(shape[0]):
        n, t = int(token_lens[b]), int(frame_lens[b])
        prior[b, :t, :n] = reference_prior(n, t).T
    return prior


def random_batch(generator: torch.Generator, batch: int, max_tokens: int, max_frames: int):
    """Padded lengths with T >= N per utterance, including T == N, and random scores."""
    tokens = torch.randint(1, max_tokens + 1, (batch,), generator=generator)
    frames = tokens + torch.randint(0, max_frames, (batch,), generator=generator)
    frames[0] = tokens[0]  # T == N: one frame per phoneme
    n, t = (
        int(tokens.max()),
        int(frames.max()) + int(torch.randint(0, 3, (1,), generator=generator)),
    )
    scores = torch.randn(batch, n, t, generator=generator) * 3
    return scores, tokens, frames


@pytest.mark.parametrize("seed", range(6))
def test_vectorised_alignment_equals_the_per_utterance_one(seed):
    generator = torch.Generator().manual_seed(seed)
    batch = [1, 2, 5, 8, 3, 16][seed]
    scores, tokens, frames = random_batch(generator, batch, 3 + 7 * seed, 5 + 20 * seed)
    expected = reference_monotonic_alignment(scores, tokens, frames)
    found = monotonic_alignment(scores, tokens, frames)
    assert found.dtype == expected.dtype and found.device == expected.device
    assert torch.equal(found, expected)
    assert torch.equal(found.sum(1), frames)


def test_alignment_of_equal_lengths_is_one_frame_per_phoneme():
    scores = torch.randn(3, 6, 6)
    durations = monotonic_alignment(scores, torch.full((3,), 6), torch.full((3,), 6))
    assert torch.equal(durations, torch.ones(3, 6, dtype=torch.long))


@pytest.mark.parametrize("seed", range(4))
def test_batched_prior_equals_the_per_utterance_one(seed):
    generator = torch.Generator().manual_seed(100 + seed)
    scores, tokens, frames = random_batch(
        generator, [1, 4, 7, 12][seed], 4 + 15 * seed, 40 * seed + 3
    )
    _, n, t = scores.shape
    expected = reference_batch_prior(tokens, frames, (len(tokens), t, n))
    found = beta_binomial_log_prior(tokens, frames, n, t)
    assert found.dtype == expected.dtype
    assert torch.equal(found, expected)


def test_aligner_attention_is_unchanged_by_the_batched_prior(monkeypatch):
    """The whole aligner forward, against the same forward with the per-utterance prior."""
    torch.manual_seed(0)
    aligner = Aligner(16, 20)
    tokens = torch.tensor([5, 9, 9, 2])
    frames = torch.tensor([30, 9, 41, 17])
    token_mask = torch.arange(9)[None] < tokens[:, None]
    states, mel = torch.randn(4, 9, 16), torch.randn(4, 41, 20)
    found = aligner(states, token_mask, mel, frames)

    def per_utterance(token_lens, frame_lens, n_tokens, n_frames):
        return reference_batch_prior(token_lens, frame_lens, (len(token_lens), n_frames, n_tokens))

    monkeypatch.setattr("training.model.beta_binomial_log_prior", per_utterance)
    assert torch.equal(found, aligner(states, token_mask, mel, frames))
