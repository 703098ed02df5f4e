"""A real multi-node Ray cluster on this machine, for what only a cluster shows: the shared
storage check at sweep start, and the sweep driven through Ray Client (`ray://`).

The cluster is `ray.cluster_utils.Cluster` (a head and a 1-CPU worker node). A node that
cannot see the runs directory is a real one too: `ray start` joins the cluster inside its own
mount namespace (`unshare -m`, root only) with an empty tmpfs over the runs directory, so its
processes see the same path as the driver but not the same files — as a node whose `RUNS`
is its local disk instead of the shared filesystem."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cluster.storage_check import PROBE_DIR, check_shared_storage
from store.results_file import load_results
from tests.golden import GOLDEN, assert_same, machine_fingerprint, recorded_machine
from tests.scaling.test_sweep import stable_rows

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
SMOKE = REPO / "configs" / "sweeps" / "smoke.yaml"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _can_hide_directories() -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", "-m", "sh", "-c", "mount -t tmpfs tmpfs /mnt"], capture_output=True
    )
    return probe.returncode == 0


@pytest.fixture(scope="module")
def cluster():
    """A head (1 CPU, Ray Client server on) and one 1-CPU worker node, on 127.0.0.1."""
    import ray
    from ray.cluster_utils import Cluster

    client_port = _free_port()
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "ray_client_server_port": client_port},
    )
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    cluster.client_address = f"ray://127.0.0.1:{client_port}"
    yield cluster
    ray.shutdown()
    cluster.shutdown()


def _sweep(runs: Path, ray_address: str, *overrides: str) -> tuple[int, str]:
    """`voicescale sweep` on the smoke preset, connecting to `ray_address`."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env.update(RAY_ADDRESS=ray_address, MLFLOW_DISABLE_TELEMETRY="true")
    args = ["sweep", "--config", str(SMOKE), "--runs-dir", str(runs)]
    for override in overrides:
        args += ["--set", override]
    done = subprocess.run(
        [sys.executable, "-m", "scaling.cli", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    return done.returncode, done.stdout + done.stderr


def _alive_nodes(address: str) -> list[dict]:
    import ray

    ray.init(address=address)
    try:
        return [n for n in ray.nodes() if n["Alive"]]
    finally:
        ray.shutdown()


class _NodeWithHiddenDirectory:
    """`ray start` joining `address` from a mount namespace where `hidden` is an empty
    tmpfs; stopped by killing its process group (nothing else on the machine)."""

    def __init__(self, address: str, hidden: Path, log: Path) -> None:
        ray_cli = Path(sys.executable).with_name("ray")
        script = (
            f"mount -t tmpfs tmpfs '{hidden}' && exec '{ray_cli}' start --address={address} "
            "--num-cpus=1 --node-ip-address=127.0.0.1 --disable-usage-stats --block"
        )
        self.process = subprocess.Popen(
            ["unshare", "-m", "sh", "-c", script],
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def stop(self, address: str, node_id: str | None) -> None:
        """Kill the node, then wait until the cluster has noticed (later tests see only
        the nodes that are really there)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)
        deadline = time.monotonic() + 120
        while node_id and time.monotonic() < deadline:
            if node_id not in {n["NodeID"] for n in _alive_nodes(address)}:
                return
            time.sleep(2)


def test_storage_check_passes_when_every_node_shares_the_runs_directory(
    cluster, tmp_path: Path, smoke_corpus: Path
) -> None:
    import ray

    ray.init(address=cluster.address)
    try:
        probes = check_shared_storage(tmp_path / "runs", smoke_corpus)
    finally:
        ray.shutdown()
    assert len(probes) == 2 and all(p.problem is None for p in probes), probes
    assert len({p.node_id for p in probes}) == 2
    assert list((tmp_path / "runs" / PROBE_DIR).iterdir()) == [], "probe files left behind"


def test_a_node_that_cannot_see_the_runs_directory_stops_the_sweep_before_training(
    cluster, tmp_path: Path, smoke_corpus: Path
) -> None:
    if not _can_hide_directories():
        pytest.skip("hiding a directory from one node needs root and `unshare -m`")
    runs = tmp_path / "runs"
    runs.mkdir()
    before = {n["NodeID"] for n in _alive_nodes(cluster.address)}
    node = _NodeWithHiddenDirectory(cluster.address, runs, tmp_path / "node.log")
    joined: set[str] = set()
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            joined = {n["NodeID"] for n in _alive_nodes(cluster.address)} - before
            if joined:
                break
            time.sleep(1)
        assert joined, (tmp_path / "node.log").read_text()[-2000:]
        (hidden_node,) = joined
        code, out = _sweep(
            runs,
            cluster.address,
            "trial.corpus.synthetic=null",
            f"trial.corpus.path={smoke_corpus}",
        )
    finally:
        node.stop(cluster.address, next(iter(joined), None))
    assert code == 2, out[-4000:]
    message = out[out.index("shared storage check failed") :]
    assert "on 1 of 3 nodes" in message, message
    assert hidden_node[:12] in message and f"cannot read {runs.resolve()}" in message, message
    # Nothing trained, nothing recorded.
    assert not (runs / "smoke" / "trials").exists()
    results = runs / "smoke" / "results.jsonl"
    assert not results.exists() or load_results(results) == []


def test_a_sweep_through_ray_client_records_what_local_mode_records(
    cluster, tmp_path: Path
) -> None:
    """Through `ray://` the planning stays on the client and Tune's driver runs on the head
    (Ray Tune moves it there). Two of the smoke sweep's trials (a DeepSpeed trial and the
    baseline) must record the rows local mode recorded: the golden smoke rows, to the bit on
    the machine kind that wrote them, the same fields elsewhere."""
    runs = tmp_path / "runs"
    grid = ["grid.model_sizes=[xs]", "grid.data_budgets=[{utterances: 64}]"]
    code, out = _sweep(runs, cluster.client_address, *grid)
    assert code == 0, out[-4000:]
    rows = stable_rows(runs / "smoke" / "results.jsonl")
    assert [r["trial"] for r in rows] == ["baseline-u64-seed0", "xs-u64-seed0"], out[-2000:]
    assert all(r["status"] == "done" for r in rows), rows
    names = {r["trial"] for r in rows}
    local = [r for r in stable_rows(GOLDEN / "smoke_results.jsonl") if r["trial"] in names]
    assert [sorted(r) for r in rows] == [sorted(r) for r in local]
    if machine_fingerprint() == recorded_machine():
        assert_same(rows, local, 0, "results.jsonl through ray://")
