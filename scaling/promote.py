"""`voicescale promote`: register a sweep's best checkpoint in the MLflow model registry and
move the alias `champion` to it — only when it beats the current champion beyond both
confidence intervals.

The registered version's source is the trial's `checkpoint` artifact (model.safetensors +
model_config.json), so `models:/voicescale-tts@champion` downloads a directory that
`training.inference.Synthesizer.load` turns into a voice cloner.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from store.lineage import git_commit
from store.records import ResultRow
from store.results_file import load_rows

__all__ = ["MODEL_NAME", "Decision", "decide", "load_champion", "promote"]

MODEL_NAME = "voicescale-tts"
ALIAS = "champion"
HIGHER_IS_BETTER = {"sim": True, "wer": False, "val_loss": False}


class PromotionError(ValueError):
    """Nothing in the sweep can be promoted (the message says why)."""


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str
    candidate: dict[str, Any]
    champion: dict[str, Any] | None


def eligible_rows(
    rows: list[ResultRow], sweep_dir: Path, metric: str, max_wer: float | None
) -> tuple[list[ResultRow], list[str]]:
    """Rows that may be promoted, and why each other row may not."""
    keep, excluded = [], []
    for row in rows:
        why = None
        if row.status != "done":
            why = f"status {row.status}"
        elif not _finite(row.metric(metric)):
            why = f"no {metric}"
        elif max_wer is not None and not (_finite(row.wer) and row.wer <= max_wer):
            why = f"wer {row.wer} > --max-wer {max_wer}"
        elif row.failed_utterances:
            why = f"{row.failed_utterances} utterances failed evaluation"
        elif not row.checkpoint or not (sweep_dir / row.checkpoint).is_dir():
            why = "exported checkpoint missing"
        elif not row.mlflow_run_id:
            why = "no MLflow run"
        if why:
            excluded.append(f"{row.trial}: {why}")
        else:
            keep.append(row)
    return keep, excluded


def _interval(record: dict[str, Any], metric: str) -> tuple[float, float]:
    """The metric's CI; a point value when it has none (val_loss)."""
    ci = record.get(f"{metric}_ci")
    if ci and all(_finite(v) for v in ci):
        return float(ci[0]), float(ci[1])
    value = float(record[metric])
    return value, value


def decide(candidate: dict[str, Any], champion: dict[str, Any] | None, metric: str) -> Decision:
    """Promote when there is no champion, or the candidate's CI clears the champion's."""
    if champion is None:
        return Decision(True, "no current champion", candidate, None)
    if champion.get("checkpoint_sha256") == candidate.get("checkpoint_sha256"):
        return Decision(False, "the candidate already is the champion", candidate, champion)
    if not _finite(champion.get(metric)):
        return Decision(True, f"the champion has no {metric} recorded", candidate, champion)
    lo, hi = _interval(candidate, metric)
    c_lo, c_hi = _interval(champion, metric)
    better = lo > c_hi if HIGHER_IS_BETTER[metric] else hi < c_lo
    relation = (
        f"candidate {metric} {candidate[metric]:.4f} [{lo:.4f}, {hi:.4f}] vs champion "
        f"{float(champion[metric]):.4f} [{c_lo:.4f}, {c_hi:.4f}]"
    )
    if better:
        return Decision(True, f"beats the champion beyond the CIs: {relation}", candidate, champion)
    return Decision(False, f"not better beyond the CIs: {relation}", candidate, champion)


def promote(
    sweep_dir: Path,
    *,
    runs_dir: Path | None = None,
    metric: str = "sim",
    max_wer: float | None = None,
    dry_run: bool = False,
) -> Decision:
    """Pick the sweep's best eligible trial, register it, move `champion` if it wins."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from cluster.tracking import default_tracking_uri

    if metric not in HIGHER_IS_BETTER:
        raise PromotionError(f"--metric must be one of {sorted(HIGHER_IS_BETTER)}, got {metric!r}")
    sweep_dir = Path(sweep_dir)
    rows = load_rows(sweep_dir / "results.jsonl")
    if not rows:
        raise PromotionError(f"{sweep_dir / 'results.jsonl'}: no trials recorded yet")
    eligible, excluded = eligible_rows(rows, sweep_dir, metric, max_wer)
    if not eligible:
        raise PromotionError(
            f"no eligible trial in {sweep_dir}: " + "; ".join(excluded or ["none"])
        )
    sign = 1 if HIGHER_IS_BETTER[metric] else -1
    best = max(eligible, key=lambda r: sign * float(r.metric(metric)))
    export = sweep_dir / str(best.checkpoint)
    # The registry's view of a contender: the row's fields plus the exported files' digest.
    candidate = {**best.to_json(), "checkpoint_sha256": checkpoint_sha256(export)}

    uri = default_tracking_uri(runs_dir or sweep_dir.parent)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    champion = _current_champion(client, MlflowException)
    decision = decide(candidate, champion, metric)
    print(f"candidate: {best.trial} ({metric} {float(best.metric(metric)):.4f}); {decision.reason}")
    if dry_run or not decision.promote:
        if dry_run:
            print("dry run: registry unchanged")
        return decision
    version = _register(client, candidate, sweep_dir, metric, MlflowException)
    client.set_registered_model_alias(MODEL_NAME, ALIAS, version)
    print(f"models:/{MODEL_NAME}@{ALIAS} → version {version} ({best.trial})")
    return decision


def _current_champion(client: Any, not_found: type[Exception]) -> dict[str, Any] | None:
    try:
        version = client.get_model_version_by_alias(MODEL_NAME, ALIAS)
    except not_found:
        return None
    tags = dict(version.tags)
    record: dict[str, Any] = {"version": version.version, **tags}
    for key in ("sim", "wer", "val_loss"):
        if key in tags:
            record[key] = float(tags[key])
        low, high = tags.get(f"{key}_ci_low"), tags.get(f"{key}_ci_high")
        if low is not None and high is not None:
            record[f"{key}_ci"] = [float(low), float(high)]
    return record


def _register(
    client: Any, row: dict[str, Any], sweep_dir: Path, metric: str, exists: type[Exception]
) -> str:
    """The model version for this checkpoint: reused if already registered (idempotent)."""
    with contextlib.suppress(exists):  # already registered
        client.create_registered_model(MODEL_NAME)
    for version in client.search_model_versions(f"name = '{MODEL_NAME}'"):
        if version.tags.get("checkpoint_sha256") == row["checkpoint_sha256"]:
            return version.version
    tags = {
        "sweep": sweep_dir.name,
        "trial": row["trial"],
        "config_hash": str(row.get("config_hash")),
        "git_commit": git_commit() or "unknown",
        "data_hours": str(row.get("data_hours")),
        "data_utterances": str(row.get("data_utterances")),
        "params": str(row.get("params")),
        "checkpoint_sha256": row["checkpoint_sha256"],
        "selected_by": metric,
    }
    for key in ("sim", "wer", "val_loss"):
        if _finite(row.get(key)):
            tags[key] = repr(float(row[key]))
        ci = row.get(f"{key}_ci")
        if ci and all(_finite(v) for v in ci):
            tags[f"{key}_ci_low"], tags[f"{key}_ci_high"] = repr(ci[0]), repr(ci[1])
    version = client.create_model_version(
        MODEL_NAME,
        source=f"runs:/{row['mlflow_run_id']}/checkpoint",
        run_id=row["mlflow_run_id"],
        tags=tags,
        description=f"{row['trial']} from sweep {sweep_dir.name}",
    )
    return version.version


def checkpoint_sha256(export_dir: Path) -> str:
    """Digest of the exported files (weights and config), in name order."""
    h = hashlib.sha256()
    for path in sorted(p for p in Path(export_dir).iterdir() if p.is_file()):
        h.update(path.name.encode())
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def load_champion(tracking_uri: str, dst: Path) -> Any:
    """Download `models:/voicescale-tts@champion` into `dst` and load it for synthesis —
    only if the downloaded files have the `checkpoint_sha256` registered with the version
    (a swapped or damaged artifact raises `PromotionError`)."""
    import mlflow
    from mlflow import MlflowClient

    from training.inference import Synthesizer

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    version = client.get_model_version_by_alias(MODEL_NAME, ALIAS)
    expected = version.tags.get("checkpoint_sha256")
    if not expected:
        raise PromotionError(
            f"models:/{MODEL_NAME} version {version.version} has no checkpoint_sha256 tag: "
            "nothing to verify it against; register it again with `voicescale promote`"
        )
    # The version, not the alias: the alias may move between the lookup and the download.
    # URIs passed, not set: mlflow.set_tracking_uri would redirect every later MLflow call of
    # this process (and, through the environment, its children) to this store.
    # (A models:/ URI would be resolved against the global registry URI whatever is passed:
    # resolve the version's artifact location with our client instead.)
    source = client.get_model_version_download_uri(MODEL_NAME, version.version)
    local = Path(
        mlflow.artifacts.download_artifacts(
            artifact_uri=source, dst_path=str(dst), tracking_uri=tracking_uri
        )
    )
    actual = checkpoint_sha256(local)
    if actual != expected:
        raise PromotionError(
            f"{local}: downloaded models:/{MODEL_NAME} version {version.version} has sha256 "
            f"{actual[:16]}…, but {expected[:16]}… was registered; refusing to load it"
        )
    return Synthesizer.load(local)


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)
