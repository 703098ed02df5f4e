"""The worker pool every corpus step uses: forked processes running torch on one thread."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor

__all__ = ["single_thread_pool"]


def single_thread_pool(workers: int) -> ProcessPoolExecutor:
    """`workers` processes (at least one), each with torch on one thread.

    fork: workers start in milliseconds and work at once (spawn re-imports torch and the
    caller's __main__: seconds each). Safe because they run torch single-threaded (no OpenMP
    region is inherited) and each loads its own private eSpeak. One thread also keeps what
    they compute (resampled samples, mels) independent of the caller's thread settings."""
    return ProcessPoolExecutor(
        max(1, workers), mp_context=multiprocessing.get_context("fork"), initializer=_one_thread
    )


def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)
