"""The fault drills, each a real fault against the real CLI (Ray Tune + Train + DeepSpeed, a
real MLflow store or server, SIGKILL, a lost node): every check a drill makes must hold.
`make drills` runs the same drills and prints their table."""

from __future__ import annotations

from pathlib import Path

import pytest

from cluster.drills.harness import DrillResult
from cluster.drills.scenarios import diverge, kills, node_loss, outage, tamper, torn

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("drills")


def assert_passed(result: DrillResult) -> None:
    assert result.passed, "\n".join(f"✗ {c.name}: {c.detail}" for c in result.failures)


def test_divergence_is_recorded_not_failed(work: Path) -> None:
    # Diverging after the first checkpoint: tests/cluster/test_trial_runner.py (cheaper there).
    assert_passed(diverge(work, after_checkpoint=False))


def test_a_torn_results_line_is_set_aside(work: Path) -> None:
    if not (work / "diverge" / "diverge" / "results.jsonl").exists():
        pytest.skip("needs the divergence drill's finished sweep")
    assert_passed(torn(work))


def test_killed_worker_and_driver_lose_nothing(work: Path) -> None:
    assert_passed(kills(work))


def test_a_tampered_checkpoint_is_not_loaded(work: Path) -> None:
    assert_passed(tamper(work))


def test_tracking_outage_does_not_stop_training(work: Path) -> None:
    assert_passed(outage(work))


def test_losing_a_node_mid_trial(work: Path) -> None:
    assert_passed(node_loss(work))
