"""Judging exported checkpoints on Ray.

`ExportJudge` is what a trial is handed: called with the export directory by the process that
wrote it (the rank-0 training worker, or the baseline's task). In a sweep (`service` set) it
passes the export to this node's long-lived judge actor (`cluster.judge_service`), which keeps
the judges and the held-out set loaded across trials, and waits for the verdict while holding
the trial's resources; alone (`voicescale train`, tests) it judges in its own process."""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from pathlib import Path

from eval.result import EvalFailure, JudgeOutcome
from training.config import EvalConfig

__all__ = ["ExportJudge"]


@dataclass(frozen=True)
class ExportJudge:
    """Evaluate one export into `out_dir`. Picklable, so it travels to Ray workers inside
    the trial's loop config. A failed evaluation is a result, not a crash — it returns an
    `EvalFailure` and the trial is recorded as failed, while its training (and the export)
    stays for the next run to judge again."""

    corpus_root: str
    out_dir: str
    eval_config: EvalConfig
    service: str | None = None
    """The sweep whose judge actors to use (`cluster.judge_service`); None: judge here."""
    threads: int = 1
    """CPU threads the judges may use: the caller's share (its `cpus_per_worker`)."""

    def __call__(self, export_dir: Path) -> JudgeOutcome:
        from eval.evaluate_checkpoint import evaluate_checkpoint

        try:
            if self.service is not None:
                from cluster.judge_service import judge_on_service

                return judge_on_service(
                    self.service,
                    export_dir,
                    self.corpus_root,
                    self.out_dir,
                    self.eval_config,
                    self.threads,
                )
            Path(self.out_dir).mkdir(parents=True, exist_ok=True)
            return evaluate_checkpoint(
                export_dir, self.corpus_root, self.out_dir, cfg=self.eval_config
            )
        except Exception as err:  # e.g. the judge actor could not be placed
            return EvalFailure(f"{type(err).__name__}: {err}", traceback.format_exc())
