"""Judging exported checkpoints on Ray.

`ExportJudge` is what the sweep hands a trial: called with the export directory in the process
that wrote it (the rank-0 training worker, or the baseline's task), it evaluates there — no new
process, no second import of torch and the data. `Evaluator` is a CPU actor that keeps the
judges loaded across many checkpoints (the evaluation benchmark uses it)."""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eval.result import EvalFailure, EvalResult, JudgeOutcome
from training.config import EvalConfig

__all__ = ["Evaluator", "ExportJudge", "evaluate_on_ray"]


@dataclass(frozen=True)
class ExportJudge:
    """Evaluate one export into `out_dir`. Picklable, so it travels to Ray workers inside
    the trial's loop config. A failed evaluation is a result, not a crash — it returns an
    `EvalFailure` and the trial is recorded as failed, while its training (and the export)
    stays for the next run to judge again."""

    corpus_root: str
    out_dir: str
    eval_config: EvalConfig

    def __call__(self, export_dir: Path) -> JudgeOutcome:
        from eval.evaluate_checkpoint import evaluate_checkpoint

        Path(self.out_dir).mkdir(parents=True, exist_ok=True)
        try:
            return evaluate_checkpoint(
                export_dir, self.corpus_root, self.out_dir, cfg=self.eval_config
            )
        except Exception as err:
            return EvalFailure(f"{type(err).__name__}: {err}", traceback.format_exc())


class Evaluator:
    """Ray actor body: builds the judges once per (evaluation settings, corpus)."""

    def __init__(self) -> None:
        import torch

        torch.set_num_threads(1)
        self._judges: dict[str, Any] = {}

    def evaluate(
        self, export_dir: str, corpus_root: str, out_dir: str, cfg: EvalConfig
    ) -> EvalResult:
        from eval.evaluate_checkpoint import Judges, evaluate_checkpoint
        from training.config import config_hash

        key = f"{config_hash(cfg)}:{corpus_root}"
        if key not in self._judges:
            self._judges[key] = Judges.build(cfg, Path(corpus_root))
        return evaluate_checkpoint(
            export_dir, corpus_root, out_dir, cfg=cfg, judges=self._judges[key]
        )


def evaluate_on_ray(
    export_dir: Path, corpus_root: Path, out_dir: Path, cfg: EvalConfig, actor: Any = None
) -> EvalResult:
    """Evaluate one export in a CPU actor (a new one unless `actor` is given)."""
    import ray

    actor = actor or ray.remote(num_cpus=1)(Evaluator).remote()
    return ray.get(actor.evaluate.remote(str(export_dir), str(corpus_root), str(out_dir), cfg))
