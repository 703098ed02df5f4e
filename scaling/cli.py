"""`voicescale` command line: one entry point, subcommands per job."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The whole command line: each subcommand's parser comes from its own function."""
    from scaling.cli_corpus import add_corpus_parser
    from scaling.fit_cli import add_fit_parser
    from scaling.report import add_report_parser
    from scaling.status import add_status_parser

    parser = argparse.ArgumentParser(prog="voicescale", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    add_corpus_parser(commands)
    add_train_parser(commands)
    add_judges_parser(commands)
    add_sweep_parser(commands)
    add_status_parser(commands)
    add_promote_parser(commands)
    add_report_parser(commands)
    add_fit_parser(commands)
    return parser


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    """Options shared by the commands that launch trials."""
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set training.steps=50 (repeatable)",
    )
    parser.add_argument(
        "--max-failures",
        type=int,
        default=2,
        help="restarts of a trial's workers after a failure (default: %(default)s)",
    )


# ---------------------------------------------------------------------------------------------
# train


def add_train_parser(commands: Any) -> None:
    train = commands.add_parser("train", help="run one trial (Ray Train + DeepSpeed)")
    train.add_argument("--config", type=Path, required=True, help="a trial YAML")
    train.add_argument(
        "--out",
        type=Path,
        default=Path("runs/train"),
        help="Ray storage for checkpoints and the export (default: %(default)s)",
    )
    _add_run_options(train)
    train.add_argument("--dry-run", action="store_true", help="print the resolved config")
    train.set_defaults(handler=_train)


def _train(args: argparse.Namespace) -> int:
    """One trial through the same Ray + DeepSpeed path the sweep uses."""
    from cluster.ray_runtime import available_cpus, connect
    from cluster.trial_runner import check_launchable, run_any_trial
    from training.config import TrialConfig, load_config, to_dict, with_overrides
    from training.corpus.resolve import resolve_corpus

    trial = load_config(TrialConfig, args.config)
    if args.set:
        trial = with_overrides(trial, args.set)
    check_launchable(trial)  # before Ray starts: a bad config costs nothing
    if args.dry_run:
        print(json.dumps(to_dict(trial), indent=2))
        return 0
    print(f"trial {trial.name}: resolving corpus {to_dict(trial.data.corpus)}", flush=True)
    corpus_root = resolve_corpus(trial.data.corpus, trial.data.features, progress=True)
    connect()
    check_launchable(trial, cluster_cpus=available_cpus())
    outcome = run_any_trial(trial, corpus_root, args.out.resolve(), max_failures=args.max_failures)
    print(
        json.dumps(
            {
                "trial": outcome.name,
                "status": outcome.status,
                "export": str(outcome.export_dir) if outcome.export_dir else None,
                "error": outcome.error,
                "metrics": outcome.metrics,
            },
            indent=2,
        )
    )
    return 0 if outcome.status == "done" else 1


# ---------------------------------------------------------------------------------------------
# judges check


def add_judges_parser(commands: Any) -> None:
    judges = commands.add_parser("judges", help="validate the evaluation judges")
    judges_cmds = judges.add_subparsers(dest="judges_command", required=True)
    check = judges_cmds.add_parser("check", help="EER, identical SIM and WER sanity figures")
    check.add_argument(
        "--corpus",
        type=Path,
        default=None,
        help="a prepared corpus (default: the synthetic --preset, built if needed)",
    )
    check.add_argument("--preset", default="default")
    check.add_argument(
        "--per-speaker",
        type=int,
        default=12,
        help="held-out utterances per voice (default: %(default)s)",
    )
    check.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="where hub judges are downloaded (default: judges/ beside the corpus)",
    )
    check.add_argument("--json", action="store_true", help="one JSON object on stdout")
    check.set_defaults(handler=_judges_check)


def _judges_check(args: argparse.Namespace) -> int:
    from eval.judges_check import check_judges
    from training.config import CorpusRef, FeatureConfig
    from training.corpus.resolve import resolve_corpus

    corpus = args.corpus or resolve_corpus(
        CorpusRef(synthetic=args.preset), FeatureConfig(), progress=not args.json
    )
    result = check_judges(corpus, per_speaker=args.per_speaker, cache_dir=args.cache_dir)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(
        f"judges on {result['speakers']} held-out voices, {result['utterances']} utterances "
        f"of {result['corpus']} ({result['seconds']:.0f} s)"
    )
    for name, version in result["judges"].items():
        print(f"  {name:<8} {version}")
    rows = [
        ("speaker-verification EER", "eer"),
        ("identical-audio SIM", "identical_sim"),
        ("same / different speaker SIM", None),
        ("ground-truth WER", "gt_wer"),
        ("vocoder resynthesis WER", "gl_wer"),
        ("wrong-text WER", "wrong_text_wer"),
        ("noise WER", "noise_wer"),
    ]
    for metric in ("dnsmos", "utmos"):  # those eval.quality names, on quality_utterances
        if f"gt_{metric}" in result:
            rows += [
                (f"ground-truth {metric.upper()}", f"gt_{metric}"),
                (f"vocoder resynthesis {metric.upper()}", f"gl_{metric}"),
                (f"noise {metric.upper()}", f"noise_{metric}"),
            ]
    for label, key in rows:
        value = (
            f"{result[key]:.3f}"
            if key
            else f"{result['same_speaker_sim']:.3f} / {result['different_speaker_sim']:.3f}"
        )
        print(f"  {label:<30} {value}")
    return 0


# ---------------------------------------------------------------------------------------------
# sweep


def add_sweep_parser(commands: Any) -> None:
    sweep = commands.add_parser("sweep", help="run or resume a sweep (the grid on Ray Tune)")
    sweep.add_argument(
        "--config",
        type=Path,
        default=Path("configs/sweeps/default.yaml"),
        help="a sweep YAML (default: %(default)s)",
    )
    sweep.add_argument("--runs-dir", type=Path, default=Path("runs"), help="default: runs/")
    _add_run_options(sweep)
    look = sweep.add_mutually_exclusive_group()
    look.add_argument(
        "--dry-run",
        action="store_true",
        help="print the plan and the pre-flight checks (exit 2 if one fails), run nothing",
    )
    look.add_argument(
        "--forecast-only",
        action="store_true",
        help="print the forecast (95 %% prediction intervals) and the estimated cost of every "
        "trial not run yet, from the finished cheap trials; run nothing (exit 2 if those "
        "are not all finished)",
    )
    sweep.add_argument("--promote", action="store_true", help="then run `voicescale promote`")
    sweep.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="show every trial in the plan, and what Ray, Tune, MLflow and the trials' "
        "processes print (by default the latter go to runs/<sweep>/trials/<trial>/logs/)",
    )
    sweep.add_argument(
        "--tracking-grace-s",
        type=float,
        default=300.0,
        help="at the end, how long to wait for an unreachable MLflow server before exiting "
        "with code 75 (everything stays in results.jsonl; default: %(default)s)",
    )
    sweep.set_defaults(handler=_sweep)


def _sweep(args: argparse.Namespace) -> int:
    from scaling.sweep import run_sweep
    from training.config import SweepConfig, load_config, with_overrides

    sweep = load_config(SweepConfig, args.config)
    if args.set:
        sweep = with_overrides(sweep, args.set)
    if args.forecast_only:
        from scaling.sweep import plan_sweep
        from scaling.sweep_forecast import forecast_only

        return forecast_only(sweep, plan_sweep(sweep, args.runs_dir.resolve()))
    return run_sweep(
        sweep,
        runs_dir=args.runs_dir.resolve(),
        dry_run=args.dry_run,
        max_failures=args.max_failures,
        promote=args.promote,
        tracking_grace_s=args.tracking_grace_s,
        verbose=args.verbose,
    )


# ---------------------------------------------------------------------------------------------
# promote


def add_promote_parser(commands: Any) -> None:
    promote = commands.add_parser("promote", help="register the best checkpoint as champion")
    promote.add_argument("sweep_dir", type=Path, help="runs/<sweep>")
    promote.add_argument("--metric", default="sim", choices=["sim", "wer", "val_loss"])
    promote.add_argument("--max-wer", type=float, help="only trials with WER at most this")
    promote.add_argument(
        "--runs-dir", type=Path, help="where the default MLflow store lives (default: parent)"
    )
    promote.add_argument("--dry-run", action="store_true", help="decide, change nothing")
    promote.set_defaults(handler=_promote)


def _promote(args: argparse.Namespace) -> int:
    from scaling.promote import promote

    decision = promote(
        args.sweep_dir.resolve(),
        runs_dir=args.runs_dir.resolve() if args.runs_dir else None,
        metric=args.metric,
        max_wer=args.max_wer,
        dry_run=args.dry_run,
    )
    return 0 if decision.promote or args.dry_run or "already" in decision.reason else 3


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `voicescale` console script."""
    from cluster.storage_check import StorageError
    from cluster.tracking import TrackingUnavailable
    from eval.errors import JudgeUnavailable
    from scaling.promote import PromotionError
    from scaling.sweep_forecast import ForecastNotReady
    from store.outcome import OutcomeError
    from store.results_file import ResultsError
    from store.runs_lock import SweepLocked
    from training.config import ConfigError
    from training.corpus.manifest import CorpusError

    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except (
        ConfigError,
        CorpusError,
        ForecastNotReady,
        JudgeUnavailable,
        OutcomeError,
        ResultsError,
        PromotionError,
        StorageError,
        SweepLocked,
        TrackingUnavailable,
    ) as err:
        print(f"voicescale: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
