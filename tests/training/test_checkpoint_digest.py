"""Digest manifests: a checkpoint is loaded only if every file is the one that was saved."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.checkpoint_digest import CheckpointIntegrityError, verify_manifests, write_manifest


def saved_checkpoint(root: Path) -> Path:
    """Two ranks' parts merged into one directory, as Ray Train merges them."""
    (root / "engine").mkdir(parents=True)
    (root / "engine" / "mp_rank_00_model_states.pt").write_bytes(b"rank0 weights" * 100)
    (root / "trainer_state.json").write_text('{"step": 5}')
    write_manifest(root, 0)
    rank1 = root.parent / "rank1"
    (rank1 / "engine").mkdir(parents=True)
    (rank1 / "engine" / "zero_pp_rank_1_optim_states.pt").write_bytes(b"rank1 shard")
    write_manifest(rank1, 1)
    for path in rank1.rglob("*"):
        if path.is_file():
            target = root / path.relative_to(rank1)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(path.read_bytes())
    return root


def test_an_intact_checkpoint_verifies(tmp_path: Path) -> None:
    assert verify_manifests(saved_checkpoint(tmp_path / "ckpt")) == 3


def test_one_changed_byte_is_refused_naming_the_file(tmp_path: Path) -> None:
    root = saved_checkpoint(tmp_path / "ckpt")
    target = root / "engine" / "mp_rank_00_model_states.pt"
    data = bytearray(target.read_bytes())
    data[7] ^= 1
    target.write_bytes(bytes(data))
    with pytest.raises(CheckpointIntegrityError, match=r"mp_rank_00_model_states.pt: sha256"):
        verify_manifests(root)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda r: (r / "engine" / "evil.pt").write_bytes(b"x"), "not in the checkpoint's"),
        (lambda r: (r / "trainer_state.json").unlink(), "files missing since save"),
        (lambda r: [p.unlink() for p in r.glob("digests-rank*.json")], "no digest manifest"),
        (lambda r: (r / "digests-rank0.json").write_text("{"), "unreadable manifest"),
    ],
    ids=["added file", "missing file", "no manifest", "broken manifest"],
)
def test_other_damage_is_refused(tmp_path: Path, damage, message: str) -> None:
    root = saved_checkpoint(tmp_path / "ckpt")
    damage(root)
    with pytest.raises(CheckpointIntegrityError, match=message):
        verify_manifests(root)
