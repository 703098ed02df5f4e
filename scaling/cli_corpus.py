"""`voicescale corpus build | prepare | card`: one parser function per subcommand, each next to
its handler; `scaling.cli.build_parser` adds them through `add_corpus_parser`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from training.config import FeatureConfig

__all__ = ["add_corpus_parser"]


def add_corpus_parser(commands: Any) -> None:
    """Register `voicescale corpus ...` on the top-level subparsers object."""
    corpus = commands.add_parser("corpus", help="build, prepare or inspect corpora")
    corpus_cmds = corpus.add_subparsers(dest="corpus_command", required=True)
    _add_build_parser(corpus_cmds)
    _add_prepare_parser(corpus_cmds)
    _add_card_parser(corpus_cmds)


def _add_output_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-features", action="store_true", help="skip the log-mel cache")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


# ---------------------------------------------------------------------------------------------
# corpus build


def _add_build_parser(corpus_cmds: Any) -> None:
    build = corpus_cmds.add_parser("build", help="build the embedded synthetic corpus")
    source = build.add_mutually_exclusive_group()
    source.add_argument(
        "--preset", default="default", help="preset name in configs/corpus/ (default: %(default)s)"
    )
    source.add_argument("--config", type=Path, help="a corpus YAML file instead of a preset")
    build.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output directory (default: data/corpora/synthetic-<name>-<key>)",
    )
    build.add_argument("--workers", type=int, default=2, help="processes (default: 2)")
    _add_output_options(build)
    build.set_defaults(handler=_corpus_build)


def _corpus_build(args: argparse.Namespace) -> int:
    from training.config import SyntheticCorpusConfig, load_config
    from training.corpus.synthetic import build_synthetic_corpus, load_synthetic_preset

    cfg = (
        load_config(SyntheticCorpusConfig, args.config)
        if args.config
        else load_synthetic_preset(args.preset)
    )
    report = build_synthetic_corpus(cfg, args.out, workers=args.workers, progress=not args.quiet)
    if report.cache_hit:
        print(f"cache hit: {report.root} already holds this corpus (nothing rebuilt)")
    else:
        print(
            f"built {report.utterances} utterances in {report.seconds:.1f} s "
            f"({report.utterances_per_second:.0f} utt/s) into {report.root}"
        )
    _finish(report.root, args, workers=args.workers)
    return 0


# ---------------------------------------------------------------------------------------------
# corpus prepare

# Shorthand flags for the keys of `RealCorpusConfig` that users give most (and README shows);
# every other key goes through --set. None: not given, the config's value stands.
_PREPARE_SHORTHANDS = (
    "layout",
    "source",
    "heldout_fraction",
    "workers",
    "name",
    "seed",
    "sample_rate",
)


def _add_prepare_parser(corpus_cmds: Any) -> None:
    prepare = corpus_cmds.add_parser(
        "prepare",
        help="turn a real corpus into a prepared corpus",
        description="Settings are those of RealCorpusConfig (training/config_corpus.py), "
        "applied in order: --config, then the shorthand flags, then --set.",
    )
    prepare.add_argument("--config", type=Path, help="a RealCorpusConfig YAML file")
    prepare.add_argument(
        "--layout", help="shorthand for --set layout=...: libritts, librispeech, vctk, manifest"
    )
    prepare.add_argument(
        "--source",
        type=Path,
        help="shorthand for --set source=...: the corpus directory, or the JSONL/CSV file for "
        "--layout manifest",
    )
    prepare.add_argument(
        "--heldout-fraction", type=float, help="shorthand for --set heldout_fraction=..."
    )
    prepare.add_argument(
        "--workers", type=int, help="shorthand for --set workers=... (also the feature cache's)"
    )
    prepare.add_argument("--name", help="shorthand for --set name=... (the corpus's name)")
    prepare.add_argument("--seed", type=int, help="shorthand for --set seed=... (speaker split)")
    prepare.add_argument(
        "--sample-rate", type=int, help="shorthand for --set sample_rate=... (Hz, default 16000)"
    )
    prepare.add_argument(
        "--for",
        dest="for_config",
        type=Path,
        metavar="CONFIG",
        help="the sweep or trial YAML the corpus is prepared for: its features decide the "
        "sample rate and the log-mel cache built now",
    )
    prepare.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set seed=1 --set name=vctk (repeatable)",
    )
    prepare.add_argument("--out", type=Path, required=True, help="the prepared corpus directory")
    _add_output_options(prepare)
    prepare.set_defaults(handler=_corpus_prepare)


def _corpus_prepare(args: argparse.Namespace) -> int:
    from training.config import RealCorpusConfig, apply_overrides, from_dict, read_config_file
    from training.corpus.real import prepare_corpus

    data = read_config_file(args.config) if args.config else {}
    given = {key: getattr(args, key) for key in _PREPARE_SHORTHANDS}
    given = {key: value for key, value in given.items() if value is not None}
    data.update({k: str(v) if isinstance(v, Path) else v for k, v in given.items()})
    apply_overrides(data, args.set)
    where = [str(args.config)] if args.config else []
    if given or args.set or not args.config:
        where.append("command line")
    features = _features_for(args.for_config) if args.for_config else None
    if features is not None:
        _take_sample_rate(data, features, args.for_config)
    cfg = from_dict(RealCorpusConfig, data, source=" + ".join(where))
    report = prepare_corpus(cfg, args.out, progress=not args.quiet)
    verb = "cache hit:" if report.cache_hit else "prepared"
    print(
        f"{verb} {report.utterances} utterances in {report.root} "
        f"({report.skipped} inputs skipped, listed in skipped.jsonl)"
    )
    _finish(report.root, args, workers=cfg.workers, features=features)
    return 0


def _features_for(path: Path) -> FeatureConfig:
    """The log-mel settings of a sweep YAML (`trial.features`) or a trial YAML
    (`data.features`)."""
    from training.config import SweepConfig, TrialConfig, load_config, read_config_file

    if "grid" in read_config_file(path):
        return load_config(SweepConfig, path).trial.features
    return load_config(TrialConfig, path).data.features


def _take_sample_rate(data: dict[str, Any], features: FeatureConfig, config: Path) -> None:
    """The corpus is resampled to the rate its trials read; a different explicit rate would
    make a corpus those trials refuse."""
    from training.config import ConfigError

    given = data.setdefault("sample_rate", features.sample_rate)
    if given != features.sample_rate:
        raise ConfigError(
            f"sample_rate={given} contradicts --for {config}, whose features.sample_rate is "
            f"{features.sample_rate} Hz (its trials would refuse this corpus); drop one"
        )


# ---------------------------------------------------------------------------------------------
# corpus card


def _add_card_parser(corpus_cmds: Any) -> None:
    card = corpus_cmds.add_parser("card", help="print a corpus card")
    card.add_argument("corpus", type=Path)
    card.add_argument("--json", action="store_true")
    card.set_defaults(handler=_corpus_card)


def _corpus_card(args: argparse.Namespace) -> int:
    from training.corpus.card import format_card
    from training.corpus.manifest import Corpus

    card = Corpus.open(args.corpus).card()
    print(json.dumps(card, indent=2) if args.json else format_card(card, args.corpus))
    return 0


def _finish(
    root: Path, args: argparse.Namespace, *, workers: int, features: FeatureConfig | None = None
) -> None:
    """Cache the log-mels now (so the first trial starts without waiting for them) — the
    given settings, else the defaults at the corpus's rate — then print the corpus card."""
    from training.config import FeatureConfig
    from training.corpus.card import format_card
    from training.corpus.features import load_features
    from training.corpus.manifest import Corpus

    corpus = Corpus.open(root)
    if features is None:
        rates = {u.sample_rate for u in corpus.utterances}
        features = FeatureConfig(sample_rate=rates.pop()) if len(rates) == 1 else FeatureConfig()
    if not args.no_features:
        store = load_features(corpus, features, workers=workers, progress=not args.quiet)
        print(f"features: {store.path}")
    print(format_card(Corpus.open(root, check_files=False).card(), root))
