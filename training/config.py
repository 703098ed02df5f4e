"""Typed configuration: one frozen object per concern, composed into trials and sweeps.

Every config is a frozen (pydantic-validated) dataclass. Values are checked when the object is
built — from Python, from a dict (`from_dict`, which is how Ray workers receive it) or from a YAML
preset (`load_config`). Unknown keys, wrong types, impossible values and broken rules across
fields (in `__post_init__`: e.g. a batch that the workers cannot split) raise `ConfigError`
naming the file and the dotted key. The machinery (loading, overrides, hashing) lives in
`training.config_io`, the corpus-building configs in `training.config_corpus`; both are
re-exported here.

The flow: sweep YAML → `SweepConfig` → `SweepConfig.trials()` → `TrialConfig` per grid point.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, SerializerFunctionWrapHandler, model_serializer

from training.config_corpus import RealCorpusConfig, SyntheticCorpusConfig
from training.config_eval import EvalConfig
from training.config_io import (
    ConfigError,
    Fraction,
    NonNegative,
    Positive,
    PositiveFloat,
    RuleError,
    apply_overrides,
    config_hash,
    from_dict,
    frozen_config,
    load_config,
    read_config_file,
    replace,
    repo_configs_dir,
    to_dict,
    with_overrides,
)
from training.config_model import MODEL_LADDER, ModelConfig

__all__ = [
    "BASELINE_FAMILIES",
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
    "RuleError",
    "SweepConfig",
    "SweepGrid",
    "SyntheticCorpusConfig",
    "TrainingConfig",
    "TrialConfig",
    "TrialTemplate",
    "apply_overrides",
    "config_hash",
    "from_dict",
    "load_config",
    "read_config_file",
    "replace",
    "repo_configs_dir",
    "to_dict",
    "with_overrides",
]


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


Protocol = Literal["steps", "converged", "compute"]

_PROTOCOL_DEFAULTS: dict[str, Any] = {
    "protocol": "steps",
    "max_epochs": 30.0,
    "min_steps": 0,
    "samples_seen": None,
}


@frozen_config
class TrainingConfig:
    """How long and how a trial trains."""

    protocol: Protocol = "steps"
    """What "training on D utterances" means: steps (a step count or the step rule below),
    converged (until the dev voices' loss stops improving) or compute (`samples_seen`); the
    rules, caps and validation cadence are `training.protocol`'s."""
    max_epochs: PositiveFloat = 30.0
    """converged: the cap, max(max_epochs epochs, min_steps steps): a small budget needs many
    passes (8 epochs of 32 utterances are 32 steps, inside the warm-up)."""
    min_steps: NonNegative = 0
    samples_seen: Positive | None = None
    """compute: utterances seen in training (steps = ceil(samples_seen / batch_size))."""
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

    def __post_init__(self) -> None:
        if self.protocol == "converged" and not self.early_stop_patience:
            raise RuleError(
                "early_stop_patience",
                "must be >= 1 under protocol: converged (evaluations without improvement on "
                "the dev voices before stopping)",
            )
        if self.protocol == "compute" and self.samples_seen is None:
            raise RuleError("samples_seen", "required under protocol: compute")
        if self.protocol != "steps" and self.steps is not None:
            raise RuleError(
                "steps", f"fixes the step count: leave it out under protocol: {self.protocol}"
            )

    @model_serializer(mode="wrap")
    def _canonical(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """The plain dict, less the protocol fields while they hold their defaults: trials
        written before they existed keep their `config_hash` (rows and golden files pin it)."""
        data = handler(self)
        for key, default in _PROTOCOL_DEFAULTS.items():
            if data.get(key) == default:
                del data[key]
        return data


@frozen_config
class DeepSpeedConfig:
    zero_stage: Annotated[int, Field(ge=0, le=3)] = 2
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    """auto: bf16 on CUDA, fp32 on CPU."""
    gradient_accumulation_steps: Positive = 1
    zero3_param_persistence_threshold: NonNegative = 100_000
    """ZeRO-3 keeps parameters with fewer elements than this whole on every rank (DeepSpeed's
    default: fewer, slower gathers of tiny tensors); 0 partitions every one."""


@frozen_config
class ResourcesConfig:
    num_workers: Positive = 1
    cpus_per_worker: PositiveFloat = 1.0
    gpus_per_worker: Annotated[float, Field(ge=0)] = 0.0


def _check_engine(
    training: TrainingConfig,
    deepspeed: DeepSpeedConfig,
    resources: ResourcesConfig,
    *,
    at: str = "",
    resources_at: str = "resources",
) -> None:
    """The rules of a neural trial's DeepSpeed engine that depend on the config alone (the
    machine's share is `cluster.trial_runner.check_launchable`); `at` prefixes the keys."""
    workers, steps = resources.num_workers, deepspeed.gradient_accumulation_steps
    if training.batch_size % (workers * steps):
        raise RuleError(
            f"{at}training.batch_size",
            f"must be a multiple of {resources_at}.num_workers × "
            f"{at}deepspeed.gradient_accumulation_steps = {workers} × {steps} = "
            f"{workers * steps}, so every worker gets whole micro-batches "
            f"(got {training.batch_size})",
        )
    if deepspeed.precision == "fp16" and resources.gpus_per_worker == 0:
        raise RuleError(
            f"{at}deepspeed.precision",
            f"fp16 needs GPUs, but {resources_at}.gpus_per_worker is 0 (DeepSpeed refuses "
            "fp16 on CPU): use fp32, bf16 or auto",
        )


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


BaselineMethod = Literal["ridge", "concatenative"]
"""The traditional (non-neural) methods: `training.baseline` (phoneme-in-context templates +
ridge regression) and `training.concatenative` (unit selection from training voices)."""

BASELINE_FAMILIES: dict[str, str] = {"ridge": "baseline", "concatenative": "concat"}
"""Each traditional method's family in trial names, results rows and plots. Ridge keeps the
name it always had ("baseline"), so earlier trial names, rows and golden files stay valid."""


@frozen_config
class TrialConfig:
    """One point of the grid: a model (or the baseline) trained on one data budget with one seed."""

    kind: Literal["neural", "baseline"] = "neural"
    baseline: BaselineMethod = "ridge"
    """Which traditional method a `kind: baseline` trial fits (see `BaselineMethod`)."""
    model: ModelConfig = ModelConfig()
    """Ignored by the baseline (kept so every trial has the same shape)."""
    data: DataConfig = DataConfig()
    optim: OptimConfig = OptimConfig()
    training: TrainingConfig = TrainingConfig()
    deepspeed: DeepSpeedConfig = DeepSpeedConfig()
    eval: EvalConfig = EvalConfig()
    resources: ResourcesConfig = ResourcesConfig()
    seed: NonNegative = 0

    def __post_init__(self) -> None:
        if self.kind == "neural":  # the baseline runs no DeepSpeed
            _check_engine(self.training, self.deepspeed, self.resources)
            if self.baseline != "ridge":
                raise RuleError(
                    "baseline",
                    f"{self.baseline!r} is a traditional method: it needs kind: baseline "
                    "(a neural trial leaves `baseline` out)",
                )

    @model_serializer(mode="wrap")
    def _canonical(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """The plain dict, less `baseline` while it holds its default: every trial written
        before the field existed keeps its dict and so its `config_hash` (results rows and
        golden files pin them); `from_dict` restores the default."""
        data = handler(self)
        if data.get("baseline") == "ridge":
            del data["baseline"]
        return data

    @property
    def family(self) -> str:
        """The model family of results and plots: the model's size label (`xs`, or `xs_w32`
        for an xs with another width: see `ModelConfig`), or the traditional method's family
        (`baseline` for ridge, `concat` for unit selection: see `BASELINE_FAMILIES`)."""
        return self.model.label if self.kind == "neural" else BASELINE_FAMILIES[self.baseline]

    @property
    def name(self) -> str:
        """Deterministic, human-readable trial name (no timestamps: restores must find it)."""
        return f"{self.family}-{self.data.budget.label}-seed{self.seed}"

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
    """Also train the traditional baselines (`baselines`) at every budget and seed."""
    baselines: tuple[BaselineMethod, ...] = ("ridge",)
    """Which traditional methods `baseline` trains, in this order at each grid point."""

    def __post_init__(self) -> None:
        for axis in ("model_sizes", "data_budgets", "seeds"):
            values = getattr(self, axis)
            if not values:
                raise ValueError(f"{axis} is empty: the grid needs at least one value per axis")
            if len(set(values)) != len(values):
                raise ValueError(f"{axis} has repeated entries: {list(values)}")
        if len(set(self.baselines)) != len(self.baselines):
            raise RuleError("baselines", f"has repeated entries: {list(self.baselines)}")
        if self.baseline and not self.baselines:
            raise RuleError(
                "baselines",
                "is empty while baseline is true: name a method (ridge, concatenative), or "
                "set baseline: false",
            )

    @model_serializer(mode="wrap")
    def _canonical(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """The plain dict, less `baselines` at its default (a sweep written before the field
        existed keeps its `config_hash`)."""
        data = handler(self)
        if data.get("baselines") == ["ridge"]:
            del data["baselines"]
        return data


@frozen_config
class SweepConfig:
    """A named grid of trials sharing one template."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]
    grid: SweepGrid = SweepGrid()
    trial: TrialTemplate = TrialTemplate()
    model_sizes: dict[str, ModelConfig] | None = None
    """Extra named sizes, on top of `MODEL_LADDER` (each entry's `size` is its key); a ladder
    name given here with other values is an override, and its trials are named so."""
    resources_by_size: dict[str, ResourcesConfig] | None = None
    """Per-family resources (keys: model sizes or "baseline"), replacing `trial.resources`:
    e.g. more GPUs for the largest model on a cluster."""
    max_concurrent_trials: Positive | None = None
    """Cap on trials running at once; default: as many as the cluster's CPUs/GPUs fit."""
    cost_per_gpu_hour: PositiveFloat | None = None
    """What one GPU-hour costs on your cluster (any currency; spot or on-demand): the report
    multiplies it by the GPU-hours the trials held (`gpu_hours` in the rows)."""

    def __post_init__(self) -> None:
        for name, model in (self.model_sizes or {}).items():
            if model.size != name:
                raise RuleError(
                    f"model_sizes.{name}.size",
                    f"must be the entry's name {name!r} (got {model.size!r})",
                )
        unknown = [s for s in self.grid.model_sizes if s not in self.sizes]
        if unknown:
            raise RuleError(
                "grid.model_sizes", f"unknown size(s) {unknown}; known: {sorted(self.sizes)}"
            )
        families = set(self.grid.model_sizes) | set(BASELINE_FAMILIES.values())
        by_size = self.resources_by_size or {}
        stray = sorted(set(by_size) - families)
        if stray:
            raise RuleError(
                "resources_by_size",
                f"{stray} not in grid.model_sizes (or 'baseline', 'concat'): {sorted(families)}",
            )
        t = self.trial
        for size in self.grid.model_sizes:
            where = f"resources_by_size.{size}" if size in by_size else "trial.resources"
            resources = by_size.get(size, t.resources)
            _check_engine(t.training, t.deepspeed, resources, at="trial.", resources_at=where)

    @property
    def sizes(self) -> dict[str, ModelConfig]:
        """Every size this sweep can name: `MODEL_LADDER` and `model_sizes`."""
        return {**MODEL_LADDER, **(self.model_sizes or {})}

    def trials(self) -> list[TrialConfig]:
        """Expand the grid into trials, ordered budget-major so small, fast trials come first."""
        sizes, t = self.sizes, self.trial
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
                    trials.extend(self._baseline_trials(d, seed, common))
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

    def _baseline_trials(
        self, data: DataConfig, seed: int, common: dict[str, Any]
    ) -> list[TrialConfig]:
        """One trial per traditional method at this grid point. Resources: the family's entry
        in `resources_by_size`, else the "baseline" entry (the methods share one kind of
        task), else the template's."""
        by_size = self.resources_by_size or {}
        fallback = by_size.get("baseline", self.trial.resources)
        return [
            TrialConfig(
                kind="baseline",
                baseline=method,
                data=data,
                seed=seed,
                resources=by_size.get(BASELINE_FAMILIES[method], fallback),
                **common,
            )
            for method in self.grid.baselines
        ]
