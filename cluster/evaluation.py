"""Evaluation on Ray: a CPU actor that holds the judges and evaluates exported checkpoints,
so judging never occupies the GPUs (or the CPU slots) that training uses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from training.config import EvalConfig, to_dict

__all__ = ["Evaluator", "evaluate_on_ray"]


class Evaluator:
    """Ray actor body: builds the judges once per (evaluation settings, corpus)."""

    def __init__(self) -> None:
        import torch

        torch.set_num_threads(1)
        self._judges: dict[str, Any] = {}

    def evaluate(
        self, export_dir: str, corpus_root: str, out_dir: str, eval_config: dict[str, Any]
    ) -> dict[str, Any]:
        import json

        from eval.evaluate_checkpoint import Judges, evaluate_checkpoint
        from training.config import from_dict

        cfg = from_dict(EvalConfig, eval_config)
        key = json.dumps([eval_config, corpus_root], sort_keys=True)
        if key not in self._judges:
            self._judges[key] = Judges.build(cfg, Path(corpus_root))
        return evaluate_checkpoint(
            export_dir, corpus_root, out_dir, cfg=cfg, judges=self._judges[key]
        )


def evaluate_on_ray(
    export_dir: Path, corpus_root: Path, out_dir: Path, cfg: EvalConfig, actor: Any = None
) -> dict[str, Any]:
    """Evaluate one export in a CPU actor (a new one unless `actor` is given)."""
    import ray

    actor = actor or ray.remote(num_cpus=1)(Evaluator).remote()
    return ray.get(
        actor.evaluate.remote(str(export_dir), str(corpus_root), str(out_dir), to_dict(cfg))
    )
