"""Checks before any GPU-hour is spent: can every trial of a sweep run as configured?

`voicescale sweep --dry-run` runs all of them and prints each; a sweep runs them at start and
refuses to launch anything while one fails. Each problem names the config field to change.

corpus      the prepared corpus exists and opens (a synthetic preset is built at start)
rate        its audio is at `trial.features.sample_rate`
budgets     every `grid.data_budgets` entry fits in its training split
held-out    its held-out voices have enough utterances for `trial.eval`
speaker     the speaker judge loads (a hub one from the cache, or a local directory)
asr         the ASR judge loads (likewise)
vocoder     the vocoder loads
resources   every trial's workers fit the connected Ray cluster ($RAY_ADDRESS), else this
            machine
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training.config import ConfigError, EvalConfig, FeatureConfig, SweepConfig, TrialConfig
from training.corpus.manifest import Corpus, CorpusError

__all__ = ["Check", "format_checks", "preflight", "resource_problems"]


@dataclass(frozen=True)
class Check:
    """One check's verdict: `problem` is None when it passed (or could not apply)."""

    name: str
    detail: str
    problem: str | None = None


def preflight(
    sweep: SweepConfig, runs_dir: Path, *, load_judges: bool, verbose: bool = True
) -> list[Check]:
    """Every check for `sweep`. `load_judges`: load the judges even when they ship in
    wheels (the dry run); at sweep start only hub judges are loaded, to catch a missing
    download or directory before the first trial."""
    checks: list[Check] = []
    template = sweep.trial
    corpus = _open_corpus(template.corpus, checks)
    if corpus is not None:
        checks.append(_rate_check(corpus, template.features.sample_rate))
        checks.append(_budget_check(corpus, sweep))
        checks.append(_heldout_check(corpus, template.eval))
    # Judges do not need the corpus itself (only whether it has a sentence grammar).
    judged_root = corpus.root if corpus else template.corpus.path
    if judged_root and (load_judges or _uses_hub(template.eval)):
        from cluster.sweep_runner import judging_config

        cfg = judging_config(template.eval, runs_dir)
        checks += _judges_checks(Path(judged_root), cfg, template.features)
    checks.append(_resources_check(sweep.trials(), verbose))
    return checks


def format_checks(checks: list[Check]) -> str:
    lines = ["checks:"]
    for c in checks:
        verdict = "ok  " if c.problem is None else "FAIL"
        lines.append(f"  {verdict} {c.name:<10} {c.problem or c.detail}")
    return "\n".join(lines)


def _open_corpus(ref: Any, checks: list[Check]) -> Corpus | None:
    if ref.synthetic is not None:
        from training.corpus.synthetic import load_synthetic_preset

        try:
            load_synthetic_preset(ref.synthetic)
        except (ConfigError, FileNotFoundError) as err:
            checks.append(Check("corpus", "", f"trial.corpus.synthetic: {err}"))
            return None
        checks.append(Check("corpus", f"synthetic preset {ref.synthetic!r}, built at start"))
        return None
    try:
        corpus = Corpus.open(ref.path, check_files=False)
    except CorpusError as err:
        checks.append(
            Check(
                "corpus",
                "",
                f"trial.corpus.path: {err} (prepare it with `voicescale corpus prepare "
                "--for <this sweep>`)",
            )
        )
        return None
    checks.append(
        Check(
            "corpus",
            f"{corpus.root}: {len(corpus.train)} training utterances, "
            f"{len({u.speaker for u in corpus.heldout})} held-out voices",
        )
    )
    return corpus


def _rate_check(corpus: Corpus, rate: int) -> Check:
    rates = sorted({u.sample_rate for u in corpus.utterances})
    if rates == [rate]:
        return Check("rate", f"{rate} Hz")
    return Check(
        "rate",
        "",
        f"trial.features.sample_rate is {rate} Hz but {corpus.root} holds audio at "
        f"{', '.join(map(str, rates))} Hz: prepare the corpus again with "
        "`voicescale corpus prepare ... --for <this sweep>` (or change the features)",
    )


def _budget_check(corpus: Corpus, sweep: SweepConfig) -> Check:
    from training.corpus.budgets import select_budget

    hours = sum(u.duration_s for u in corpus.train) / 3600
    for i, budget in enumerate(sweep.grid.data_budgets):
        try:
            select_budget(corpus.train, budget)
        except CorpusError as err:
            return Check("budgets", "", f"grid.data_budgets[{i}] ({budget.label}): {err}")
    largest = sweep.grid.data_budgets[-1].label if sweep.grid.data_budgets else "-"
    return Check(
        "budgets", f"all fit (largest {largest}; corpus {hours:.2f} h, {len(corpus.train)} utts)"
    )


def _heldout_check(corpus: Corpus, cfg: EvalConfig) -> Check:
    from eval.evaluate_checkpoint import evaluation_plan

    try:
        items, _ = evaluation_plan(corpus, cfg)
    except CorpusError as err:
        return Check("held-out", "", f"trial.eval.sentences_per_speaker: {err}")
    return Check("held-out", f"{len(items)} sentences to clone per checkpoint")


def _uses_hub(cfg: EvalConfig) -> bool:
    return (
        cfg.speaker_judge != "resemblyzer"
        or cfg.asr_judge in ("whisper", "speechbrain")
        or cfg.vocoder != "griffin-lim"
    )


def _judges_checks(corpus_root: Path, cfg: EvalConfig, features: FeatureConfig) -> list[Check]:
    """Each judge and the vocoder loaded on its own, so one missing does not hide another."""
    from eval.errors import JudgeUnavailable
    from eval.evaluate_checkpoint import Judges
    from training.vocoder import vocoder_for

    cache = Judges.cache_dir_for(cfg, corpus_root)
    loaders = {
        "speaker": lambda: Judges.speaker_judge(cfg, cache).version(),
        "asr": lambda: Judges.asr_judge(cfg, corpus_root, cache).version(),
        "vocoder": lambda: (vocoder_for(features, cfg, cache), cfg.vocoder)[1],
    }
    checks = []
    for name, load in loaders.items():
        try:
            checks.append(Check(name, load()))
        except (JudgeUnavailable, ValueError) as err:
            checks.append(Check(name, "", str(err)))
    return checks


def _resources_check(trials: list[TrialConfig], verbose: bool = True) -> Check:
    """Against the cluster at $RAY_ADDRESS (connecting to it), else this machine."""
    from cluster.trial_runner import check_launchable

    if not os.environ.get("RAY_ADDRESS"):
        for trial in trials:
            try:
                check_launchable(trial)
            except ConfigError as err:
                return Check("resources", "", f"trial {trial.name}: {err}")
        return Check("resources", f"this machine ({os.cpu_count()} CPUs; no $RAY_ADDRESS)")
    import ray

    from cluster.ray_runtime import connect

    connect(verbose=verbose)
    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    problems = resource_problems(trials, nodes)
    if problems:
        return Check("resources", "", "; ".join(problems))
    totals = {k: sum(n.get(k, 0) for n in nodes) for k in ("CPU", "GPU")}
    return Check(
        "resources",
        f"cluster at $RAY_ADDRESS: {len(nodes)} nodes, {totals['CPU']:g} CPUs, "
        f"{totals['GPU']:g} GPUs",
    )


def resource_problems(trials: list[TrialConfig], nodes: list[dict[str, float]]) -> list[str]:
    """Why a trial could never be scheduled on nodes with these resources: one worker must
    fit on a single node, and all of a trial's workers together on the cluster."""
    problems = []
    seen = set()
    for trial in trials:
        r = trial.resources
        key = (r.num_workers, r.cpus_per_worker, r.gpus_per_worker)
        if key in seen:
            continue
        seen.add(key)
        worker = {"CPU": r.cpus_per_worker, "GPU": r.gpus_per_worker}
        fits = [n for n in nodes if all(n.get(k, 0) >= v for k, v in worker.items() if v)]
        where = f"trial {trial.name}: resources"
        if not fits:
            problems.append(
                f"{where}: one worker needs {r.cpus_per_worker:g} CPUs + "
                f"{r.gpus_per_worker:g} GPUs, and no node of the cluster has that much"
            )
            continue
        slots = sum(min(int(n.get(k, 0) // v) for k, v in worker.items() if v) for n in fits)
        if slots < r.num_workers:
            problems.append(
                f"{where}.num_workers = {r.num_workers}, but the cluster has room for "
                f"{slots} such workers"
            )
    return problems
