"""Shared fixtures: an isolated data root and one smoke corpus built per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    import torch

    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs CUDA (none on this machine)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture(scope="session", autouse=True)
def isolated_data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Corpora built by tests go to a temporary data root, never the repository's data/."""
    root = tmp_path_factory.mktemp("data")
    previous = os.environ.get("VOICESCALE_DATA")
    os.environ["VOICESCALE_DATA"] = str(root)
    yield root
    if previous is None:
        os.environ.pop("VOICESCALE_DATA", None)
    else:
        os.environ["VOICESCALE_DATA"] = previous


@pytest.fixture(scope="session")
def smoke_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The smoke preset built once (two workers) for every test that reads a corpus."""
    from training.corpus.synthetic import build_synthetic_corpus, load_synthetic_preset

    out = tmp_path_factory.mktemp("smoke") / "corpus"
    report = build_synthetic_corpus(load_synthetic_preset("smoke"), out, workers=2, progress=False)
    return report.root


@pytest.fixture(scope="module")
def ray_local():
    """A private local Ray instance (2 CPUs) for one test module, shut down after it."""
    import ray

    from cluster.ray_runtime import connect

    os.environ.pop("RAY_ADDRESS", None)
    connect(num_cpus=2)
    yield
    ray.shutdown()
