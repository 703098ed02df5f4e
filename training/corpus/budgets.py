"""Nested data budgets: every budget is a prefix of one training order.

The training order is fixed when a corpus is built, so a budget of D hours is a prefix of every
larger budget (same seed): curves compare like with like. The order also decides how many
*voices* a budget holds. Zero-shot cloning generalises from speaker diversity, so by default
the number of voices grows with the budget (`growth`=0.5: ~sqrt), rather than every budget
spreading thinly over all voices.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass

from training.config import DataBudget
from training.corpus.manifest import CorpusError, Utterance

__all__ = ["BudgetSummary", "select_budget", "speaker_schedule", "summarize_budgets"]


def speakers_allowed(n: int, total: int, n_speakers: int, growth: float, minimum: int) -> int:
    """How many voices a prefix of `n` of `total` utterances may draw from."""
    wanted = math.ceil(n_speakers * (n / total) ** growth - 1e-9)
    return max(min(minimum, n_speakers), min(n_speakers, wanted))


def speaker_schedule(capacity: list[int], total: int, growth: float, minimum: int) -> list[int]:
    """Speaker index for each of `total` positions of the training order.

    Speaker i may appear at most `capacity[i]` times and joins in index order as the prefix
    grows (see `speakers_allowed`); among the voices allowed so far, the one used least goes
    next (ties: lower index), so every prefix is as balanced as the voices' supply allows.
    """
    if total > sum(capacity):
        raise ValueError(f"cannot schedule {total} utterances from {sum(capacity)} available")
    n_speakers = len(capacity)
    heap: list[tuple[int, int]] = []  # (times used, speaker)
    joined = 0
    order: list[int] = []
    for position in range(total):
        allowed = speakers_allowed(position + 1, total, n_speakers, growth, minimum)
        while joined < n_speakers and (joined < allowed or not heap):
            if capacity[joined] > 0:
                heapq.heappush(heap, (0, joined))
            joined += 1
        used, speaker = heapq.heappop(heap)
        order.append(speaker)
        if used + 1 < capacity[speaker]:
            heapq.heappush(heap, (used + 1, speaker))
    return order


def select_budget(train: list[Utterance], budget: DataBudget) -> list[Utterance]:
    """The prefix of the training order that `budget` names.

    An hours budget takes the shortest prefix holding at least that much audio. A budget larger
    than the corpus is an error, never a silent truncation.
    """
    available_hours = sum(u.duration_s for u in train) / 3600
    if budget.utterances is not None:
        if budget.utterances > len(train):
            raise CorpusError(
                f"data.budget.utterances={budget.utterances} exceeds the "
                f"{len(train)} training utterances in the corpus"
            )
        return train[: budget.utterances]
    seconds = 0.0
    for n, utt in enumerate(train, start=1):
        seconds += utt.duration_s
        if seconds >= budget.hours * 3600 - 1e-6:
            return train[:n]
    raise CorpusError(
        f"data.budget.hours={budget.hours} exceeds the {available_hours:.3f} h of "
        "training audio in the corpus"
    )


@dataclass(frozen=True)
class BudgetSummary:
    utterances: int
    hours: float
    speakers: int


def summarize_budgets(train: list[Utterance]) -> list[BudgetSummary]:
    """Hours and voices at each power-of-two prefix (and the whole pool), for the corpus card."""
    sizes = [2**k for k in range(4, 64) if 2**k < len(train)] + [len(train)]
    summaries, seconds, voices = [], 0.0, set()
    marks = iter(sizes)
    mark = next(marks)
    for n, utt in enumerate(train, start=1):
        seconds += utt.duration_s
        voices.add(utt.speaker)
        if n == mark:
            summaries.append(BudgetSummary(n, round(seconds / 3600, 4), len(voices)))
            mark = next(marks, None)
    return summaries
