"""Typed configuration: one frozen object per concern, composed into trials and sweeps.

Every config is a frozen (pydantic-validated) dataclass. Values are checked when the object is
built — from Python, from a dict (`from_dict`, which is how Ray workers receive it) or from a YAML
preset (`load_config`). Unknown keys, wrong types and impossible values raise `ConfigError`
naming the file and the dotted key.

The flow: sweep YAML → `SweepConfig` → `SweepConfig.trials()` → `TrialConfig` per grid point.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import ConfigDict, Field, TypeAdapter, ValidationError
from pydantic.dataclasses import dataclass as _pydantic_dataclass

__all__ = [
    "MODEL_LADDER",
    "ConfigError",
    "CorpusRef",
    "DataBudget",
    "DataConfig",
    "DeepSpeedConfig",
    "EvalConfig",
    "FeatureConfig",
    "ModelConfig",
    "OptimConfig",
    "RealCorpusConfig",
    "ResourcesConfig",
    "SweepConfig",
    "SweepGrid",
    "SyntheticCorpusConfig",
    "TrainingConfig",
    "TrialConfig",
    "TrialTemplate",
    "config_hash",
    "from_dict",
    "load_config",
    "replace",
    "repo_configs_dir",
    "to_dict",
    "with_overrides",
]

# Strict: "3" is not an int and true is not a number; unknown keys are errors.
_STRICT = ConfigDict(extra="forbid", strict=True)


def frozen_config(cls):
    """Make `cls` a frozen, validated dataclass."""
    return _pydantic_dataclass(frozen=True, config=_STRICT)(cls)


Positive = Annotated[int, Field(gt=0)]
NonNegative = Annotated[int, Field(ge=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
Fraction = Annotated[float, Field(ge=0, lt=1)]


class ConfigError(ValueError):
    """A configuration value is missing, unknown, of the wrong type or impossible."""


# ---------------------------------------------------------------------------------------------
# Data


@frozen_config
class FeatureConfig:
    """Log-mel analysis shared by the models, the baseline and the vocoder."""

    sample_rate: Positive = 16000
    """Hz; corpora are resampled to this rate when prepared."""
    n_fft: Positive = 1024
    win_length: Positive = 1024
    hop_length: Positive = 256
    """Samples between frames (16 ms at 16 kHz)."""
    n_mels: Positive = 80
    f_min: Annotated[float, Field(ge=0)] = 0.0
    f_max: PositiveFloat = 8000.0
    """Hz; at most the Nyquist frequency."""
    log_floor: PositiveFloat = 1e-5
    """Magnitudes are clamped to this before the natural log."""

    def __post_init__(self) -> None:
        if self.win_length > self.n_fft:
            raise ValueError(f"win_length ({self.win_length}) must be <= n_fft ({self.n_fft})")
        if self.f_max > self.sample_rate / 2:
            raise ValueError(
                f"f_max ({self.f_max}) must be <= sample_rate/2 ({self.sample_rate / 2})"
            )
        if self.f_min >= self.f_max:
            raise ValueError(f"f_min ({self.f_min}) must be < f_max ({self.f_max})")


@frozen_config
class SyntheticCorpusConfig:
    """The embedded eSpeak NG corpus: who speaks, how much, and the seed that fixes it all."""

    name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")] = "default"
    seed: NonNegative = 0
    train_speakers: Positive = 56
    """Distinct training voices (from the curated roster in `training.corpus.speakers`)."""
    heldout_speakers: Annotated[int, Field(ge=2)] = 8
    """Voices never seen in training; cloning quality is measured on them."""
    train_utterances: Positive = 8192
    """Size of the training pool; every data budget is a prefix of it."""
    heldout_utterances_per_speaker: Annotated[int, Field(ge=3)] = 24
    """Prompt, enrolment and evaluation sentences per held-out voice (all held-out sentences)."""
    speaker_growth: Annotated[float, Field(ge=0, le=1)] = 0.5
    """A budget of n of the N pool utterances holds ~train_speakers·(n/N)^growth voices
    (0: every voice from the first utterance; 0.5: voices grow with sqrt of the budget)."""
    min_speakers_per_budget: Positive = 8
    rate_jitter: Annotated[float, Field(ge=0, lt=0.5)] = 0.08
    """Per-utterance speaking-rate variation, as a fraction of the voice's rate."""
    sample_rate: Positive = 16000

    def __post_init__(self) -> None:
        if self.min_speakers_per_budget > self.train_speakers:
            raise ValueError(
                f"min_speakers_per_budget ({self.min_speakers_per_budget}) must be <= "
                f"train_speakers ({self.train_speakers})"
            )
        if self.train_utterances < self.train_speakers:
            raise ValueError(
                f"train_utterances ({self.train_utterances}) must be >= train_speakers "
                f"({self.train_speakers}) so every voice speaks"
            )


@frozen_config
class RealCorpusConfig:
    """How to turn a real corpus on disk into a prepared voicescale corpus."""

    layout: Literal["libritts", "librispeech", "vctk", "manifest"]
    source: str
    """Directory of the corpus (or the JSONL/CSV file for layout `manifest`)."""
    name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")] = "real"
    seed: NonNegative = 0
    heldout_fraction: Fraction = 0.1
    """Share of speakers held out for evaluation (at least `min_heldout_speakers`)."""
    min_heldout_speakers: Positive = 2
    sample_rate: Positive = 16000
    min_source_sample_rate: Positive = 16000
    """Audio below this rate is skipped rather than upsampled."""
    max_duration_s: PositiveFloat = 30.0
    """Longer utterances are skipped (and counted)."""
    speaker_growth: Annotated[float, Field(ge=0, le=1)] = 0.5
    min_speakers_per_budget: Positive = 8
    workers: Positive = 2


@frozen_config
class CorpusRef:
    """Which corpus a trial reads: a synthetic preset by name, or a prepared corpus directory."""

    synthetic: str | None = "default"
    """Name of a preset in configs/corpus/ (built on first use)."""
    path: str | None = None
    """A prepared corpus directory (from `voicescale corpus prepare`)."""

    def __post_init__(self) -> None:
        if (self.synthetic is None) == (self.path is None):
            raise ValueError("give exactly one of corpus.synthetic and corpus.path")


@frozen_config
class DataBudget:
    """How much training data a trial sees: a prefix of the corpus's training order."""

    utterances: Positive | None = None
    hours: PositiveFloat | None = None

    def __post_init__(self) -> None:
        if (self.utterances is None) == (self.hours is None):
            raise ValueError("a data budget needs exactly one of utterances and hours")

    @property
    def label(self) -> str:
        """Short, filesystem-safe text used in trial names: `u1024` or `h0.5`."""
        return f"u{self.utterances}" if self.utterances is not None else f"h{self.hours:g}"


@frozen_config
class DataConfig:
    corpus: CorpusRef = CorpusRef()
    budget: DataBudget = DataBudget(utterances=1024)
    features: FeatureConfig = FeatureConfig()


# ---------------------------------------------------------------------------------------------
# Model, optimisation, engine


@frozen_config
class ModelConfig:
    """One point on the model-size dial: a named size fixes width and depth (`MODEL_LADDER`)."""

    size: Annotated[str, Field(pattern=r"^[a-z0-9]+$")] = "s"
    width: Positive = 32
    """Channels of the phoneme encoder and mel decoder."""
    depth: Positive = 2
    """Residual blocks in each of the encoder and decoder."""
    speaker_channels: Annotated[int, Field(ge=8, multiple_of=4)] = 16
    """Channels of the ECAPA-TDNN speaker encoder (ladder: half the width, at least 8)."""
    kernel_size: Annotated[int, Field(ge=1)] = 5
    dropout: Fraction = 0.1


def model_size(size: str, width: int, depth: int) -> ModelConfig:
    """A ladder rung: the speaker encoder grows with the model at half its width."""
    return ModelConfig(
        size=size, width=width, depth=depth, speaker_channels=max(8, width // 2 // 4 * 4)
    )


# One dial: width, with depth growing slowly. xs-l is the CPU ladder (~100x in parameters,
# l at ~0.4 s per batch-16 step on one core); xl and up are for GPUs (xxl > 100 M parameters).
MODEL_LADDER: dict[str, ModelConfig] = {
    "xs": model_size("xs", 16, 2),
    "s": model_size("s", 32, 2),
    "m": model_size("m", 96, 3),
    "l": model_size("l", 192, 4),
    "xl": model_size("xl", 512, 6),
    "xxl": model_size("xxl", 1024, 12),
    "xxxl": model_size("xxxl", 1536, 16),
}


@frozen_config
class OptimConfig:
    """torch AdamW with linear warmup and cosine decay."""

    lr: PositiveFloat = 1e-3
    """Peak learning rate at the reference width; see `lr_reference_width`."""
    lr_reference_width: Positive | None = 256
    """The learning rate scales as lr·sqrt(lr_reference_width / model width), so narrow models
    get larger steps (measured: xs at 4096 utterances, val L1 1.45 → 1.01); None: lr as is."""
    weight_decay: Annotated[float, Field(ge=0)] = 0.01
    betas: tuple[Fraction, Fraction] = (0.9, 0.98)
    warmup_steps: NonNegative = 50
    grad_clip: PositiveFloat = 1.0


@frozen_config
class TrainingConfig:
    """How long and how a trial trains."""

    steps: Positive | None = None
    """Fixed number of optimiser steps; None derives it from the budget (see below)."""
    steps_per_sqrt_utterance: PositiveFloat = 12.0
    """Step rule when `steps` is None: steps = round(this · sqrt(budget utterances))."""
    batch_size: Positive = 16
    """Global batch (utterances per optimiser step, across workers and accumulation)."""
    eval_every: Positive = 100
    early_stop_patience: NonNegative = 0
    """Validation rounds without improvement before stopping; 0 disables early stopping."""
    checkpoint_every: Positive = 200
    """Optimiser steps between checkpoints (every validation also checkpoints)."""
    inject_failure_at_step: NonNegative | None = None
    """Testing: raise once at this step, to exercise Ray's restart-and-resume path."""


@frozen_config
class DeepSpeedConfig:
    zero_stage: Annotated[int, Field(ge=0, le=3)] = 2
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    """auto: bf16 on CUDA, fp32 on CPU."""
    gradient_accumulation_steps: Positive = 1


@frozen_config
class EvalConfig:
    """Which judges score cloning quality, and on how much held-out material."""

    speaker_judge: Literal["resemblyzer", "speechbrain-ecapa"] = "resemblyzer"
    speaker_judge_source: str | None = None
    """Hub id or local directory for speechbrain-ecapa (default: the hub's
    speechbrain/spkrec-ecapa-voxceleb at a pinned revision)."""
    speaker_judge_revision: str | None = None
    """The hub commit to load `speaker_judge_source` at; required for a hub id."""
    asr_judge: Literal["pocketsphinx-jsgf", "whisper", "speechbrain"] = "pocketsphinx-jsgf"
    asr_judge_source: str | None = None
    asr_judge_revision: str | None = None
    """The hub commit to load a speechbrain `asr_judge_source` at; required for a hub id."""
    sentences_per_speaker: Positive = 6
    """Held-out sentences synthesised per held-out voice (default corpus: 8 voices → 48)."""
    prompt_seconds: PositiveFloat = 3.0
    bootstrap: Positive = 1000
    audio_samples: NonNegative = 4
    """Generated clips kept per checkpoint for the report."""


@frozen_config
class ResourcesConfig:
    num_workers: Positive = 1
    cpus_per_worker: PositiveFloat = 1.0
    gpus_per_worker: Annotated[float, Field(ge=0)] = 0.0


# ---------------------------------------------------------------------------------------------
# Trials and sweeps


@frozen_config
class TrialTemplate:
    """Everything a trial has that the sweep grid does not vary."""

    corpus: CorpusRef = CorpusRef()
    features: FeatureConfig = FeatureConfig()
    optim: OptimConfig = OptimConfig()
    training: TrainingConfig = TrainingConfig()
    deepspeed: DeepSpeedConfig = DeepSpeedConfig()
    eval: EvalConfig = EvalConfig()
    resources: ResourcesConfig = ResourcesConfig()


@frozen_config
class TrialConfig:
    """One point of the grid: a model (or the baseline) trained on one data budget with one seed."""

    kind: Literal["neural", "baseline"] = "neural"
    model: ModelConfig = ModelConfig()
    """Ignored by the baseline (kept so every trial has the same shape)."""
    data: DataConfig = DataConfig()
    optim: OptimConfig = OptimConfig()
    training: TrainingConfig = TrainingConfig()
    deepspeed: DeepSpeedConfig = DeepSpeedConfig()
    eval: EvalConfig = EvalConfig()
    resources: ResourcesConfig = ResourcesConfig()
    seed: NonNegative = 0

    @property
    def name(self) -> str:
        """Deterministic, human-readable trial name (no timestamps: restores must find it)."""
        family = self.model.size if self.kind == "neural" else "baseline"
        return f"{family}-{self.data.budget.label}-seed{self.seed}"

    @property
    def learning_rate(self) -> float:
        """The peak learning rate this trial uses (width-scaled, see `OptimConfig`)."""
        reference = self.optim.lr_reference_width
        if reference is None or self.kind != "neural":
            return self.optim.lr
        return self.optim.lr * (reference / self.model.width) ** 0.5

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrialConfig:
        return from_dict(cls, data)


@frozen_config
class SweepGrid:
    """The axes a sweep varies."""

    model_sizes: tuple[str, ...] = ("s", "m", "l")
    data_budgets: tuple[DataBudget, ...] = (
        DataBudget(utterances=256),
        DataBudget(utterances=1024),
    )
    seeds: tuple[NonNegative, ...] = (0,)
    baseline: bool = True
    """Also train the traditional baseline at every budget and seed."""

    def __post_init__(self) -> None:
        for axis in ("model_sizes", "data_budgets", "seeds"):
            values = getattr(self, axis)
            if not values:
                raise ValueError(f"{axis} is empty: the grid needs at least one value per axis")
            if len(set(values)) != len(values):
                raise ValueError(f"{axis} has repeated entries: {list(values)}")


@frozen_config
class SweepConfig:
    """A named grid of trials sharing one template."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]
    grid: SweepGrid = SweepGrid()
    trial: TrialTemplate = TrialTemplate()
    model_sizes: dict[str, ModelConfig] | None = None
    """Extra or overriding named sizes, on top of `MODEL_LADDER`."""
    resources_by_size: dict[str, ResourcesConfig] | None = None
    """Per-family resources (keys: model sizes or "baseline"), replacing `trial.resources`:
    e.g. more GPUs for the largest model on a cluster."""
    max_concurrent_trials: Positive | None = None
    """Cap on trials running at once; default: as many as the cluster's CPUs/GPUs fit."""

    def trials(self) -> list[TrialConfig]:
        """Expand the grid into trials, ordered budget-major so small, fast trials come first."""
        sizes = {**MODEL_LADDER, **(self.model_sizes or {})}
        unknown = [s for s in self.grid.model_sizes if s not in sizes]
        if unknown:
            raise ConfigError(
                f"grid.model_sizes: unknown size(s) {unknown}; known: {sorted(sizes)}"
            )
        t = self.trial
        families = set(self.grid.model_sizes) | {"baseline"}
        stray = sorted(set(self.resources_by_size or {}) - families)
        if stray:
            raise ConfigError(
                f"resources_by_size: {stray} not in grid.model_sizes (or 'baseline'): "
                f"{sorted(families)}"
            )
        data = [
            DataConfig(corpus=t.corpus, budget=b, features=t.features)
            for b in self.grid.data_budgets
        ]
        common = dict(optim=t.optim, training=t.training, deepspeed=t.deepspeed, eval=t.eval)
        by_size = self.resources_by_size or {}
        trials = []
        for d in data:
            for seed in self.grid.seeds:
                if self.grid.baseline:
                    resources = by_size.get("baseline", t.resources)
                    trials.append(
                        TrialConfig(
                            kind="baseline", data=d, seed=seed, resources=resources, **common
                        )
                    )
                for size in self.grid.model_sizes:
                    resources = by_size.get(size, t.resources)
                    trials.append(
                        TrialConfig(
                            kind="neural",
                            model=sizes[size],
                            data=d,
                            seed=seed,
                            resources=resources,
                            **common,
                        )
                    )
        return trials


# ---------------------------------------------------------------------------------------------
# Conversion, hashing, loading

T = TypeVar("T")


def to_dict(config: Any) -> dict[str, Any]:
    """Plain JSON-able dict (tuples become lists); `from_dict` inverts it exactly."""
    return TypeAdapter(type(config)).dump_python(config, mode="json")


def from_dict(cls: type[T], data: dict[str, Any], *, source: str = "<dict>") -> T:
    """Build and validate `cls` from plain data; errors name `source` and the dotted key."""
    try:
        # JSON mode: strict types, but lists are accepted for tuples and ints for floats.
        return TypeAdapter(cls).validate_json(json.dumps(data), strict=True)
    except ValidationError as err:
        raise ConfigError(_describe(err, source)) from None
    except TypeError as err:  # data that is not JSON-able (e.g. a YAML date)
        raise ConfigError(f"{source}: {err}") from None


def config_hash(config: Any) -> str:
    """Stable 12-hex-digit digest of a config's canonical JSON."""
    canonical = json.dumps(to_dict(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def load_config(cls: type[T], path: str | Path) -> T:
    """Read a YAML file into `cls`; every error names the file and the key."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"{path}: cannot read config: {err.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: config is not valid UTF-8") from None
    try:
        data = yaml.load(text, Loader=_YamlLoader)
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: invalid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: expected a mapping of keys at the top level, got {type(data).__name__}"
        )
    return from_dict(cls, data, source=str(path))


def with_overrides(config: T, overrides: list[str], *, source: str = "--set") -> T:
    """Apply `a.b.c=value` overrides (value parsed as YAML) and re-validate."""
    data = to_dict(config)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"{source}: expected key=value, got {item!r}")
        node = data
        *parents, leaf = key.split(".")
        for part in parents:
            if not isinstance(node.get(part), dict):
                raise ConfigError(f"{source}: {key}: {part!r} is not a section")
            node = node[part]
        node[leaf] = yaml.load(raw, Loader=_YamlLoader)
    return from_dict(type(config), data, source=source)


def replace(config: T, **changes: Any) -> T:
    """`dataclasses.replace` that reports failures as `ConfigError`."""
    try:
        return dataclasses.replace(config, **changes)
    except ValidationError as err:
        raise ConfigError(_describe(err, type(config).__name__)) from None


def repo_configs_dir() -> Path:
    """The repository's `configs/` directory (presets ship with the source tree)."""
    return Path(__file__).resolve().parent.parent / "configs"


def _describe(err: ValidationError, source: str) -> str:
    lines = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "unexpected_keyword_argument":
            msg = "unknown key"
        elif e["type"] in ("missing", "missing_argument"):
            msg = "required key is missing"
        shown = e.get("input")
        got = (
            ""
            if e["type"] in ("missing", "missing_argument") or isinstance(shown, dict)
            else f" (got {shown!r})"
        )
        lines.append(f"{source}: {key}: {msg}{got}")
    return "\n".join(lines)


class _YamlLoader(yaml.SafeLoader):
    """SafeLoader that reads `1e-3` as a float (YAML 1.1 insists on a dot: `1.0e-3`)."""


_YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)
