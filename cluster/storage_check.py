"""Does every node see the sweep's storage? Checked at sweep start on a multi-node cluster.

Workers write checkpoints and exports under `RUNS` and read the corpus; the driver reads the
exports back and the judges read the corpus. On a path that is not shared (a node's local
disk at the same path) nothing fails at once: trials train, then the driver finds no export,
or a resumed trial no checkpoint. So before any training, one zero-CPU Ray task per alive
node, pinned to it:

1. reads a probe file the driver wrote under `<RUNS>/.storage-probe/<token>/` (the node sees
   what the driver writes),
2. writes its own probe file there, which the driver then reads (the driver sees what the
   node writes),
3. reads the corpus manifest and compares its SHA-256 with the driver's (the same corpus,
   not merely one at the same path).

Any node that fails any step fails the sweep, naming the node and the path. A single-node
cluster (or a local Ray) has nothing to check.
"""

from __future__ import annotations

import hashlib
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PROBE_DIR", "StorageError", "check_shared_storage"]

PROBE_DIR = ".storage-probe"
PROBE_TIMEOUT_S = 120.0
"""A node whose probe has not answered by then (mount hung, node saturated) fails the check."""


class StorageError(RuntimeError):
    """Some node cannot see `RUNS` or the corpus as the driver does."""


@dataclass(frozen=True)
class NodeProbe:
    """One node's verdict: `problem` is None when it sees the storage as the driver does."""

    node_id: str
    address: str
    problem: str | None

    def describe(self) -> str:
        return f"node {self.address} ({self.node_id[:12]}): {self.problem}"


def check_shared_storage(runs_dir: Path, corpus_root: Path) -> list[NodeProbe]:
    """Probe every alive node of the connected Ray cluster (see module doc); return the
    verdicts, or raise `StorageError` listing each node that failed. Fewer than two nodes:
    returns [] without probing; a node that leaves the cluster meanwhile is left out."""
    import ray

    nodes = [n for n in ray.nodes() if n.get("Alive")]
    if len(nodes) < 2:
        return []
    token = uuid.uuid4().hex
    probe_dir = Path(runs_dir).resolve() / PROBE_DIR / token
    probe_dir.mkdir(parents=True)
    try:
        (probe_dir / "driver").write_text(token)
        manifest = _manifest(Path(corpus_root))
        digest = _sha256(manifest)
        probes = _probe_nodes(nodes, probe_dir, token, manifest, digest)
    finally:
        shutil.rmtree(probe_dir, ignore_errors=True)
    failed = [p for p in probes if p.problem]
    if failed:
        raise StorageError(
            f"shared storage check failed on {len(failed)} of {len(probes)} nodes:\n"
            + "\n".join(f"  {p.describe()}" for p in failed)
            + "\nthe runs directory and the corpus must be on storage every node mounts at the "
            "same path (NFS, a mounted bucket; see README, Run on your cluster)"
        )
    return probes


def _probe_nodes(
    nodes: list[dict], probe_dir: Path, token: str, manifest: Path, digest: str
) -> list[NodeProbe]:
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    probe = ray.remote(num_cpus=0, max_retries=0)(_probe_node)
    pending = {}
    for node in nodes:
        strategy = NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)
        ref = probe.options(scheduling_strategy=strategy).remote(
            str(probe_dir), token, str(manifest), digest, node["NodeID"]
        )
        pending[node["NodeID"]] = (node.get("NodeManagerAddress", "?"), ref)
    probes = []
    for node_id, (address, ref) in pending.items():
        try:
            problem = ray.get(ref, timeout=PROBE_TIMEOUT_S)
        except ray.exceptions.TaskUnschedulableError:
            # The node left the cluster after it was listed: nothing of it to check, and
            # nothing will be scheduled there.
            print(f"storage check: node {address} ({node_id[:12]}) left the cluster", flush=True)
            continue
        except ray.exceptions.GetTimeoutError:
            problem = f"no answer from its probe within {PROBE_TIMEOUT_S:.0f} s"
        except Exception as err:
            problem = f"its probe task failed: {type(err).__name__}: {err}"
        if problem is None:
            problem = _driver_reads(probe_dir / f"node-{node_id}", token)
        probes.append(NodeProbe(node_id, address, problem))
    return probes


def _probe_node(probe_dir: str, token: str, manifest: str, digest: str, node_id: str) -> str | None:
    """Runs on the node: what it cannot see, or None."""
    written_by_driver = Path(probe_dir) / "driver"
    try:
        seen = written_by_driver.read_text()
    except OSError as err:
        return f"cannot read {written_by_driver}, which the driver wrote ({err.strerror})"
    if seen != token:
        return f"{written_by_driver} holds another sweep's probe: not the driver's directory"
    mine = Path(probe_dir) / f"node-{node_id}"
    try:
        mine.write_text(token)
    except OSError as err:
        return f"cannot write {mine} ({err.strerror})"
    try:
        if _sha256(Path(manifest)) != digest:
            return f"{manifest} differs from the driver's copy: not the same corpus"
    except OSError as err:
        return f"cannot read the corpus manifest {manifest} ({err.strerror})"
    return None


def _driver_reads(path: Path, token: str) -> str | None:
    try:
        if path.read_text() == token:
            return None
    except OSError:
        pass
    return f"the driver cannot see {path}, which the node wrote: its runs directory is not shared"


def _manifest(corpus_root: Path) -> Path:
    from training.corpus.manifest import MANIFEST_FILE

    return corpus_root.resolve() / MANIFEST_FILE


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
