"""The sweep against a real `mlflow server` on 127.0.0.1, and the fail-fast path when the
tracking server is unreachable."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sweep(runs: Path, uri: str, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*CLI, "sweep", "--config", str(SMOKE), "--runs-dir", str(runs), *extra],
        cwd=REPO,
        env=sweep_env(MLFLOW_TRACKING_URI=uri),
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture
def mlflow_server(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    log = (tmp_path / "mlflow-server.log").open("w")
    server = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "mlflow"),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--backend-store-uri",
            f"sqlite:///{tmp_path / 'server.db'}",
            "--artifacts-destination",
            str(tmp_path / "server-artifacts"),
            "--workers",
            "1",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail("mlflow server did not become healthy: see mlflow-server.log")
            time.sleep(1)
        yield uri
    finally:
        server.terminate()  # the server's main PID only: it stops its own workers
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()


@pytest.mark.slow
def test_sweep_logs_to_a_real_mlflow_server(tmp_path: Path, mlflow_server: str) -> None:
    from mlflow import MlflowClient

    done = sweep(tmp_path / "runs", mlflow_server, *ONE_TRIAL)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    assert not (tmp_path / "runs" / "mlflow.db").exists(), "the server, not local sqlite"
    client = MlflowClient(tracking_uri=mlflow_server)
    experiment = client.get_experiment_by_name("voicescale-smoke-server")
    runs = client.search_runs([experiment.experiment_id])
    by_role = {r.data.tags["voicescale.role"]: r for r in runs}
    assert len(runs) == 2 and set(by_role) == {"sweep", "trial"}
    child = by_role["trial"]
    assert child.data.tags["mlflow.parentRunId"] == by_role["sweep"].info.run_id
    assert child.data.tags["voicescale.trial"] == "xs-u64-seed0"
    assert {"val_loss", "sim", "wer"} <= set(child.data.metrics)
    artifacts = {a.path for a in client.list_artifacts(child.info.run_id, "checkpoint")}
    assert "checkpoint/model.safetensors" in artifacts


def test_unreachable_tracking_server_fails_before_training(tmp_path: Path) -> None:
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    done = sweep(tmp_path / "runs", uri, *ONE_TRIAL)
    assert done.returncode == 2
    assert "unreachable" in done.stderr and uri in done.stderr
    assert not (tmp_path / "runs" / "smoke-server" / "trials").exists()
    assert "Started a local Ray instance" not in done.stdout + done.stderr
