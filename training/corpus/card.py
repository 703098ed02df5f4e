"""The corpus card: what a prepared corpus holds, written once when it is built."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from importlib import metadata
from pathlib import Path
from typing import Any

from training.corpus.budgets import summarize_budgets
from training.corpus.manifest import Utterance

__all__ = ["corpus_card", "format_card", "tool_versions", "write_card"]


def tool_versions() -> dict[str, str]:
    """Versions of everything that shapes the corpus bytes."""
    import soundfile

    from training.corpus.espeak import espeak_version

    versions = {"espeak-ng": espeak_version(), "libsndfile": soundfile.__libsndfile_version__}
    for package in ("voicescale", "espeakng-loader", "torch", "torchaudio", "soundfile", "numpy"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def _split_summary(utts: list[Utterance]) -> dict[str, Any]:
    return {
        "utterances": len(utts),
        "hours": round(sum(u.duration_s for u in utts) / 3600, 4),
        "speakers": len({u.speaker for u in utts}),
    }


def corpus_card(
    utterances: list[Utterance],
    *,
    kind: str,
    key: str,
    config: dict[str, Any],
    speakers: dict[str, Any],
    skipped: int,
) -> dict[str, Any]:
    """Summary of a corpus: splits, per-speaker amounts, budget table, phonemes, tool versions."""
    train = [u for u in utterances if u.split == "train"]
    heldout = [u for u in utterances if u.split == "heldout"]
    dev = [u for u in utterances if u.split == "dev"]
    per_speaker: dict[str, dict[str, Any]] = defaultdict(lambda: {"utterances": 0, "seconds": 0.0})
    for u in utterances:
        entry = per_speaker[u.speaker]
        entry["split"] = u.split
        entry["utterances"] += 1
        entry["seconds"] += u.duration_s
    roster = {
        sid: {**entry, "seconds": round(entry["seconds"], 2), "source": speakers.get(sid, {})}
        for sid, entry in sorted(per_speaker.items())
    }
    phonemes = Counter(p for u in utterances for p in u.phonemes)
    return {
        "kind": kind,
        "key": key,
        "config": config,
        "splits": {
            "train": _split_summary(train),
            "heldout": _split_summary(heldout),
            "dev": _split_summary(dev),
            "all": _split_summary(utterances),
        },
        "speakers": roster,
        "budgets": [vars(b) for b in summarize_budgets(train)],
        "phoneme_inventory": dict(sorted(phonemes.items())),
        "has_durations": all(u.durations is not None for u in utterances),
        "skipped": skipped,
        "tools": tool_versions(),
    }


def write_card(path: Path, card: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(card, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(path)


def format_card(card: dict[str, Any], root: Path | None = None) -> str:
    """Human-readable card for the terminal."""
    splits = card["splits"]
    lines = [
        f"corpus {root}" if root else "corpus",
        f"  kind      {card['kind']}  (key {card['key']})",
    ]
    for name in ("train", "heldout", "dev"):
        s = splits.get(name)
        if s is None:  # cards written before the dev split
            continue
        lines.append(
            f"  {name:<9} {s['utterances']:>7} utterances  {s['hours']:8.3f} h  "
            f"{s['speakers']:>4} speakers"
        )
    lines.append(
        f"  phonemes  {len(card['phoneme_inventory'])} distinct; durations: "
        f"{'yes' if card['has_durations'] else 'no'}"
    )
    lines.append(f"  skipped   {card['skipped']} inputs (see skipped.jsonl)")
    lines.append("  budgets   utterances      hours  speakers")
    for b in card["budgets"]:
        lines.append(f"            {b['utterances']:>10} {b['hours']:10.4f} {b['speakers']:>9}")
    tools = ", ".join(f"{k} {v}" for k, v in sorted(card["tools"].items()))
    lines.append(f"  tools     {tools}")
    for key, params in sorted(card.get("features", {}).items()):
        lines.append(
            f"  features  {key}: {params['n_mels']} mels, hop {params['hop_length']}, "
            f"n_fft {params['n_fft']} @ {params['sample_rate']} Hz"
        )
    return "\n".join(lines)
