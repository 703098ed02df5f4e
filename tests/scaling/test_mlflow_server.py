"""The fail-fast path when the tracking server is unreachable at the start. (A real `mlflow
server` that the sweep logs to, and that goes away mid-sweep, is the outage drill:
tests/cluster/test_drills.py.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from cluster.drills.harness import free_port
from tests.scaling.test_sweep import REPO, SMOKE, sweep_env

CLI = [sys.executable, "-m", "scaling.cli"]
ONE_TRIAL = [
    "--set",
    "name=smoke-server",
    "--set",
    "grid.model_sizes=[xs]",
    "--set",
    "grid.data_budgets=[{utterances: 64}]",
    "--set",
    "grid.baseline=false",
]


def sweep(runs: Path, uri: str, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*CLI, "sweep", "--config", str(SMOKE), "--runs-dir", str(runs), *extra],
        cwd=REPO,
        env=sweep_env(MLFLOW_TRACKING_URI=uri),
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_unreachable_tracking_server_fails_before_training(tmp_path: Path) -> None:
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    done = sweep(tmp_path / "runs", uri, *ONE_TRIAL)
    assert done.returncode == 2
    assert "unreachable" in done.stderr and uri in done.stderr
    assert not (tmp_path / "runs" / "smoke-server" / "trials").exists()
    assert "Started a local Ray instance" not in done.stdout + done.stderr
