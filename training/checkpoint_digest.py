"""Digest manifests for training checkpoints: resume unpickles only what the suite wrote.

DeepSpeed's `load_checkpoint` unpickles its `.pt` files, so a checkpoint directory that was
corrupted, truncated or swapped is code execution or silent garbage. At save time every rank
writes `digests-rank<r>.json` — sha256 of each file it put in the checkpoint — and Ray merges
the ranks' directories. Before loading, every file must be listed by some manifest with the
same digest, and every listed file must be there.

This guards against damaged and substituted files, not against someone who can rewrite the
manifests too: keep `RUNS` writable only by the people who run sweeps.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

__all__ = ["CheckpointIntegrityError", "file_sha256", "verify_manifests", "write_manifest"]

MANIFEST_GLOB = "digests-rank*.json"


class CheckpointIntegrityError(RuntimeError):
    """A checkpoint's files do not match the digests written when it was saved."""


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _payload(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file() and not p.match(MANIFEST_GLOB))


def write_manifest(directory: Path, rank: int) -> Path:
    """Record the digest of every file under `directory` (this rank's part)."""
    digests = {str(p.relative_to(directory)): file_sha256(p) for p in _payload(directory)}
    path = directory / f"digests-rank{rank}.json"
    path.write_text(json.dumps(digests, indent=1, sort_keys=True))
    return path


def verify_manifests(directory: Path) -> int:
    """Raise `CheckpointIntegrityError` naming the first file that does not match; returns
    how many files were checked."""
    manifests = sorted(directory.glob(MANIFEST_GLOB))
    if not manifests:
        raise CheckpointIntegrityError(
            f"{directory}: no digest manifest ({MANIFEST_GLOB}); refusing to load a checkpoint "
            "this suite did not write"
        )
    expected: dict[str, str] = {}
    for manifest in manifests:
        try:
            expected.update(json.loads(manifest.read_text()))
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as err:
            raise CheckpointIntegrityError(f"{manifest}: unreadable manifest ({err})") from None
    present = {str(p.relative_to(directory)): p for p in _payload(directory)}
    for name, path in present.items():
        if name not in expected:
            raise CheckpointIntegrityError(
                f"{path}: not in the checkpoint's digest manifest (added after it was saved)"
            )
        actual = file_sha256(path)
        if actual != expected[name]:
            raise CheckpointIntegrityError(
                f"{path}: sha256 {actual[:16]}… differs from {expected[name][:16]}… recorded "
                "when it was saved; refusing to unpickle it"
            )
    missing = sorted(set(expected) - set(present))
    if missing:
        raise CheckpointIntegrityError(f"{directory}: files missing since save: {missing}")
    return len(present)
